//! A buffer's match chain: `content` (absolute windows `offset`/`depth`,
//! relative ones `distance`/`within` measured from the cursor, `nocase`,
//! negation) and the keywords that read the buffer at the cursor:
//! `isdataat`, `byte_test`, `byte_jump`, `byte_extract` and `pcre`, with
//! Suricata's semantics (detect-engine-content-inspection.c and the
//! keywords' files):
//!
//! - The cursor is where the last step left it: the end of a content's or
//!   a regex's match, past the bytes `byte_extract` read, where `byte_jump`
//!   landed. `isdataat`, `byte_test` and negated steps do not move it.
//! - A relative chain backtracks: if `content:"a"; content:"b"; within:3;`
//!   fails after the first "a", the next "a" is tried (a regex: its next
//!   match), as Suricata does. The attempts per rule and packet are capped
//!   so a hostile payload cannot make matching quadratic.
//! - `byte_extract` variables hold a number for later steps (`byte_test`
//!   value and offset, `byte_jump` and `isdataat` offset, content
//!   `offset`/`depth`/`distance`/`within`).

use super::{ByteOp, ByteRead, Content, Num, Op, MAX_VARS};

/// Attempts (candidate positions tried) per rule and packet.
const BUDGET: u32 = 4096;

/// Whether every step of a rule's chain matches `payload`.
pub fn matches(contents: &[Content], payload: &[u8]) -> bool {
    let mut budget = BUDGET;
    let mut vars = [0u64; MAX_VARS];
    chain(contents, payload, 0, &mut budget, &mut vars)
}

fn num(n: Num, vars: &[u64; MAX_VARS]) -> i64 {
    match n {
        Num::Lit(x) => x,
        Num::Var(i) => vars.get(usize::from(i)).map_or(0, |&v| v as i64),
    }
}

/// The search window `[start, end)` of content `c` given the cursor, or
/// none if it cannot fit.
fn window(
    c: &Content,
    prev_end: usize,
    len: usize,
    vars: &[u64; MAX_VARS],
) -> Option<(usize, usize)> {
    let field = |i: usize, lit: Option<i64>| match c.vars[i] {
        Some(v) => Some(num(Num::Var(v), vars)),
        None => lit,
    };
    let offset = field(0, c.offset.map(i64::from));
    let depth = field(1, c.depth.map(i64::from));
    let distance = field(2, c.distance.map(i64::from));
    let within = field(3, c.within.map(i64::from));
    let (start, end) = if c.relative() {
        let start = prev_end as i64 + distance.unwrap_or(0);
        let end = match within {
            Some(w) => start.saturating_add(w),
            None => len as i64,
        };
        (start.max(0), end)
    } else {
        let start = offset.unwrap_or(0);
        let end = match depth {
            Some(d) => start.saturating_add(d),
            None => len as i64,
        };
        (start, end)
    };
    // `endswith` can only match where the window reaches the end (as
    // Suricata: "depth < buffer_len ... can't possibly match").
    if c.endswith && end < len as i64 {
        return None;
    }
    let end = end.min(len as i64);
    (start >= 0 && end - start >= c.pattern.len() as i64).then_some((start as usize, end as usize))
}

fn eq(c: &Content, hay: &[u8]) -> bool {
    if c.nocase {
        hay.eq_ignore_ascii_case(&c.pattern)
    } else {
        hay == c.pattern.as_slice()
    }
}

/// Match positions of `c` within `payload[start..end]`, in order.
fn positions<'a>(
    c: &'a Content,
    payload: &'a [u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = usize> + 'a {
    let n = c.pattern.len();
    let last = end.saturating_sub(n);
    (start..=last).filter(move |&i| {
        i + n <= end && (!c.endswith || i + n == payload.len()) && eq(c, &payload[i..i + n])
    })
}

/// Reads the number of a `byte_*` step: the value and where the bytes it
/// consumed end, or none if they are not all in the buffer or do not
/// parse. A `string` number ends where its digits do (`strtoull`).
pub fn read_number(
    r: &ByteRead,
    payload: &[u8],
    prev_end: usize,
    vars: &[u64; MAX_VARS],
) -> Option<(u64, usize)> {
    let base = if r.relative { prev_end as i64 } else { 0 };
    let start = usize::try_from(base.checked_add(num(r.offset, vars))?).ok()?;
    let bytes = payload.get(start..start.checked_add(usize::from(r.nbytes))?)?;
    let (mut value, used) = match r.base {
        None => {
            let v = if r.little {
                bytes.iter().rev().fold(0u64, |a, &b| a << 8 | u64::from(b))
            } else {
                bytes.iter().fold(0u64, |a, &b| a << 8 | u64::from(b))
            };
            (v, bytes.len())
        }
        Some(radix) => parse_ascii(bytes, radix)?,
    };
    if let Some(mask) = r.bitmask {
        value &= mask;
        if value != 0 {
            value >>= mask.trailing_zeros();
        }
    }
    Some((value, start + used))
}

/// `strtoull` on `bytes`: leading white space, a sign, `0x` in base 16,
/// then the longest run of digits; the value and the bytes used, none
/// without a digit or on overflow.
fn parse_ascii(bytes: &[u8], radix: u32) -> Option<(u64, usize)> {
    let mut i = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let negative = match bytes.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    if radix == 16
        && bytes.get(i) == Some(&b'0')
        && matches!(bytes.get(i + 1), Some(b'x' | b'X'))
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i += 2;
    }
    let digits = bytes[i.min(bytes.len())..]
        .iter()
        .take_while(|b| char::from(**b).is_digit(radix))
        .count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &bytes[i..i + digits] {
        let d = char::from(b).to_digit(radix)?;
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some((if negative { v.wrapping_neg() } else { v }, i + digits))
}

fn byte_test(op: ByteOp, value: u64, want: u64) -> bool {
    match op {
        ByteOp::Lt => value < want,
        ByteOp::Gt => value > want,
        ByteOp::Eq => value == want,
        ByteOp::Le => value <= want,
        ByteOp::Ge => value >= want,
        ByteOp::And => value & want != 0,
        ByteOp::Xor => value ^ want != 0,
    }
}

/// The cursor after the steps `contents`, tried from `prev_end`.
fn chain(
    contents: &[Content],
    payload: &[u8],
    prev_end: usize,
    budget: &mut u32,
    vars: &mut [u64; MAX_VARS],
) -> bool {
    let Some((c, rest)) = contents.split_first() else {
        return true;
    };
    // Content positions are charged below, one per position tried.
    if !c.is_content() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
    }
    let len = payload.len();
    match &c.op {
        Op::Content => {}
        Op::IsDataAt {
            at,
            relative,
            negated,
        } => {
            let at = num(*at, vars);
            // Relative: `at` more bytes after the cursor; absolute: a byte
            // at position `at` (detect-engine-content-inspection.c).
            let there = if *relative {
                (prev_end as i64).saturating_add(at) <= len as i64
            } else {
                at < len as i64
            };
            return there != *negated && chain(rest, payload, prev_end, budget, vars);
        }
        Op::ByteTest {
            read,
            op,
            negated,
            value,
        } => {
            let Some((v, _)) = read_number(read, payload, prev_end, vars) else {
                return false;
            };
            let want = num(*value, vars) as u64;
            return byte_test(*op, v, want) != *negated
                && chain(rest, payload, prev_end, budget, vars);
        }
        Op::ByteJump {
            read,
            multiplier,
            align,
            from_beginning,
            from_end,
            post_offset,
        } => {
            let Some((v, after)) = read_number(read, payload, prev_end, vars) else {
                return false;
            };
            let mut v = v.wrapping_mul(*multiplier) as i64;
            if *align && v % 4 != 0 {
                v += 4 - v.rem_euclid(4);
            }
            v = v.saturating_add(*post_offset);
            let from = if *from_beginning {
                0
            } else if *from_end {
                len as i64
            } else {
                after as i64
            };
            // Before the buffer: its start; past its end: no match (its
            // very end is a place to jump to, as in Suricata 7).
            let to = from.saturating_add(v).max(0);
            if to > len as i64 {
                return false;
            }
            return chain(rest, payload, to as usize, budget, vars);
        }
        Op::ByteExtract {
            read,
            multiplier,
            align,
            var,
        } => {
            let Some((v, after)) = read_number(read, payload, prev_end, vars) else {
                return false;
            };
            let mut v = v.wrapping_mul(*multiplier);
            let a = u64::from(*align);
            if a > 1 && v % a != 0 {
                v = v.wrapping_add(a - v % a);
            }
            let Some(slot) = vars.get_mut(usize::from(*var)) else {
                return false;
            };
            *slot = v;
            return chain(rest, payload, after, budget, vars);
        }
        Op::Pcre {
            re,
            negated,
            relative,
            anchored,
            dollar_before_newline,
        } => {
            // Suricata hands PCRE the buffer from the cursor on, so `^`
            // and `A` anchor there.
            let from = if *relative { prev_end.min(len) } else { 0 };
            let mut hay = &payload[from..];
            if *dollar_before_newline && !re.0.is_match(hay) {
                // PCRE's `$` also matches before a final newline.
                if let Some(cut) = hay.strip_suffix(b"\n") {
                    hay = cut;
                }
            }
            if *negated {
                let found = re.0.find(hay).is_some_and(|m| !*anchored || m.start() == 0);
                return !found && chain(rest, payload, prev_end, budget, vars);
            }
            let backtrack = rest.first().is_some_and(Content::relative);
            let mut at = 0;
            while at <= hay.len() {
                let Some(m) = re.0.find_at(hay, at) else {
                    return false;
                };
                if *anchored && m.start() != 0 {
                    return false;
                }
                if chain(rest, payload, from + m.end(), budget, vars) {
                    return true;
                }
                if !backtrack || *anchored || *budget == 0 {
                    return false;
                }
                *budget -= 1;
                at = m.start() + 1;
            }
            return false;
        }
    }
    if c.negated {
        let found = window(c, prev_end, len, vars)
            .is_some_and(|(s, e)| positions(c, payload, s, e).next().is_some());
        // A negated content does not move the cursor.
        return !found && chain(rest, payload, prev_end, budget, vars);
    }
    let Some((s, e)) = window(c, prev_end, len, vars) else {
        return false;
    };
    // Only a relative successor depends on where this one matched; without
    // one, the first match is as good as any.
    let backtrack = rest.first().is_some_and(Content::relative);
    for pos in positions(c, payload, s, e) {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if chain(rest, payload, pos + c.pattern.len(), budget, vars) {
            return true;
        }
        if !backtrack {
            return false;
        }
    }
    false
}
