//! DNS anomalies: NXDOMAIN storms per client, and data tunnelled through
//! DNS.
//!
//! A tunnel is judged on the labels *below the registered domain* (the
//! part a tunnel fills with data: `<data>.t.example.com`), not on the whole
//! name: a name longer than `dns_name_max`; labels below the domain at
//! least `dns_entropy_min_len` long, random (entropy above `dns_entropy`)
//! *and* shaped like an encoding (letters mixed with digits and no word
//! separators, or bytes no host name has); or one client asking for many
//! distinct long names of one domain (`dns_unique_subdomains` per window,
//! HyperLogLog-counted). A real name such as
//! `txtpadding_323.n1.netalyzr.icsi.berkeley.edu` (4.24 bits/char over the
//! whole name) has 17 characters below its domain: no tunnel. Entropy is
//! only computed for the rare long subdomains.

use std::hash::BuildHasher;
use std::net::IpAddr;

use serde_json::json;

use super::state::{Bounded, KeptHll};
use super::{details, Detector, IdsConfig, DNS_NXDOMAIN_STORM, DNS_TUNNEL};
use crate::decode::{Decoded, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

/// A DNS message's flags, rcode and first question name (lower case).
pub fn parse(payload: &[u8]) -> Option<(bool, u8, String)> {
    let (response, rcode) = parse_header(payload)?;
    let mut name = String::new();
    parse_name(payload, &mut name)?;
    Some((response, rcode, name))
}

/// A DNS message's response flag and rcode.
fn parse_header(payload: &[u8]) -> Option<(bool, u8)> {
    let flags = payload.get(2..4)?;
    Some((flags[0] & 0x80 != 0, flags[1] & 0x0f))
}

/// The first question name (lower case) into `name`, which is cleared
/// first: the detector reuses one buffer instead of a new `String` per
/// packet. Empty when the message has no question.
fn parse_name(payload: &[u8], name: &mut String) -> Option<()> {
    name.clear();
    let qdcount = u16::from_be_bytes([*payload.get(4)?, *payload.get(5)?]);
    if qdcount == 0 {
        return Some(());
    }
    let mut at = 12;
    loop {
        let len = usize::from(*payload.get(at)?);
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 || name.chars().count() > 255 {
            return None; // compression in a question, or not DNS
        }
        let label = payload.get(at + 1..at + 1 + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
        at += 1 + len;
    }
    Some(())
}

/// Shannon entropy of the name's characters, dots left out, in bits. A
/// name holds one character per wire byte (bytes past ASCII as the
/// Latin-1 character of that value), so the entropy and the lengths are
/// the wire's, lower-cased: not those of its UTF-8 encoding, which takes
/// two bytes for each such character.
pub fn entropy(name: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for c in name.chars().filter(|&c| c != '.') {
        counts[(u32::from(c) & 0xff) as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / f64::from(n);
            -p * p.log2()
        })
        .sum()
}

/// A name as text: printable ASCII as it is, other bytes as `\xNN` (as
/// tshark shows them), at most 255 of them.
fn printable(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().take(255) {
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{:02x}", u32::from(c) & 0xff));
        }
    }
    out
}

/// The registered domain of a lower-case name and the labels below it
/// (without the joining dot). No public-suffix list: the last two labels,
/// or three under a two-letter country code with a generic second level
/// (`example.co.uk`, `example.com.au`).
pub fn split_registered(name: &str) -> (&str, &str) {
    // The last three dots, right to left (no allocation).
    let mut last3 = [0usize; 3];
    let mut n = 0;
    for (i, _) in name.rmatch_indices('.').take(3) {
        last3[n] = i;
        n += 1;
    }
    let dots = &last3[..n];
    let labels_from = |n: usize| -> usize { dots.get(n).map_or(0, |&i| i + 1) };
    let mut keep = 2;
    if dots.len() >= 2 {
        let tld = &name[labels_from(0)..];
        let second = &name[labels_from(1)..dots[0]];
        if tld.len() == 2
            && matches!(
                second,
                "co" | "com" | "net" | "org" | "gov" | "edu" | "ac" | "ne" | "or" | "go"
            )
        {
            keep = 3;
        }
    }
    match dots.get(keep - 1) {
        Some(&i) => (&name[i + 1..], &name[..i]),
        None => (name, ""),
    }
}

/// Whether labels look like encoded data rather than words: letters mixed
/// with digits and no `-`/`_` separators, or any byte a host name never
/// has.
pub fn encoded(sub: &str) -> bool {
    let (mut letters, mut digits, mut seps) = (0, 0, 0);
    for b in sub.bytes() {
        match b {
            b'a'..=b'z' => letters += 1,
            b'0'..=b'9' => digits += 1,
            b'-' | b'_' => seps += 1,
            b'.' => {}
            _ => return true,
        }
    }
    letters > 0 && digits > 0 && seps == 0
}

/// One client's queries for one registered domain in the window.
#[derive(Debug, Default)]
struct Subdomains {
    start: Timestamp,
    queries: u64,
    names: KeptHll,
    sub_bytes: u64,
    example: String,
    alerted: bool,
}

#[derive(Debug)]
struct Storm {
    start: Timestamp,
    nxdomain: u64,
    names: Vec<String>,
}

pub struct DnsAnomalies {
    storms: Bounded<(VnetId, IpAddr), Storm>,
    /// Keyed by the registered domain's hash.
    subdomains: Bounded<(VnetId, IpAddr, u64), Subdomains>,
    hasher: foldhash::fast::FixedState,
    /// The name being looked at (reused: no allocation per packet).
    name: String,
    unique: f64,
    window_us: i64,
    nxdomain: u64,
    name_max: usize,
    entropy: f64,
    entropy_min_len: usize,
}

impl DnsAnomalies {
    pub fn new(c: &IdsConfig) -> Self {
        DnsAnomalies {
            storms: Bounded::new(c.max_tracked),
            subdomains: Bounded::new(c.max_tracked),
            hasher: foldhash::fast::FixedState::with_seed(0x646e73),
            name: String::with_capacity(256),
            unique: f64::from(c.dns_unique_subdomains),
            window_us: i64::from(c.dns_window_secs) * 1_000_000,
            nxdomain: u64::from(c.nxdomain_per_client),
            name_max: c.dns_name_max,
            entropy: c.dns_entropy,
            entropy_min_len: c.dns_entropy_min_len,
        }
    }
}

impl DnsAnomalies {
    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let storms = std::mem::replace(&mut self.storms, Bounded::new(1));
        let subdomains = std::mem::replace(&mut self.subdomains, Bounded::new(1));
        *self = DnsAnomalies::new(c);
        self.storms = storms;
        self.subdomains = subdomains;
    }
}

impl DnsAnomalies {
    /// One query from `client` to `server`.
    #[allow(clippy::too_many_arguments)] // the packet's facts
    fn query(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        client: IpAddr,
        server: IpAddr,
        src_port: u16,
        name: &str,
        out: &mut Vec<AlertRecord>,
    ) {
        let (domain, sub) = split_registered(name);
        if sub.is_empty() {
            return;
        }
        // Wire bytes, one character each (see [`entropy`]).
        let (name_len, sub_len) = (name.chars().count(), sub.chars().count());
        let long = name_len > self.name_max;
        let mut e = None;
        let random = sub_len >= self.entropy_min_len && {
            let v = entropy(sub);
            e = Some(v);
            v > self.entropy && encoded(sub)
        };
        // Many distinct names of one domain from one client.
        let w = self.window_us;
        let h = self.hasher.hash_one(domain);
        let st = self
            .subdomains
            .entry(&(vnet, client, h), Subdomains::default);
        if ts.micros_since(st.start) > w || st.start.0 == 0 {
            *st = Subdomains {
                start: ts,
                ..Subdomains::default()
            };
        }
        st.queries += 1;
        st.names.add(&sub);
        st.sub_bytes += sub_len as u64;
        if st.example.is_empty() {
            st.example = printable(name);
        }
        let mean_sub = st.sub_bytes as f64 / st.queries as f64;
        // A kept estimate: recomputed only when a register rose (a
        // random-subdomain flood sends every query through here).
        let volume = !st.alerted && mean_sub >= 16.0 && st.names.estimate() >= self.unique;
        let (start, unique_est, queries) = (st.start, st.names.estimate(), st.queries);
        if volume {
            st.alerted = true;
        }
        if !(long || random || volume) {
            return;
        }
        let why = if long {
            "too long"
        } else if random {
            "of encoded data"
        } else {
            "unique subdomains"
        };
        out.push(AlertRecord {
            tunnel: Default::default(),
            gate: None,
            // The episode's first query (the client's queries to the
            // domain this window, which `queries` counts), whichever
            // reason crossed.
            time: start,
            end: ts,
            vnet,
            kind: DNS_TUNNEL.name,
            trigger: None,
            to_server: None,
            flow: None,
            signature_id: 9_000_008,
            signature: format!("moni DNS tunnel ({why}) from {client} via {domain}"),
            category: "Potentially Bad Traffic".into(),
            rev: 1,
            flow_id: None,
            vlans: Vec::new(),
            severity: DNS_TUNNEL.severity,
            src_addr: Some(client),
            src_port: Some(src_port),
            dst_addr: Some(server),
            dst_port: Some(53),
            protocol: 17,
            details: details(&[
                ("reason", json!(why)),
                ("query", json!(printable(name))),
                ("domain", json!(printable(domain))),
                ("length", json!(name_len)),
                ("subdomain_length", json!(sub_len)),
                (
                    "subdomain_entropy_bits",
                    json!(e.map(|e| (e * 100.0).round() / 100.0)),
                ),
                (
                    "unique_subdomains_est",
                    json!(unique_est.min(queries as f64).round()),
                ),
                ("queries", json!(queries)),
                ("mean_subdomain_length", json!(mean_sub.round())),
                ("threshold_length", json!(self.name_max)),
                ("threshold_entropy", json!(self.entropy)),
                ("threshold_unique_subdomains", json!(self.unique)),
            ]),
        });
    }
}

impl Detector for DnsAnomalies {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        let Transport::Udp { src_port, dst_port } = d.transport else {
            return;
        };
        if src_port != 53 && dst_port != 53 {
            return;
        }
        let Some((response, rcode)) = parse_header(d.payload) else {
            return;
        };
        let query = !response && dst_port == 53;
        // Only queries and NXDOMAIN answers are read further: the name of
        // any other message is not built at all.
        if !query && (!response || rcode != 3) {
            return;
        }
        let mut name = std::mem::take(&mut self.name);
        if parse_name(d.payload, &mut name).is_some() {
            if query {
                self.query(ts, vnet, ip.src, ip.dst, src_port, &name, out);
            } else {
                self.nxdomain(ts, vnet, ip, &name, out);
            }
        }
        self.name = name;
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.storms.retain(|_, s| now.micros_since(s.start) <= w);
        self.subdomains
            .retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (
            self.storms.len() + self.subdomains.len(),
            self.storms.evicted + self.subdomains.evicted,
        )
    }
}

impl DnsAnomalies {
    /// An NXDOMAIN answer for `name`, to the client (its destination).
    fn nxdomain(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        ip: crate::decode::IpLayer,
        name: &str,
        out: &mut Vec<AlertRecord>,
    ) {
        // NXDOMAIN to the client (the response's destination).
        let w = self.window_us;
        let s = self.storms.entry(&(vnet, ip.dst), || Storm {
            start: ts,
            nxdomain: 0,
            names: Vec::new(),
        });
        if ts.micros_since(s.start) > w {
            *s = Storm {
                start: ts,
                nxdomain: 0,
                names: Vec::new(),
            };
        }
        s.nxdomain += 1;
        if s.names.len() < 5 {
            s.names.push(name.to_string());
        }
        if s.nxdomain == self.nxdomain {
            out.push(AlertRecord {
                tunnel: Default::default(),
                gate: None,
                time: s.start,
                end: ts,
                vnet,
                kind: DNS_NXDOMAIN_STORM.name,
                trigger: None,
                to_server: None,
                flow: None,
                signature_id: 9_000_007,
                signature: format!("moni NXDOMAIN storm at {}", ip.dst),
                category: "Misc activity".into(),
                rev: 1,
                flow_id: None,
                vlans: Vec::new(),
                severity: DNS_NXDOMAIN_STORM.severity,
                src_addr: Some(ip.dst),
                src_port: None,
                dst_addr: Some(ip.src),
                dst_port: Some(53),
                protocol: 17,
                details: details(&[
                    ("nxdomain", json!(s.nxdomain)),
                    ("threshold", json!(self.nxdomain)),
                    ("window_secs", json!(w / 1_000_000)),
                    ("first_names", json!(s.names)),
                ]),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_domain_and_the_labels_below() {
        assert_eq!(
            split_registered("txtpadding_323.n1.netalyzr.icsi.berkeley.edu"),
            ("berkeley.edu", "txtpadding_323.n1.netalyzr.icsi")
        );
        assert_eq!(split_registered("www.bbc.co.uk"), ("bbc.co.uk", "www"));
        assert_eq!(split_registered("example.com"), ("example.com", ""));
        assert_eq!(split_registered("localhost"), ("localhost", ""));
        assert_eq!(split_registered("a.pirate.sea"), ("pirate.sea", "a"));
        assert!(encoded(
            "mzxw6ytboi4dqnrqgq3tmnzygqztcmjrgiydonjtg4ydmmbsgqyq.t"
        ));
        assert!(!encoded("txtpadding_323.n1.netalyzr.icsi"));
        assert!(!encoded("www.images"));
    }

    #[test]
    fn entropy_separates_names_from_data() {
        assert!(entropy("www.example.com") < 3.5);
        assert!(
            entropy("mzxw6ytboi4dqnrqgq3tmnzygqztcmjrgiydonjtg4ydmmbsgqyq.t.example.com") > 4.0
        );
    }

    #[test]
    fn bytes_past_ascii_count_once_as_on_the_wire() {
        // iodine's probe `zi04aA-La-fl\xfbte...`: one character per byte,
        // so its length is the wire's and its entropy that of its bytes.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07fl\xfbte-A\x06pirate\x03sea\x00\x00\x01\x00\x01");
        let (_, _, name) = parse(&q).expect("query");
        assert_eq!(name.chars().count(), 18);
        assert_eq!(printable(&name), "fl\\xfbte-a.pirate.sea");
        // 0xfb is one value among seven, as an `x` in its place would be.
        assert!((entropy("fl\u{fb}te-a") - entropy("flxte-a")).abs() < 1e-12);
    }

    #[test]
    fn parses_a_query_and_refuses_garbage() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07Example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(parse(&q), Some((false, 0, "www.example.com".into())));
        assert_eq!(parse(&q[..14]), None);
        let mut bad = q.clone();
        bad[12] = 0xc0;
        assert_eq!(parse(&bad), None);
    }
}
