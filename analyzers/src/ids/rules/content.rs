//! `content` matching: absolute windows (`offset`, `depth`), relative ones
//! (`distance`, `within`, measured from the end of the previous content's
//! match), `nocase` and negation.
//!
//! A relative chain backtracks: if `content:"a"; content:"b"; within:3;`
//! fails after the first "a", the next "a" is tried, as Suricata does. The
//! number of attempts per rule and packet is capped so a hostile payload
//! cannot make matching quadratic.

use super::Content;

/// Attempts (candidate positions tried) per rule and packet.
const BUDGET: u32 = 4096;

/// Whether every content of a rule matches `payload`.
pub fn matches(contents: &[Content], payload: &[u8]) -> bool {
    let mut budget = BUDGET;
    chain(contents, payload, 0, &mut budget)
}

/// The search window `[start, end)` of content `c` given the end of the
/// previous match, or none if it cannot fit.
fn window(c: &Content, prev_end: usize, len: usize) -> Option<(usize, usize)> {
    let (start, end) = if c.relative() {
        let start = prev_end as i64 + i64::from(c.distance.unwrap_or(0));
        let end = match c.within {
            Some(w) => prev_end as i64 + i64::from(c.distance.unwrap_or(0)) + i64::from(w),
            None => len as i64,
        };
        (start.max(0), end)
    } else {
        let start = i64::from(c.offset.unwrap_or(0));
        let end = match c.depth {
            Some(d) => start + i64::from(d),
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
    (end - start >= c.pattern.len() as i64).then_some((start as usize, end as usize))
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

fn chain(contents: &[Content], payload: &[u8], prev_end: usize, budget: &mut u32) -> bool {
    let Some((c, rest)) = contents.split_first() else {
        return true;
    };
    if c.negated {
        let found = window(c, prev_end, payload.len())
            .is_some_and(|(s, e)| positions(c, payload, s, e).next().is_some());
        // A negated content does not move the cursor.
        return !found && chain(rest, payload, prev_end, budget);
    }
    let Some((s, e)) = window(c, prev_end, payload.len()) else {
        return false;
    };
    // Only a relative successor depends on where this one matched; without
    // one, the first match is as good as any.
    let backtrack = rest.first().is_some_and(|n| n.relative());
    for pos in positions(c, payload, s, e) {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if chain(rest, payload, pos + c.pattern.len(), budget) {
            return true;
        }
        if !backtrack {
            return false;
        }
    }
    false
}
