//! Parser for the supported subset of the Suricata/Snort rule language.
//!
//! A rules file is read line by line (a trailing `\` continues a line;
//! `#` starts a comment). Every rule either compiles or is reported in a
//! [`Skipped`] entry with its line and the reason, so a file full of
//! keywords we do not support still loads everything we do.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::header::{HeaderTest, FRAG_DF, FRAG_MF, FRAG_RESERVED, IP_OPTIONS};
use super::{
    Action, AddrSpec, Buffer, ByteOp, ByteRead, Cidr, Content, FlagsSpec, FlowSpec, FlowbitsOp,
    Num, NumCmp, Op, PortSpec, Proto, Re, Rule, Threshold, ThresholdKind, Track, VlanLayer,
    VlanTest, MAX_VARS,
};

/// Longest `content` in bytes (after `|hex|` and escapes are decoded).
/// Real rule sets stay far below it (the longest in the Emerging Threats
/// files of the corpus is 255 bytes); a longer content is skipped, which
/// also bounds the prefilter's build time and memory.
pub const MAX_CONTENT_BYTES: usize = 4096;
/// Longest `msg` in bytes: it is copied into every alert.
pub const MAX_MSG_BYTES: usize = 1024;
/// Longest single `reference`, `metadata` and `classtype` value in bytes
/// (references and metadata go into every alert's `details`).
pub const MAX_REFERENCE_BYTES: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_CLASSTYPE_BYTES: usize = 256;
/// Most `reference` (and, separately, `metadata`) options of one rule.
pub const MAX_REFERENCES: usize = 64;

/// A rule that did not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line of the rule's start in its file.
    pub line: usize,
    pub sid: Option<u32>,
    /// What the rule was skipped for: the option keyword (`pcre`,
    /// `http.stat_code`, ...), or `action`, `protocol`, `header`,
    /// `syntax`, `sid`, `buffers` for the rest; `check-rules` groups
    /// the skips by it.
    pub keyword: String,
    pub reason: String,
}

/// Address and port variables (`HOME_NET` without the `$`), with
/// Suricata's defaults for the ones a config leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vars(pub BTreeMap<String, String>);

impl Default for Vars {
    fn default() -> Self {
        Vars::with(&BTreeMap::new())
    }
}

impl Vars {
    /// Suricata's `suricata.yaml` defaults, overridden by `set`.
    pub fn with(set: &BTreeMap<String, String>) -> Vars {
        let mut m = BTreeMap::new();
        let home = "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]";
        m.insert("HOME_NET".into(), home.into());
        m.insert("EXTERNAL_NET".into(), "!$HOME_NET".into());
        for server in [
            "HTTP_SERVERS",
            "SMTP_SERVERS",
            "SQL_SERVERS",
            "DNS_SERVERS",
            "TELNET_SERVERS",
            "AIM_SERVERS",
            "DC_SERVERS",
            "DNP3_SERVER",
            "DNP3_CLIENT",
            "MODBUS_CLIENT",
            "MODBUS_SERVER",
            "ENIP_CLIENT",
            "ENIP_SERVER",
            "SIP_SERVERS",
        ] {
            m.insert(server.into(), "$HOME_NET".into());
        }
        for (k, v) in [
            ("HTTP_PORTS", "80"),
            ("SHELLCODE_PORTS", "!80"),
            ("ORACLE_PORTS", "1521"),
            ("SSH_PORTS", "22"),
            ("DNP3_PORTS", "20000"),
            ("MODBUS_PORTS", "502"),
            ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
            ("FTP_PORTS", "21"),
            ("GENEVE_PORTS", "6081"),
            ("VXLAN_PORTS", "4789"),
            ("TEREDO_PORTS", "3544"),
            ("SIP_PORTS", "[5060,5061]"),
        ] {
            m.insert(k.into(), v.into());
        }
        for (k, v) in set {
            m.insert(k.trim_start_matches('$').to_string(), v.clone());
        }
        Vars(m)
    }
}

impl Vars {
    /// Checks that every variable parses: as a port list if its name ends
    /// in `_PORTS`, as an address list otherwise.
    pub fn check(&self) -> Result<(), String> {
        // Plain values first, so a bad HOME_NET is named itself rather
        // than through a variable that refers to it.
        let mut order: Vec<(&String, &String)> = self.0.iter().collect();
        order.sort_by_key(|(_, v)| v.contains('$'));
        for (k, v) in order {
            let var = format!("${k}");
            let r = if k.ends_with("_PORTS") {
                parse_ports(&var, self).map(drop)
            } else {
                parse_addrs(&var, self).map(drop)
            };
            r.map_err(|e| format!("{k} = {v:?}: {e}"))?;
        }
        Ok(())
    }
}

/// Splits a rules text into (line number, rule text) pairs: comments and
/// blank lines dropped, `\`-continued lines joined.
pub fn rule_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let (start, mut acc) = match pending.take() {
            Some(p) => p,
            None => {
                let t = line.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                (i + 1, String::new())
            }
        };
        if let Some(body) = line.strip_suffix('\\') {
            acc.push_str(body);
            pending = Some((start, acc));
        } else {
            acc.push_str(line);
            out.push((start, acc.trim().to_string()));
        }
    }
    if let Some((start, acc)) = pending {
        out.push((start, acc.trim().to_string()));
    }
    out
}

/// Parses one rule.
pub fn parse_rule(text: &str, line: usize, vars: &Vars) -> Result<Rule, Skipped> {
    let sid_hint = find_sid(text);
    let fail = |keyword: &str, reason: String| Skipped {
        line,
        sid: sid_hint,
        keyword: clip(keyword),
        reason: clip(&reason),
    };
    let open = text
        .find('(')
        .ok_or_else(|| fail("syntax", "no option list '(...)'".into()))?;
    let close = text
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| fail("syntax", "option list not closed with ')'".into()))?;
    if !text[close + 1..].trim().is_empty() {
        return Err(fail("syntax", "text after the closing ')'".into()));
    }
    let header: Vec<&str> = text[..open].split_whitespace().collect();
    let r = |reason: String| fail("header", reason);
    let [action, proto, src, sport, dir, dst, dport] = header[..] else {
        return Err(r(format!(
            "header has {} fields, want 7 (action proto src sport -> dst dport)",
            header.len()
        )));
    };
    let action = match action {
        "alert" => Action::Alert,
        "pass" => Action::Pass,
        "drop" => Action::Drop,
        "reject" | "rejectsrc" | "rejectdst" | "rejectboth" => Action::Reject,
        other => {
            return Err(fail(
                &format!("action {other}"),
                format!("action '{other}' (supported: alert, pass, drop, reject)"),
            ))
        }
    };
    // Suricata's protocol keywords (`detect-engine-proto.c`): `icmp` is
    // ICMP and ICMPv6, `icmpv4`/`icmpv6` one of them, `ipv4`/`ipv6` any
    // protocol over one IP version.
    let (proto, ip_version) = match proto.to_ascii_lowercase().as_str() {
        "ip" | "pkthdr" => (Proto::Ip, None),
        "ipv4" | "ip4" => (Proto::Ip, Some(4)),
        "ipv6" | "ip6" => (Proto::Ip, Some(6)),
        "tcp" | "tcp-pkt" => (Proto::Tcp, None),
        "udp" => (Proto::Udp, None),
        "icmp" => (Proto::Icmp, None),
        "icmpv4" => (Proto::Icmp, Some(4)),
        "icmpv6" | "icmp6" => (Proto::Icmp, Some(6)),
        "http" | "http1" => (Proto::Http, None),
        "dns" => (Proto::Dns, None),
        "sip" => (Proto::Sip, None),
        "tcp-stream" => {
            return Err(fail(
                "protocol tcp-stream",
                "protocol 'tcp-stream' matches reassembled TCP streams (moni inspects packets)"
                    .into(),
            ))
        }
        "sctp" => {
            return Err(fail(
                "protocol sctp",
                "protocol 'sctp': moni decodes no SCTP".into(),
            ))
        }
        // An address, a variable or an arrow where the protocol goes: a
        // field missing or out of order, not a protocol we lack.
        _ if !proto
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            return Err(r(format!(
                "'{proto}' where the protocol goes (a field missing or out of order? want: \
                 action proto src sport -> dst dport)"
            )))
        }
        other => {
            return Err(fail(&format!("protocol {other}"), format!(
            "protocol '{proto}' needs an application-layer parser (supported: ip, ipv4, ipv6, tcp, udp, icmp, icmpv4, icmpv6, http, dns, sip)"
        )))
        }
    };
    let bidirectional = match dir {
        "->" => false,
        "<>" => true,
        other => return Err(r(format!("direction '{other}' (want -> or <>)"))),
    };
    let mut rule = Rule {
        line,
        action,
        sid: 0,
        rev: 1,
        gid: 1,
        msg: String::new(),
        classtype: None,
        priority: None,
        proto,
        ip_version,
        src: parse_addrs(src, vars).map_err(|e| r(format!("source address: {e}")))?,
        src_ports: parse_ports(sport, vars).map_err(|e| r(format!("source port: {e}")))?,
        dst: parse_addrs(dst, vars).map_err(|e| r(format!("destination address: {e}")))?,
        dst_ports: parse_ports(dport, vars).map_err(|e| r(format!("destination port: {e}")))?,
        bidirectional,
        contents: Vec::new(),
        dsize: None,
        flags: None,
        flow: FlowSpec::default(),
        itype: None,
        icode: None,
        vlan: Vec::new(),
        header: Vec::new(),
        lens: Vec::new(),
        flowbits: Vec::new(),
        noalert: false,
        threshold: None,
        detection_filter: None,
        references: Vec::new(),
        metadata: Vec::new(),
        fast_pattern: None,
    };
    let mut buffer = Buffer::Payload;
    let mut names: Vec<String> = Vec::new();
    for opt in split_options(&text[open + 1..close]).map_err(|e| fail("syntax", e))? {
        let (key, value) = match opt.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (opt.trim(), None),
        };
        if let Some(b) = Buffer::sticky(key) {
            if value.is_some() {
                return Err(fail(key, format!("{key} takes no value")));
            }
            buffer = b;
            continue;
        }
        apply_option(&mut rule, key, value, buffer, &mut names).map_err(|e| fail(key, e))?;
    }
    if rule.sid == 0 {
        return Err(fail("sid", "no sid".into()));
    }
    finish(&mut rule).map_err(|e| fail("buffers", e))?;
    if rule.msg.is_empty() {
        rule.msg = format!("sid {}", rule.sid);
    }
    // A prefilter pattern must occur in the payload as it is: a content
    // of a rebuilt buffer (`http.header`, `dns.query`) cannot be one.
    let usable = |c: &Content| c.is_content() && !c.negated && c.buffer.verbatim();
    if !rule
        .fast_pattern
        .and_then(|f| rule.contents.get(f))
        .is_some_and(usable)
    {
        // The longest positive content is the most selective prefilter.
        rule.fast_pattern = rule
            .contents
            .iter()
            .enumerate()
            .filter(|(_, c)| usable(c))
            .max_by_key(|(_, c)| c.pattern.len())
            .map(|(i, _)| i);
    }
    Ok(rule)
}

/// Checks that hold for the whole rule, once its options are read; puts
/// each buffer's contents together (in rule order within a buffer, which
/// is what relative modifiers refer to).
fn finish(rule: &mut Rule) -> Result<(), String> {
    let http = rule.buffers().any(Buffer::is_http);
    let dns = rule.buffers().any(|b| b == Buffer::DnsQuery);
    let sip = rule.buffers().any(Buffer::is_sip);
    let layer = if http {
        "http"
    } else if dns {
        "dns"
    } else {
        "sip"
    };
    match rule.proto {
        _ if u8::from(http) + u8::from(dns) + u8::from(sip) > 1 => {
            return Err("buffers of two application layers (http, dns, sip) in one rule".into())
        }
        Proto::Http | Proto::Tcp if !dns && !sip => {}
        Proto::Dns | Proto::Udp | Proto::Tcp if !http && !sip => {}
        Proto::Sip | Proto::Udp | Proto::Tcp if !http && !dns => {}
        Proto::Ip | Proto::Icmp if !http && !dns && !sip => {}
        other => return Err(format!("{layer} buffer on a {other:?} rule")),
    }
    if http && rule.proto == Proto::Tcp {
        rule.proto = Proto::Http;
    }
    if dns && matches!(rule.proto, Proto::Tcp | Proto::Udp) {
        rule.proto = Proto::Dns;
    }
    // A `udp` or `tcp` rule on SIP buffers stays on its transport: its
    // buffers are absent from packets that start no SIP message.
    if rule.flow.to_server != Some(true) {
        let both = rule.buffers().find(|b| b.both_directions());
        if let Some(b) = both {
            return Err(format!(
                "{b:?} without flow:to_server also inspects HTTP responses (no response parser)"
            ));
        }
    }
    if let Some(f) = rule.fast_pattern {
        let fp = rule.contents[f].clone();
        rule.contents.sort_by_key(|c| c.buffer);
        rule.fast_pattern = rule.contents.iter().position(|c| *c == fp);
    } else {
        rule.contents.sort_by_key(|c| c.buffer);
    }
    Ok(())
}

/// Longest skip reason kept (it may quote rule text).
const MAX_REASON_BYTES: usize = 300;

/// `s` cut to [`MAX_REASON_BYTES`] at a character boundary, on one line.
fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_REASON_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = s[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if end < s.len() {
        out.push('…');
    }
    out
}

/// The sid of a rule, read loosely (for the skip report of rules that fail
/// before their options are parsed).
fn find_sid(text: &str) -> Option<u32> {
    let at = text.find("sid:")?;
    let rest = text[at + 4..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Splits the option list at `;` outside quotes (`\;` and `\"` escape).
fn split_options(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted string".into());
    }
    if !cur.trim().is_empty() {
        return Err(format!("option '{}' not ended with ';'", cur.trim()));
    }
    Ok(out)
}

/// Removes surrounding quotes and `\` escapes.
fn unquote(v: &str) -> Result<String, String> {
    let v = v.trim();
    let inner = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => return Err("string ends in '\\'".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Content bytes: text with `|41 42|` hex runs and `\` escapes.
fn content_bytes(v: &str) -> Result<Vec<u8>, String> {
    let v = v.trim();
    let inner = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .ok_or("content must be quoted")?;
    let mut out = Vec::new();
    let mut hex = false;
    let mut digits = String::new();
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        if hex {
            match b {
                b'|' => {
                    if !digits.is_empty() {
                        return Err(format!("odd hex digit '{digits}' in content"));
                    }
                    hex = false;
                }
                b' ' | b'\t' => {}
                _ if b.is_ascii_hexdigit() => {
                    digits.push(char::from(b));
                    if digits.len() == 2 {
                        let byte = u8::from_str_radix(&digits, 16)
                            .map_err(|_| format!("bad hex byte '{digits}'"))?;
                        out.push(byte);
                        digits.clear();
                    }
                }
                _ => return Err(format!("'{}' inside |hex| of content", char::from(b))),
            }
        } else {
            match b {
                b'|' => hex = true,
                b'\\' => match bytes.next() {
                    Some(n) => out.push(n),
                    None => return Err("content ends in '\\'".into()),
                },
                _ => out.push(b),
            }
        }
    }
    if hex {
        return Err("unterminated |hex| in content".into());
    }
    if out.is_empty() {
        return Err("empty content".into());
    }
    Ok(out)
}

/// `v` if it is at most `max` bytes long; else the skip reason, naming
/// the keyword and the limit (not the value, which may be megabytes).
fn bounded(key: &str, v: String, max: usize) -> Result<String, String> {
    if v.len() > max {
        return Err(format!(
            "{key} of {} bytes is longer than the limit of {max} bytes",
            v.len()
        ));
    }
    Ok(v)
}

fn int<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    let v = v.trim();
    let parsed = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
            .ok()
            .and_then(|n| n.to_string().parse().ok())
    } else {
        v.parse().ok()
    };
    parsed.ok_or_else(|| format!("{key}: '{v}' is not a valid number"))
}

fn need<'a>(key: &str, v: Option<&'a str>) -> Result<&'a str, String> {
    v.ok_or_else(|| format!("{key} needs a value"))
}

/// The content the position modifiers apply to: the last step, which
/// must be a `content`.
fn last_content<'a>(rule: &'a mut Rule, key: &str) -> Result<&'a mut Content, String> {
    let c = rule
        .contents
        .last_mut()
        .ok_or_else(|| format!("{key} without a preceding content"))?;
    if !c.is_content() {
        return Err(format!("{key} after a keyword that is not content"));
    }
    Ok(c)
}

/// A chain step that is not a content, in the buffer it inspects: a
/// relative one in its predecessor's (as Suricata attaches it to the
/// previous match's list), else the sticky buffer or `fixed`.
fn push_step(rule: &mut Rule, op: Op, buffer: Buffer, fixed: Option<Buffer>) {
    let relative = Content::new(Vec::new(), false, buffer, op);
    let buffer = match fixed {
        Some(b) => b,
        None if relative.relative() => rule.contents.last().map_or(buffer, |c| c.buffer),
        None => buffer,
    };
    rule.contents.push(Content { buffer, ..relative });
}

/// A number or a `byte_extract` variable defined earlier in the rule.
fn num_or_var(key: &str, v: &str, names: &[String]) -> Result<Num, String> {
    let v = v.trim();
    if v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && !v.starts_with("0x") {
        return names
            .iter()
            .position(|n| n == v)
            .map(|i| Num::Var(i as u8))
            .ok_or_else(|| {
                format!("{key}: '{v}' is neither a number nor a byte_extract variable")
            });
    }
    Ok(Num::Lit(int::<i64>(key, v)?))
}

/// A keyword's own handler of the options [`byte_options`] does not know.
type OtherOption<'a> = dyn FnMut(&str, Option<&str>) -> Result<(), String> + 'a;

/// The options `byte_test`, `byte_jump` and `byte_extract` share, read
/// from `opts` into `read`; the others are handed to `other(name, value)`.
fn byte_options(
    key: &str,
    opts: &[&str],
    read: &mut ByteRead,
    other: &mut OtherOption<'_>,
) -> Result<(), String> {
    let mut string = false;
    let mut endian = false;
    for o in opts {
        let (name, value) = match o.trim().split_once(char::is_whitespace) {
            Some((n, v)) => (n, Some(v.trim())),
            None => (o.trim(), None),
        };
        match (name, value) {
            ("relative", None) => read.relative = true,
            ("big", None) | ("little", None) => {
                if endian {
                    return Err(format!("{key}: endianness given twice"));
                }
                endian = true;
                read.little = name == "little";
            }
            ("string", None) => string = true,
            ("hex", None) => read.base = Some(16),
            ("dec", None) => read.base = Some(10),
            ("oct", None) => read.base = Some(8),
            ("dce", None) => {
                return Err(format!(
                    "{key}: dce takes its byte order from the DCE/RPC parser (not supported)"
                ))
            }
            ("bitmask", Some(v)) => {
                let m: u64 = int(key, v)?;
                if m == 0 {
                    return Err(format!("{key}: bitmask 0"));
                }
                read.bitmask = Some(m);
            }
            _ => other(name, value)?,
        }
    }
    match (string, read.base) {
        (true, None) => read.base = Some(10),
        (false, Some(_)) => return Err(format!("{key}: hex/dec/oct without string")),
        _ => {}
    }
    if string && endian {
        return Err(format!("{key}: big/little with string"));
    }
    let max = if string { 20 } else { 8 };
    if read.nbytes == 0 || read.nbytes > max {
        return Err(format!(
            "{key}: {} bytes to convert (1 to {max}{})",
            read.nbytes,
            if string { " as a string" } else { " as binary" }
        ));
    }
    Ok(())
}

fn comma_list(v: &str) -> Vec<&str> {
    v.split(',').map(str::trim).collect()
}

fn new_read(key: &str, nbytes: &str, offset: &str, names: &[String]) -> Result<ByteRead, String> {
    Ok(ByteRead {
        nbytes: int(key, nbytes)?,
        offset: num_or_var(key, offset, names)?,
        relative: false,
        little: false,
        base: None,
        bitmask: None,
    })
}

/// `byte_test:N, [!]op, value, offset[, options]`.
fn parse_byte_test(v: &str, names: &[String]) -> Result<Op, String> {
    let key = "byte_test";
    let parts = comma_list(v);
    let [nbytes, op, value, offset, rest @ ..] = parts.as_slice() else {
        return Err(format!("{key}: want bytes, operator, value, offset"));
    };
    let mut read = new_read(key, nbytes, offset, names)?;
    let (negated, op) = match op.strip_prefix('!') {
        Some(o) => (true, o.trim()),
        None => (false, *op),
    };
    let op = match op {
        "" | "=" => ByteOp::Eq,
        "<" => ByteOp::Lt,
        ">" => ByteOp::Gt,
        "<=" => ByteOp::Le,
        ">=" => ByteOp::Ge,
        "&" => ByteOp::And,
        "^" => ByteOp::Xor,
        o => return Err(format!("{key}: unknown operator '{o}'")),
    };
    let value = num_or_var(key, value, names)?;
    byte_options(key, rest, &mut read, &mut |n, _| {
        Err(format!("{key}: unknown option '{n}'"))
    })?;
    Ok(Op::ByteTest {
        read,
        op,
        negated,
        value,
    })
}

/// `byte_jump:N, offset[, options]`.
fn parse_byte_jump(v: &str, names: &[String]) -> Result<Op, String> {
    let key = "byte_jump";
    let parts = comma_list(v);
    let [nbytes, offset, rest @ ..] = parts.as_slice() else {
        return Err(format!("{key}: want bytes, offset"));
    };
    let mut read = new_read(key, nbytes, offset, names)?;
    let (mut multiplier, mut align, mut begin, mut end, mut post) =
        (1u64, false, false, false, 0i64);
    byte_options(key, rest, &mut read, &mut |n, val| {
        match (n, val) {
            ("multiplier", Some(m)) => {
                multiplier = int(key, m)?;
                if multiplier == 0 || multiplier > 65535 {
                    return Err(format!("{key}: multiplier {multiplier} out of 1..65535"));
                }
            }
            ("align", None) => align = true,
            ("from_beginning", None) => begin = true,
            ("from_end", None) => end = true,
            ("post_offset", Some(p)) => post = int(key, p)?,
            _ => return Err(format!("{key}: unknown option '{n}'")),
        }
        Ok(())
    })?;
    if begin && end {
        return Err(format!("{key}: from_beginning with from_end"));
    }
    Ok(Op::ByteJump {
        read,
        multiplier,
        align,
        from_beginning: begin,
        from_end: end,
        post_offset: post,
    })
}

/// `byte_extract:N, offset, name[, options]`: defines variable `name`.
fn parse_byte_extract(v: &str, names: &mut Vec<String>) -> Result<Op, String> {
    let key = "byte_extract";
    let parts = comma_list(v);
    let [nbytes, offset, name, rest @ ..] = parts.as_slice() else {
        return Err(format!("{key}: want bytes, offset, name"));
    };
    let mut read = new_read(key, nbytes, offset, names)?;
    let (mut multiplier, mut align) = (1u64, 0u8);
    byte_options(key, rest, &mut read, &mut |n, val| {
        match (n, val) {
            ("multiplier", Some(m)) => {
                multiplier = int(key, m)?;
                if multiplier == 0 || multiplier > 65535 {
                    return Err(format!("{key}: multiplier {multiplier} out of 1..65535"));
                }
            }
            ("align", Some(a)) => {
                align = int(key, a)?;
                if align != 2 && align != 4 {
                    return Err(format!("{key}: align {align} (2 or 4)"));
                }
            }
            _ => return Err(format!("{key}: unknown option '{n}'")),
        }
        Ok(())
    })?;
    if read.bitmask.is_some() {
        return Err(format!("{key}: bitmask is for byte_test and byte_jump"));
    }
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!("{key}: bad variable name '{name}'"));
    }
    if names.iter().any(|n| n == name) {
        return Err(format!("{key}: variable '{name}' defined twice"));
    }
    if names.len() >= MAX_VARS {
        return Err(format!("{key}: more than {MAX_VARS} variables in one rule"));
    }
    names.push(name.to_string());
    Ok(Op::ByteExtract {
        read,
        multiplier,
        align,
        var: (names.len() - 1) as u8,
    })
}

/// `isdataat:[!]N[,relative][,rawbytes]`.
fn parse_isdataat(v: &str, names: &[String]) -> Result<Op, String> {
    let key = "isdataat";
    let parts = comma_list(v);
    let (first, rest) = parts.split_first().ok_or("isdataat needs a value")?;
    let (negated, n) = match first.strip_prefix('!') {
        Some(n) => (true, n.trim()),
        None => (false, *first),
    };
    let at = num_or_var(key, n, names)?;
    if matches!(at, Num::Lit(x) if !(0..=65535).contains(&x)) {
        return Err(format!("{key}: {n} out of 0..65535"));
    }
    let mut relative = false;
    for o in rest {
        match *o {
            "relative" => relative = true,
            "rawbytes" => {}
            other => return Err(format!("{key}: unknown option '{other}'")),
        }
    }
    Ok(Op::IsDataAt {
        at,
        relative,
        negated,
    })
}

/// Longest `pcre` expression in bytes (as written).
const MAX_PCRE_BYTES: usize = 4096;

/// `pcre:[!]"/expr/flags"`: the step and the buffer its flags name.
/// Compiled with the `regex` crate on bytes (PCRE's default: ASCII `\w`,
/// `\d`, `.` without newline); what it lacks (backreferences,
/// lookaround, atomic groups, possessive quantifiers, ...) skips the rule
/// with the construct named.
fn parse_pcre(v: &str) -> Result<(Op, Option<Buffer>), String> {
    let v = v.trim();
    let (negated, v) = match v.strip_prefix('!') {
        Some(r) => (true, r.trim()),
        None => (false, v),
    };
    let inner = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .ok_or("pcre: the expression must be quoted")?;
    if inner.len() > MAX_PCRE_BYTES {
        return Err(format!(
            "pcre: expression of {} bytes is longer than the limit of {MAX_PCRE_BYTES}",
            inner.len()
        ));
    }
    // The rule language escapes `"` and `;`; every other `\` is PCRE's.
    let inner = inner.replace("\\\"", "\"").replace("\\;", ";");
    let body = inner
        .strip_prefix('/')
        .ok_or("pcre: the expression must start with '/'")?;
    let slash = body.rfind('/').ok_or("pcre: no closing '/'")?;
    let (expr, flags) = (&body[..slash], &body[slash + 1..]);
    let mut b = regex::bytes::RegexBuilder::new(expr);
    b.unicode(false)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(100);
    let (mut relative, mut anchored, mut buffer) = (false, false, None);
    let dollar = flags.chars().all(|f| f != 'E' && f != 'm') && has_end_anchor(expr);
    for f in flags.chars() {
        let sticky = match f {
            'i' => {
                b.case_insensitive(true);
                None
            }
            's' => {
                b.dot_matches_new_line(true);
                None
            }
            'm' => {
                b.multi_line(true);
                None
            }
            'x' => {
                b.ignore_whitespace(true);
                None
            }
            'G' => {
                b.swap_greed(true);
                None
            }
            'A' => {
                anchored = true;
                None
            }
            'R' => {
                relative = true;
                None
            }
            // `$` only at the very end (the regex crate's `$` already is);
            // raw bytes; the match-limit override.
            'E' | 'B' | 'O' => None,
            'U' => Some(Buffer::HttpUri),
            'I' => Some(Buffer::HttpUriRaw),
            'M' => Some(Buffer::HttpMethod),
            'C' => Some(Buffer::HttpCookie),
            'H' => Some(Buffer::HttpHeader),
            'V' => Some(Buffer::HttpUserAgent),
            'W' => Some(Buffer::HttpHost),
            'D' | 'P' | 'Q' | 'S' | 'Y' | 'Z' | 'K' | 'J' | 'L' | 'T' => {
                return Err(format!(
                    "pcre: flag '{f}' names a buffer moni does not build (raw headers, bodies, responses, ...)"
                ))
            }
            other => return Err(format!("pcre: unknown flag '{other}'")),
        };
        if let Some(s) = sticky {
            if buffer.is_some_and(|b| b != s) {
                return Err("pcre: two buffer flags".into());
            }
            buffer = Some(s);
        }
    }
    for (construct, what) in [
        ("(?=", "lookahead"),
        ("(?!", "negative lookahead"),
        ("(?<=", "lookbehind"),
        ("(?<!", "negative lookbehind"),
        ("(?>", "atomic groups"),
    ] {
        if expr.contains(construct) {
            return Err(format!(
                "pcre: {what} '{construct}' is not supported by the regex crate"
            ));
        }
    }
    let re = b.build().map_err(|e| {
        let text = e.to_string();
        let why = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with("error:"))
            .unwrap_or("does not compile")
            .trim()
            .to_string();
        if expr
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\\' && w[1].is_ascii_digit() && w[1] != b'0')
        {
            "pcre: backreferences are not supported by the regex crate".to_string()
        } else {
            format!("pcre: the regex crate rejects the expression ({why})")
        }
    })?;
    Ok((
        Op::Pcre {
            re: Re(re),
            negated,
            relative,
            anchored,
            dollar_before_newline: dollar,
        },
        buffer,
    ))
}

/// Whether `expr` has a `$` outside a character class and not escaped.
fn has_end_anchor(expr: &str) -> bool {
    let (mut escaped, mut class) = (false, false);
    for c in expr.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => class = true,
            ']' => class = false,
            '$' if !class => return true,
            _ => {}
        }
    }
    false
}

/// A `NumCmp` whose numbers fit in `max` (a `u8` field takes `ttl:<256`
/// but not `ttl:300`).
fn cmp_max(key: &str, v: &str, max: u32) -> Result<NumCmp, String> {
    let c = parse_cmp(key, v)?;
    let (a, b) = match c {
        NumCmp::Between(a, b) | NumCmp::Range(a, b) => (a, b),
        NumCmp::Eq(n)
        | NumCmp::Ne(n)
        | NumCmp::Lt(n)
        | NumCmp::Gt(n)
        | NumCmp::Le(n)
        | NumCmp::Ge(n) => (n, n),
    };
    if a.max(b) > max {
        return Err(format!("{key}: {} is above {max}", a.max(b)));
    }
    Ok(c)
}

fn flowbit_names(key: &str, v: Option<&str>, sep: char) -> Result<Vec<String>, String> {
    let v = v.ok_or_else(|| format!("flowbits:{key} needs a flowbit name"))?;
    let names: Vec<String> = v.split(sep).map(|n| n.trim().to_string()).collect();
    if names
        .iter()
        .any(|n| n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == '&'))
    {
        return Err(format!("flowbits:{key}: bad flowbit name list '{v}'"));
    }
    Ok(names)
}

fn parse_flowbits(rule: &mut Rule, v: &str) -> Result<(), String> {
    let (cmd, names) = match v.split_once(',') {
        Some((c, n)) => (c.trim(), Some(n.trim())),
        None => (v.trim(), None),
    };
    let one = |names: Option<&str>| -> Result<String, String> {
        let n = flowbit_names(cmd, names, '|')?;
        match <[String; 1]>::try_from(n) {
            Ok([name]) => Ok(name),
            Err(_) => Err(format!("flowbits:{cmd} takes one name")),
        }
    };
    let op = match cmd {
        "noalert" if names.is_none() => {
            rule.noalert = true;
            return Ok(());
        }
        "set" => FlowbitsOp::Set(one(names)?),
        "unset" => FlowbitsOp::Unset(one(names)?),
        "toggle" => FlowbitsOp::Toggle(one(names)?),
        "isset" | "isnotset" => {
            if names.is_some_and(|n| n.contains('&')) {
                // `a&b`: every one; the same as one test per name.
                for n in flowbit_names(cmd, names, '&')? {
                    rule.flowbits.push(if cmd == "isset" {
                        FlowbitsOp::IsSet(vec![n])
                    } else {
                        FlowbitsOp::IsNotSet(vec![n])
                    });
                }
                return Ok(());
            }
            let n = flowbit_names(cmd, names, '|')?;
            if cmd == "isset" {
                FlowbitsOp::IsSet(n)
            } else {
                FlowbitsOp::IsNotSet(n)
            }
        }
        other => return Err(format!("flowbits: unknown command '{other}'")),
    };
    rule.flowbits.push(op);
    Ok(())
}

fn apply_option(
    rule: &mut Rule,
    key: &str,
    value: Option<&str>,
    buffer: Buffer,
    names: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(b) = Buffer::modifier(key) {
        let c = last_content(rule, key)?;
        if c.buffer != Buffer::Payload {
            return Err(format!("{key} on a content already in {:?}", c.buffer));
        }
        c.buffer = b;
        return Ok(());
    }
    match key {
        "msg" => rule.msg = bounded(key, unquote(need(key, value)?)?, MAX_MSG_BYTES)?,
        "sid" => rule.sid = int(key, need(key, value)?)?,
        "rev" => rule.rev = int(key, need(key, value)?)?,
        "gid" => rule.gid = int(key, need(key, value)?)?,
        "classtype" => {
            let v = need(key, value)?.to_string();
            rule.classtype = Some(bounded(key, v, MAX_CLASSTYPE_BYTES)?);
        }
        "priority" => {
            let p: u8 = int(key, need(key, value)?)?;
            if p == 0 {
                return Err("priority must be 1 to 255".into());
            }
            rule.priority = Some(p);
        }
        "reference" | "metadata" => {
            let (list, max) = if key == "reference" {
                (&mut rule.references, MAX_REFERENCE_BYTES)
            } else {
                (&mut rule.metadata, MAX_METADATA_BYTES)
            };
            if list.len() == MAX_REFERENCES {
                return Err(format!(
                    "more than {MAX_REFERENCES} {key} options (the limit)"
                ));
            }
            list.push(bounded(key, need(key, value)?.to_string(), max)?);
        }
        // Informational: accepted and ignored.
        "target" | "tag" => {}
        "content" => {
            let v = need(key, value)?.trim();
            let (negated, v) = match v.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, v),
            };
            let pattern = content_bytes(v)?;
            if pattern.len() > MAX_CONTENT_BYTES {
                return Err(format!(
                    "content of {} bytes is longer than the limit of {MAX_CONTENT_BYTES} bytes",
                    pattern.len()
                ));
            }
            rule.contents
                .push(Content::new(pattern, negated, buffer, Op::Content));
        }
        "isdataat" => push_step(
            rule,
            parse_isdataat(need(key, value)?, names)?,
            buffer,
            None,
        ),
        "byte_test" => push_step(
            rule,
            parse_byte_test(need(key, value)?, names)?,
            buffer,
            None,
        ),
        "byte_jump" => push_step(
            rule,
            parse_byte_jump(need(key, value)?, names)?,
            buffer,
            None,
        ),
        "byte_extract" => {
            let op = parse_byte_extract(need(key, value)?, names)?;
            push_step(rule, op, buffer, None)
        }
        "pcre" => {
            let (op, fixed) = parse_pcre(need(key, value)?)?;
            if fixed.is_some() && buffer != Buffer::Payload {
                return Err("pcre: a buffer flag inside a sticky buffer".into());
            }
            push_step(rule, op, buffer, fixed)
        }
        "startswith" => {
            let c = last_content(rule, key)?;
            if c.negated || c.relative() || c.offset.is_some() || c.depth.is_some() {
                return Err(
                    "startswith with a negated content or offset/depth/distance/within".into(),
                );
            }
            c.startswith = true;
            c.depth = Some(c.pattern.len() as u32);
            c.offset = Some(0);
        }
        "endswith" => {
            let c = last_content(rule, key)?;
            if c.negated {
                return Err("endswith on a negated content".into());
            }
            c.endswith = true;
        }
        "bsize" => {
            if buffer == Buffer::Payload {
                return Err("bsize without a sticky buffer".into());
            }
            rule.lens
                .push((buffer, cmp_max(key, need(key, value)?, u32::MAX)?));
        }
        "urilen" => {
            let v = need(key, value)?;
            let (cmp, b) = match v.split_once(',') {
                Some((c, "raw")) => (c, Buffer::HttpUriRaw),
                Some((c, "norm")) => (c, Buffer::HttpUri),
                Some((_, other)) => return Err(format!("urilen: unknown option '{other}'")),
                None => (v, Buffer::HttpUri),
            };
            rule.lens.push((b, cmp_max(key, cmp.trim(), 65535)?));
        }
        "ttl" => rule
            .header
            .push(HeaderTest::Ttl(cmp_max(key, need(key, value)?, 255)?)),
        "id" => rule
            .header
            .push(HeaderTest::Id(cmp_max(key, need(key, value)?, 65535)?)),
        "ip_proto" => {
            let v = need(key, value)?;
            let named = |n: &str| match n.trim() {
                "tcp" => Some("6"),
                "udp" => Some("17"),
                "icmp" => Some("1"),
                "ipv6-icmp" | "icmpv6" => Some("58"),
                "gre" => Some("47"),
                "esp" => Some("50"),
                "ah" => Some("51"),
                "sctp" => Some("132"),
                _ => None,
            };
            let (pre, name) =
                v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let v = match named(name) {
                Some(num) => format!("{pre}{num}"),
                None => v.to_string(),
            };
            rule.header
                .push(HeaderTest::IpProto(cmp_max(key, &v, 255)?))
        }
        "ipopts" => {
            let v = need(key, value)?.trim();
            let bit = IP_OPTIONS
                .iter()
                .find(|(n, _, _)| *n == v)
                .map(|(_, _, b)| *b)
                .ok_or_else(|| format!("ipopts: unknown option '{v}'"))?;
            if bit == 0 {
                return Err("ipopts:any is not supported".into());
            }
            rule.header.push(HeaderTest::IpOpts(bit));
        }
        "fragbits" => {
            let v = need(key, value)?.trim();
            let mut f = FlagsSpec::EXACT_NONE;
            for c in v.chars() {
                match c {
                    '!' | '*' | '+' => f.modifier = c as u8,
                    'M' | 'm' => f.bits |= FRAG_MF,
                    'D' | 'd' => f.bits |= FRAG_DF,
                    'R' | 'r' => f.bits |= FRAG_RESERVED,
                    _ => return Err(format!("fragbits: unknown flag '{c}'")),
                }
            }
            rule.header.push(HeaderTest::FragBits(f));
        }
        "fragoffset" => rule.header.push(HeaderTest::FragOffset(cmp_max(
            key,
            need(key, value)?,
            8191,
        )?)),
        "icmp_id" => rule
            .header
            .push(HeaderTest::IcmpId(cmp_max(key, need(key, value)?, 65535)?)),
        "icmp_seq" => {
            rule.header
                .push(HeaderTest::IcmpSeq(cmp_max(key, need(key, value)?, 65535)?))
        }
        "seq" => rule
            .header
            .push(HeaderTest::Seq(cmp_max(key, need(key, value)?, u32::MAX)?)),
        "ack" => rule
            .header
            .push(HeaderTest::Ack(cmp_max(key, need(key, value)?, u32::MAX)?)),
        "window" => rule
            .header
            .push(HeaderTest::Window(cmp_max(key, need(key, value)?, 65535)?)),
        "tcp.mss" => rule
            .header
            .push(HeaderTest::TcpMss(cmp_max(key, need(key, value)?, 65535)?)),
        "flowbits" => parse_flowbits(rule, need(key, value)?)?,
        "nocase" => last_content(rule, key)?.nocase = true,
        "rawbytes" => {
            last_content(rule, key)?;
        }
        "fast_pattern" => {
            if value.is_some_and(|v| v.contains(',')) {
                return Err("fast_pattern with offset,length is not supported".into());
            }
            if value.is_some_and(|v| v.trim() == "only") {
                // Suricata 5 "fast_pattern:only": the content is matched by the
                // prefilter alone, which is what we do anyway.
            }
            last_content(rule, key)?;
            rule.fast_pattern = Some(rule.contents.len() - 1);
        }
        "offset" | "depth" | "distance" | "within" => {
            let v = need(key, value)?;
            let c = last_content(rule, key)?;
            match num_or_var(key, v, names) {
                // A byte_extract variable: the field holds a placeholder
                // (so the kind of window is known), the value comes at
                // match time.
                Ok(Num::Var(i)) => {
                    let placeholder = if matches!(key, "depth" | "within") {
                        "4294967295"
                    } else {
                        "0"
                    };
                    position_modifier(c, key, placeholder)?;
                    let slot = ["offset", "depth", "distance", "within"]
                        .iter()
                        .position(|k| *k == key)
                        .unwrap_or(0);
                    c.vars[slot] = Some(i);
                }
                _ => position_modifier(c, key, v)?,
            }
        }
        "dsize" => rule.dsize = Some(parse_cmp(key, need(key, value)?)?),
        "itype" => rule.itype = Some(parse_cmp(key, need(key, value)?)?),
        "icode" => rule.icode = Some(parse_cmp(key, need(key, value)?)?),
        "flags" | "tcp.flags" => rule.flags = Some(parse_flags(key, need(key, value)?)?),
        "vlan.id" => {
            let v = need(key, value)?;
            let (cmp, layer) = match v.split_once(',') {
                Some((c, l)) => (c, Some(l.trim())),
                None => (v, None),
            };
            let layer = match layer {
                None => VlanLayer::Any,
                Some("all") => VlanLayer::All,
                Some(l) => {
                    let i: i8 = l.parse().map_err(|_| format!("vlan.id: bad layer '{l}'"))?;
                    if !(-3..=2).contains(&i) {
                        return Err(format!("vlan.id: layer {i} out of -3..2"));
                    }
                    VlanLayer::Index(i)
                }
            };
            rule.vlan.push(VlanTest {
                cmp: parse_cmp(key, cmp)?,
                layer,
            });
        }
        // A hint to Suricata's prefilter engine; ours needs none.
        "prefilter" => {}
        "flow" => rule.flow = parse_flow(need(key, value)?)?,
        "threshold" => rule.threshold = Some(parse_threshold(key, need(key, value)?)?),
        "detection_filter" => {
            let mut t = parse_threshold(key, need(key, value)?)?;
            t.kind = ThresholdKind::DetectionFilter;
            rule.detection_filter = Some(t);
        }
        other => {
            return Err(match other {
                "xbits" | "flowint" => {
                    format!("{other}: cross-flow variables are not supported")
                }
                "file_data" | "http.request_body" | "http_client_body" | "http.response_body"
                | "http_server_body" => {
                    format!("{other}: HTTP bodies need TCP stream reassembly (not supported)")
                }
                _ if other.starts_with("http")
                    || other.starts_with("dns")
                    || other.starts_with("tls")
                    || other.starts_with("ssh")
                    || other.starts_with("smb")
                    || other.starts_with("ftp")
                    || other.starts_with("sip")
                    || other.starts_with("ja3") =>
                {
                    format!("{other}: application-layer buffer not parsed (supported: http request buffers and status line, dns.query, sip start line)")
                }
                _ => format!("{other}: keyword not supported"),
            })
        }
    }
    Ok(())
}

/// Applies `offset`/`depth` (absolute) or `distance`/`within` (relative
/// to the previous content's match) to a content; the two kinds do not mix
/// on one content, and a window shorter than the pattern could never match.
fn position_modifier(c: &mut Content, key: &str, v: &str) -> Result<(), String> {
    let relative = matches!(key, "distance" | "within");
    let (mixed, other) = if relative {
        (c.offset.is_some() || c.depth.is_some(), "offset/depth")
    } else {
        (
            c.distance.is_some() || c.within.is_some(),
            "distance/within",
        )
    };
    if mixed {
        return Err(format!("{key} mixed with {other} on one content"));
    }
    if key == "distance" {
        c.distance = Some(int(key, v)?);
        return Ok(());
    }
    let n: u32 = int(key, v)?;
    if matches!(key, "depth" | "within") && (n as usize) < c.pattern.len() {
        return Err(format!(
            "{key} {n} is shorter than its content ({} bytes)",
            c.pattern.len()
        ));
    }
    match key {
        "offset" => c.offset = Some(n),
        "depth" => c.depth = Some(n),
        _ => c.within = Some(n),
    }
    Ok(())
}

/// `N`, `<N`, `>N`, `<=N`, `>=N`, `!N`, `A<>B` and `A-B` (both exclusive).
fn parse_cmp(key: &str, v: &str) -> Result<NumCmp, String> {
    let v = v.trim();
    if let Some((a, b)) = v.split_once("<>") {
        return Ok(NumCmp::Between(int(key, a)?, int(key, b)?));
    }
    if let Some(rest) = v.strip_prefix("<=") {
        return Ok(NumCmp::Le(int(key, rest)?));
    }
    if let Some(rest) = v.strip_prefix(">=") {
        return Ok(NumCmp::Ge(int(key, rest)?));
    }
    if let Some(rest) = v.strip_prefix('<') {
        return Ok(NumCmp::Lt(int(key, rest)?));
    }
    if let Some(rest) = v.strip_prefix('>') {
        return Ok(NumCmp::Gt(int(key, rest)?));
    }
    if let Some(rest) = v.strip_prefix('!') {
        return Ok(NumCmp::Ne(int(key, rest)?));
    }
    if let Some((a, b)) = v.split_once('-').filter(|(a, _)| !a.is_empty()) {
        return Ok(NumCmp::Range(int(key, a)?, int(key, b)?));
    }
    Ok(NumCmp::Eq(int(key, v)?))
}

fn flag_bit(c: char) -> Option<u8> {
    use crate::decode::tcp_flags::*;
    Some(match c.to_ascii_uppercase() {
        'F' => FIN,
        'S' => SYN,
        'R' => RST,
        'P' => PSH,
        'A' => ACK,
        'U' => URG,
        'C' | '1' => CWR,
        'E' | '2' => ECE,
        _ => return None,
    })
}

/// `flags:[!|*|+]FSRPAUCE0[,mask]`.
fn parse_flags(key: &str, v: &str) -> Result<FlagsSpec, String> {
    let (spec, mask) = match v.split_once(',') {
        Some((s, m)) => (s.trim(), Some(m.trim())),
        None => (v.trim(), None),
    };
    let mut f = FlagsSpec::EXACT_NONE;
    for c in spec.chars() {
        match c {
            '!' | '*' | '+' => f.modifier = c as u8,
            '0' => {}
            _ => f.bits |= flag_bit(c).ok_or_else(|| format!("{key}: unknown flag '{c}'"))?,
        }
    }
    for c in mask.unwrap_or("").chars() {
        f.ignore |= flag_bit(c).ok_or_else(|| format!("{key}: unknown mask flag '{c}'"))?;
    }
    Ok(f)
}

fn parse_flow(v: &str) -> Result<FlowSpec, String> {
    let mut f = FlowSpec::default();
    for part in v.split(',').map(str::trim) {
        match part {
            "to_server" | "from_client" => f.to_server = Some(true),
            "to_client" | "from_server" => f.to_server = Some(false),
            "established" => f.established = Some(true),
            "not_established" => f.established = Some(false),
            "stateless" => {}
            other => return Err(format!("flow option '{other}' is not supported")),
        }
    }
    Ok(f)
}

/// `type limit|threshold|both, track by_src|by_dst|by_rule|by_both, count
/// N, seconds S[, unique_on dst_port|src_port]`.
fn parse_threshold(key: &str, v: &str) -> Result<Threshold, String> {
    let mut kind = None;
    let mut track = None;
    let mut count = None;
    let mut seconds = None;
    let mut unique_on = None;
    let mut multiplier = None;
    for part in v.split(',') {
        let mut it = part.split_whitespace();
        let (Some(k), Some(val), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("{key}: '{}' is not 'name value'", part.trim()));
        };
        match k {
            "type" => {
                kind = Some(match val {
                    "limit" => ThresholdKind::Limit,
                    "threshold" => ThresholdKind::Threshold,
                    "both" => ThresholdKind::Both,
                    "backoff" => ThresholdKind::Backoff,
                    _ => return Err(format!("{key}: unknown type '{val}'")),
                })
            }
            "track" => {
                track = Some(match val {
                    "by_src" => Track::Src,
                    "by_dst" => Track::Dst,
                    "by_rule" => Track::Rule,
                    "by_both" => Track::Both,
                    "by_flow" => Track::Flow,
                    _ => return Err(format!("{key}: unknown track '{val}'")),
                })
            }
            "count" => count = Some(int::<u32>(key, val)?),
            "seconds" => seconds = Some(int::<u32>(key, val)?),
            "multiplier" => multiplier = Some(int::<u32>(key, val)?),
            "unique_on" => {
                unique_on = Some(match val {
                    "dst_port" => true,
                    "src_port" => false,
                    _ => return Err(format!("{key}: unique_on '{val}' is not supported")),
                })
            }
            _ => return Err(format!("{key}: unknown setting '{k}'")),
        }
    }
    let kind = match (key, kind) {
        ("detection_filter", None) => ThresholdKind::DetectionFilter,
        ("detection_filter", Some(_)) => return Err("detection_filter takes no type".into()),
        (_, Some(k)) => k,
        (_, None) => return Err(format!("{key}: missing type")),
    };
    let track = track.ok_or_else(|| format!("{key}: missing track"))?;
    let count = count.ok_or_else(|| format!("{key}: missing count"))?;
    if kind == ThresholdKind::Backoff {
        // Suricata: by_flow only, count and multiplier at least 1, no
        // seconds.
        let m = multiplier.ok_or_else(|| format!("{key}: backoff needs a multiplier"))?;
        if track != Track::Flow || count == 0 || m == 0 || seconds.is_some() {
            return Err(format!(
                "{key}: backoff takes track by_flow, count and multiplier of at least 1, no seconds"
            ));
        }
        return Ok(Threshold {
            kind,
            track,
            count,
            seconds: 0,
            unique_on_dst_port: None,
            multiplier: m,
        });
    }
    if multiplier.is_some() {
        return Err(format!("{key}: multiplier is for type backoff"));
    }
    Ok(Threshold {
        kind,
        track,
        count,
        seconds: seconds.ok_or_else(|| format!("{key}: missing seconds"))?,
        unique_on_dst_port: unique_on,
        multiplier: 0,
    })
}

const MAX_VAR_DEPTH: usize = 16;

/// Expands `$VAR`s in an address or port spec (recursively, bounded).
/// Most bytes a list's variables expand to: a chain of variables that
/// each name the next several times grows exponentially (8 of them, 10
/// names each, took a load past 1.3 GB), where real address groups are a
/// few hundred bytes.
const MAX_EXPANDED: usize = 64 << 10;

/// Most levels of `[...]` in a list: each is a recursion of [`walk`], and
/// 100,000 of them overflowed the stack (a fuzzed rule file).
const MAX_LIST_DEPTH: usize = 32;

fn expand(s: &str, vars: &Vars, depth: usize) -> Result<String, String> {
    if depth > MAX_VAR_DEPTH {
        return Err("variables nest too deep (a cycle?)".into());
    }
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let value = vars
            .0
            .get(name)
            .ok_or_else(|| format!("variable ${name} is not set"))?;
        out.push('[');
        out.push_str(&expand(value, vars, depth + 1)?);
        out.push(']');
        if out.len() > MAX_EXPANDED {
            return Err(format!(
                "variables expand to more than {} KiB (variables naming each other many times?)",
                MAX_EXPANDED >> 10
            ));
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a `[a,b,[c,d]]` list body at top-level commas.
fn split_list(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ']'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '['".into());
    }
    out.push(s[start..].trim());
    Ok(out)
}

/// Walks a (var-expanded) list, calling `leaf(negated, item)` on each item.
fn walk<'a>(
    s: &'a str,
    negated: bool,
    depth: usize,
    leaf: &mut dyn FnMut(bool, &'a str) -> Result<(), String>,
) -> Result<(), String> {
    let mut s = s.trim();
    let mut negated = negated;
    while let Some(rest) = s.strip_prefix('!') {
        s = rest.trim_start();
        negated = !negated;
    }
    if s.is_empty() {
        return Err("empty list item".into());
    }
    if let Some(inner) = s.strip_prefix('[') {
        if depth >= MAX_LIST_DEPTH {
            return Err(format!("lists nest deeper than {MAX_LIST_DEPTH} levels"));
        }
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("'{}' is missing its ']'", clip(s)))?;
        for item in split_list(inner)? {
            walk(item, negated, depth + 1, leaf)?;
        }
        return Ok(());
    }
    leaf(negated, s)
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| format!("'{s}' is not an address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        // A dotted netmask (a.b.c.d/255.255.0.0).
        Some(l) if l.contains('.') => {
            let m: std::net::Ipv4Addr = l.parse().map_err(|_| format!("bad netmask in '{s}'"))?;
            u32::from(m).count_ones() as u8
        }
        Some(l) => l
            .parse()
            .map_err(|_| format!("bad prefix length in '{s}'"))?,
        None => max,
    };
    if len > max {
        return Err(format!("prefix length {len} too long in '{s}'"));
    }
    Ok(Cidr::new(addr, len))
}

/// An address or port list: its `any`, positive and negated items. A list
/// of negations only means everything except them.
fn parse_list<T>(
    s: &str,
    vars: &Vars,
    item: impl Fn(&str) -> Result<T, String>,
) -> Result<(bool, Vec<T>, Vec<T>), String> {
    let expanded = expand(s, vars, 0)?;
    let (mut any, mut pos, mut neg) = (false, Vec::new(), Vec::new());
    walk(&expanded, false, 0, &mut |negated, x| {
        if x.eq_ignore_ascii_case("any") {
            if negated {
                return Err("'!any' matches nothing".into());
            }
            any = true;
        } else if negated {
            neg.push(item(x)?);
        } else {
            pos.push(item(x)?);
        }
        Ok(())
    })?;
    Ok((any || pos.is_empty(), pos, neg))
}

pub(crate) fn parse_addrs(s: &str, vars: &Vars) -> Result<AddrSpec, String> {
    let (any, pos, neg) = parse_list(s, vars, parse_cidr)?;
    Ok(AddrSpec { any, pos, neg })
}

/// `80`, `1024:`, `:1023`, `8000:8080`.
fn parse_port_range(item: &str) -> Result<(u16, u16), String> {
    let Some((a, b)) = item.split_once(':') else {
        let p = int::<u16>("port", item)?;
        return Ok((p, p));
    };
    let lo = if a.is_empty() {
        0
    } else {
        int::<u16>("port", a)?
    };
    let hi = if b.is_empty() {
        u16::MAX
    } else {
        int::<u16>("port", b)?
    };
    if lo > hi {
        return Err(format!("port range '{item}' is reversed"));
    }
    Ok((lo, hi))
}

pub(crate) fn parse_ports(s: &str, vars: &Vars) -> Result<PortSpec, String> {
    let (any, pos, neg) = parse_list(s, vars, parse_port_range)?;
    if !neg.is_empty() {
        // A list whose negations take every port it names can never match:
        // refused, as Suricata refuses it ("no ports left after merging
        // ports with negated ports").
        let mut left = vec![any; 1 << 16];
        for &(lo, hi) in &pos {
            left[usize::from(lo)..=usize::from(hi)].fill(true);
        }
        for &(lo, hi) in &neg {
            left[usize::from(lo)..=usize::from(hi)].fill(false);
        }
        if !left.contains(&true) {
            return Err(format!("no ports left after the negations in '{s}'"));
        }
    }
    Ok(PortSpec { any, pos, neg })
}
