//! DNS anomalies: NXDOMAIN storms per client, and query names too long or
//! too random to be names (data tunnelled through DNS).

use std::net::IpAddr;

use serde_json::json;

use super::state::Bounded;
use super::{details, Detector, IdsConfig, DNS_NXDOMAIN_STORM, DNS_TUNNEL};
use crate::decode::{Decoded, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

/// A DNS message's flags, rcode and first question name (lower case).
pub fn parse(payload: &[u8]) -> Option<(bool, u8, String)> {
    let flags = payload.get(2..4)?;
    let response = flags[0] & 0x80 != 0;
    let rcode = flags[1] & 0x0f;
    let qdcount = u16::from_be_bytes([*payload.get(4)?, *payload.get(5)?]);
    if qdcount == 0 {
        return Some((response, rcode, String::new()));
    }
    let mut name = String::new();
    let mut at = 12;
    loop {
        let len = usize::from(*payload.get(at)?);
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 || name.len() > 255 {
            return None; // compression in a question, or not DNS
        }
        let label = payload.get(at + 1..at + 1 + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
        at += 1 + len;
    }
    Some((response, rcode, name))
}

/// Shannon entropy of the name's characters, dots left out, in bits.
pub fn entropy(name: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in name.bytes().filter(|&b| b != b'.') {
        counts[usize::from(b)] += 1;
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

#[derive(Debug)]
struct Storm {
    start: Timestamp,
    nxdomain: u64,
    names: Vec<String>,
}

pub struct DnsAnomalies {
    storms: Bounded<(VnetId, IpAddr), Storm>,
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
        *self = DnsAnomalies::new(c);
        self.storms = storms;
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
        let Some((response, rcode, name)) = parse(d.payload) else {
            return;
        };
        if !response && dst_port == 53 {
            let e = entropy(&name);
            let long = name.len() > self.name_max;
            let random = name.len() >= self.entropy_min_len && e > self.entropy;
            if long || random {
                out.push(AlertRecord {
                    tunnel: Default::default(),
                    time: ts,
                    end: ts,
                    vnet,
                    kind: DNS_TUNNEL.name,
                    trigger: None,
                    to_server: None,
                    flow: None,
                    signature_id: 9_000_008,
                    signature: format!(
                        "moni DNS query name {} from {}",
                        if long { "too long" } else { "of high entropy" },
                        ip.src
                    ),
                    category: "Potentially Bad Traffic".into(),
                    rev: 1,
                    flow_id: None,
                    vlans: Vec::new(),
                    severity: DNS_TUNNEL.severity,
                    src_addr: Some(ip.src),
                    src_port: Some(src_port),
                    dst_addr: Some(ip.dst),
                    dst_port: Some(dst_port),
                    protocol: 17,
                    details: details(&[
                        ("query", json!(name.chars().take(255).collect::<String>())),
                        ("length", json!(name.len())),
                        ("entropy_bits", json!((e * 100.0).round() / 100.0)),
                        ("threshold_length", json!(self.name_max)),
                        ("threshold_entropy", json!(self.entropy)),
                    ]),
                });
            }
            return;
        }
        if !response || rcode != 3 {
            return;
        }
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
            s.names.push(name);
        }
        if s.nxdomain == self.nxdomain {
            out.push(AlertRecord {
                tunnel: Default::default(),
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

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.storms.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.storms.len(), self.storms.evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_separates_names_from_data() {
        assert!(entropy("www.example.com") < 3.5);
        assert!(
            entropy("mzxw6ytboi4dqnrqgq3tmnzygqztcmjrgiydonjtg4ydmmbsgqyq.t.example.com") > 4.0
        );
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
