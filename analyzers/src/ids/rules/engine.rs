//! The compiled rule set and its per-packet matching.
//!
//! A packet's candidate rules are (a) the rules of its protocol without a
//! positive content, and (b) the rules whose fast pattern the
//! [`Prefilter`] finds in its payload (one pass, case-insensitive; the
//! exact case is checked afterwards). Each candidate is then checked in full:
//! header, `flow`, `flags`, `dsize`, ICMP type/code, contents, thresholds.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::app::{
    dns_queries, is_http_response, sip_buffer, sip_start_line, HttpRequest, HttpResponse, StartLine,
};
use super::gate::{FullWindows, GateTicket};
use super::parse::{parse_rule, rule_lines, Skipped, Vars};
use super::prefilter::Prefilter;
use super::threshold::{self, TrackKey, Window};
use super::{
    classtype, content, Action, Buffer, Content, FlowbitsOp, NumCmp, Proto, Rule, Threshold, Track,
};
use crate::decode::{Decoded, Fragment, Transport};
use crate::flow::PacketFlow;
use crate::ids::state::Bounded;
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

/// The `sid` a rule line names, read from its bytes (for the report of a
/// line that could not be read as text).
fn sid_of(line: &[u8]) -> Option<u32> {
    let at = line.windows(4).position(|w| w == b"sid:")? + 4;
    let rest = line.get(at..)?;
    let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Rules parsed from one or more files, with the report of those skipped.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// (file name, skipped rule).
    pub skipped: Vec<(String, Skipped)>,
    /// The variables the rule lines name (`$HOME_NET` ...), loaded or not.
    pub vars_used: std::collections::BTreeSet<String>,
}

impl RuleSet {
    /// Adds the rules of one file as read from disk: a line that is not
    /// UTF-8 (a `msg` saved in Latin-1, stray binary bytes) skips its rule
    /// with a reason naming the byte, and the file's other rules load
    /// (non-ASCII bytes of a `content` are written `|e9|` in a rule).
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8], vars: &Vars) {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => {
                let mut text = String::with_capacity(bytes.len());
                for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
                    let comment = line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'#');
                    match std::str::from_utf8(line) {
                        Ok(l) => text.push_str(l),
                        // A comment (or a rule commented out) is no rule.
                        Err(_) if comment => {}
                        Err(e) => {
                            // Kept as an empty line, so that the lines
                            // after keep their numbers.
                            let at = e.valid_up_to();
                            self.skipped.push((
                                name.to_string(),
                                Skipped {
                                    line: i + 1,
                                    sid: sid_of(line),
                                    keyword: "encoding".into(),
                                    reason: format!(
                                        "the line is not UTF-8 (byte 0x{:02x} at column {}; \
                                         write other bytes of a content as |hex|)",
                                        line.get(at).copied().unwrap_or(0),
                                        at + 1
                                    ),
                                },
                            ));
                        }
                    }
                    text.push('\n');
                }
                std::borrow::Cow::Owned(text)
            }
        };
        self.add(name, &text, vars);
    }

    /// Adds the rules of one file's text; `name` labels its skip entries.
    pub fn add(&mut self, name: &str, text: &str, vars: &Vars) {
        // A byte-order mark (a file saved by a Windows editor) is not part
        // of the first rule's action.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut sids: HashSet<(u32, u32)> = self.rules.iter().map(|r| (r.gid, r.sid)).collect();
        for (line, rule) in rule_lines(text) {
            for (i, _) in rule.match_indices('$') {
                let var: String = rule[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !var.is_empty() && !self.vars_used.contains(&var) {
                    self.vars_used.insert(var);
                }
            }
            match parse_rule(&rule, line, vars) {
                Ok(r) if !sids.insert((r.gid, r.sid)) => self.skipped.push((
                    name.to_string(),
                    Skipped {
                        line,
                        sid: Some(r.sid),
                        keyword: "duplicate sid".into(),
                        reason: format!("duplicate sid {} (the first one is kept)", r.sid),
                    },
                )),
                Ok(r) => self.rules.push(r),
                Err(s) => self.skipped.push((name.to_string(), s)),
            }
        }
    }

    /// The operator's variables (`set`: `--var`, `[ids.vars]`) that no
    /// rule line names and that are not Suricata's: most likely a typo
    /// (names are case-sensitive: `home_net` is not `HOME_NET`), which
    /// would leave the rules on the defaults without a word. None when no
    /// rule was read.
    pub fn unknown_vars<'a>(
        &self,
        set: &'a std::collections::BTreeMap<String, String>,
    ) -> Vec<&'a str> {
        if self.rules.is_empty() && self.skipped.is_empty() {
            return Vec::new();
        }
        let known = Vars::default();
        // A variable another one names (`AA = "[$BB]"`) is used where
        // that one is.
        let named: HashSet<&str> = set
            .values()
            .flat_map(|v| v.split('$').skip(1))
            .map(|after| {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                &after[..end]
            })
            .collect();
        set.keys()
            .map(|k| k.trim_start_matches('$'))
            .filter(|k| {
                !self.vars_used.contains(*k) && !known.0.contains_key(*k) && !named.contains(*k)
            })
            .collect()
    }

    pub fn parse(name: &str, text: &str, vars: &Vars) -> RuleSet {
        let mut s = RuleSet::default();
        s.add(name, text, vars);
        s
    }
}

/// Counters of the signature engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SignatureStats {
    /// Packets with an IP layer looked at.
    pub packets: u64,
    /// Candidate rules checked in full.
    pub candidates: u64,
    /// Rule matches (before thresholds).
    pub matches: u64,
    pub alerts: u64,
    /// Matches held back by `threshold` / `detection_filter`.
    pub thresholded: u64,
    /// Alerts dropped at [`AlertLimits::per_packet`].
    pub dropped_per_packet: u64,
    /// Alerts dropped at [`AlertLimits::per_second`].
    pub dropped_per_second: u64,
    /// Fragmented IP datagrams put back together and matched whole (the
    /// caller's reassembly table, see `Reassembler::for_signatures`).
    pub defrag_datagrams: u64,
    /// Incomplete datagrams that table dropped: their time ran out, the
    /// `decode.max_reassembly_bytes` cap, impossible fragments.
    pub defrag_dropped: u64,
    /// Packets a `pass` rule matched, and packets of flows it passed
    /// earlier: no rule was checked on them after it.
    pub passed_packets: u64,
    /// Flows a `pass` rule passed.
    pub passed_flows: u64,
    /// Passed flows forgotten at the cap (their later packets are
    /// inspected again), oldest first.
    pub passed_flows_evicted: u64,
    /// Flows a `drop` or `reject` rule matched on a flow-wide match
    /// ([`Rule::passes_flow`]): as in Suricata's IDS mode, their later
    /// packets are not inspected.
    pub dropped_flows: u64,
    /// Packets of those flows after the match, not inspected.
    pub dropped_flow_packets: u64,
    /// Dropped flows forgotten at the cap (their later packets are
    /// inspected again), oldest first.
    pub dropped_flows_evicted: u64,
}

/// Sums of counters: several workers', or the rule sets a node ran one
/// after another (a `run` reload).
impl std::ops::AddAssign<&SignatureStats> for SignatureStats {
    fn add_assign(&mut self, b: &SignatureStats) {
        // Destructured, so that a new counter cannot be left out of the sum.
        let SignatureStats {
            packets,
            candidates,
            matches,
            alerts,
            thresholded,
            dropped_per_packet,
            dropped_per_second,
            defrag_datagrams,
            defrag_dropped,
            passed_packets,
            passed_flows,
            passed_flows_evicted,
            dropped_flows,
            dropped_flow_packets,
            dropped_flows_evicted,
        } = b;
        self.packets += packets;
        self.candidates += candidates;
        self.matches += matches;
        self.alerts += alerts;
        self.thresholded += thresholded;
        self.dropped_per_packet += dropped_per_packet;
        self.dropped_per_second += dropped_per_second;
        self.defrag_datagrams += defrag_datagrams;
        self.defrag_dropped += defrag_dropped;
        self.passed_packets += passed_packets;
        self.passed_flows += passed_flows;
        self.passed_flows_evicted += passed_flows_evicted;
        self.dropped_flows += dropped_flows;
        self.dropped_flow_packets += dropped_flow_packets;
        self.dropped_flows_evicted += dropped_flows_evicted;
    }
}

/// Caps on the alerts the signatures raise, so that a rule matching
/// everything (or thousands of rules matching one packet) cannot flood the
/// output: alerts past a cap are dropped and counted in [`SignatureStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertLimits {
    /// Alerts per packet (Suricata's `packet-alert-max` is 15). Default 15.
    pub per_packet: u32,
    /// Alerts per second of packet time. Default 10,000.
    pub per_second: u32,
}

impl Default for AlertLimits {
    fn default() -> Self {
        AlertLimits {
            per_packet: 15,
            per_second: 10_000,
        }
    }
}

/// What a packet's alerts tell of the packet itself, beyond its decode.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketInfo<'a> {
    /// The packet's 1-based number in its capture source: EVE's
    /// `pcap_cnt` (in `details` as `pcap_cnt`). 0: unknown, left out.
    pub number: u64,
    /// The frame as matched and its libpcap link type, for alerts that
    /// carry their packet (`[ids] alert_packet`: EVE's `packet` and
    /// `packet_info.linktype`, in `details` as `packet` base64 and
    /// `linktype`). For a reassembled datagram, the datagram behind the
    /// first fragment's link header, as Suricata rebuilds it.
    pub frame: Option<(&'a [u8], u16)>,
    /// For a reassembled datagram, the fragments it was put together
    /// from (0 for a packet): a flow whose first datagram came in
    /// fragments has counted them all, and the datagram is still its
    /// first packet for the rules of addresses and ports alone.
    pub fragments: u32,
}

/// Protocol classes a packet falls in, for the per-protocol rule lists.
const TCP: usize = 0;
const UDP: usize = 1;
const ICMP: usize = 2;
const OTHER: usize = 3;

fn class_of(protocol: u8) -> usize {
    match protocol {
        6 => TCP,
        17 => UDP,
        1 | 58 => ICMP,
        _ => OTHER,
    }
}

fn applies(proto: Proto, class: usize) -> bool {
    match proto {
        Proto::Ip => true,
        Proto::Tcp => class == TCP,
        Proto::Udp => class == UDP,
        Proto::Icmp => class == ICMP,
        Proto::Http => class == TCP,
        Proto::Dns | Proto::Sip => class == TCP || class == UDP,
    }
}

/// The application-layer view of one packet, parsed the first time a
/// candidate rule asks for it.
#[derive(Default)]
struct App<'a> {
    http: Option<Option<HttpRequest<'a>>>,
    response: Option<Option<HttpResponse<'a>>>,
    sip: Option<Option<StartLine<'a>>>,
    dns: Option<Option<Vec<Vec<u8>>>>,
}

impl<'a> App<'a> {
    fn response(&mut self, payload: &'a [u8]) -> Option<&HttpResponse<'a>> {
        self.response
            .get_or_insert_with(|| HttpResponse::parse(payload))
            .as_ref()
    }

    fn sip(&mut self, payload: &'a [u8]) -> Option<&StartLine<'a>> {
        self.sip
            .get_or_insert_with(|| sip_start_line(payload))
            .as_ref()
    }

    /// Buffer `b` of this packet's HTTP request or response or SIP
    /// message (not the payload or the DNS names).
    fn buffer(&mut self, b: Buffer, payload: &'a [u8]) -> Option<&[u8]> {
        if b.is_sip() {
            self.sip(payload).and_then(|s| sip_buffer(s, b))
        } else if b.is_http_response() {
            self.response(payload).and_then(|r| r.buffer(b))
        } else {
            self.http(payload).and_then(|h| h.buffer(b))
        }
    }

    fn http(&mut self, payload: &'a [u8]) -> Option<&HttpRequest<'a>> {
        self.http
            .get_or_insert_with(|| HttpRequest::parse(payload))
            .as_ref()
    }

    fn dns(&mut self, d: &Decoded<'a>) -> Option<&[Vec<u8>]> {
        self.dns
            .get_or_insert_with(|| {
                let tcp = matches!(d.transport, Transport::Tcp { .. });
                dns_queries(d.payload, tcp)
            })
            .as_deref()
    }
}

/// Suricata's flowbits order (detect-engine-sigorder.c): rules that only
/// set or unset bits first, then those that set and read, then readers,
/// then the rest, so a bit set by one rule is seen by another on the
/// same packet.
fn flowbits_rank(r: &Rule) -> u8 {
    let read = r
        .flowbits
        .iter()
        .any(|o| matches!(o, FlowbitsOp::IsSet(_) | FlowbitsOp::IsNotSet(_)));
    let write = r
        .flowbits
        .iter()
        .any(|o| matches!(o, FlowbitsOp::Set(_) | FlowbitsOp::Unset(_)));
    match (write, read) {
        (true, false) => 0,
        (true, true) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

/// Most flowbits one flow holds.
const MAX_BITS_PER_FLOW: usize = 256;

/// The compiled, read-only part of a rule set (shared by the copies a
/// reload hands to each worker).
struct Compiled {
    rules: Vec<Rule>,
    /// Per rule: EVE category and severity.
    meta: Vec<(String, u8)>,
    prefilter: Option<Prefilter>,
    /// Per automaton pattern: the rules (and their protocol class mask)
    /// whose fast pattern it is.
    pattern_rules: Vec<Vec<u32>>,
    /// Per protocol class: rules checked on every packet.
    always: [Vec<u32>; 4],
    /// `http` and `dns` rules without a prefilter pattern: checked only on
    /// packets that may carry their protocol (a payload starting with an
    /// upper-case letter; port 53), not on every TCP or UDP packet.
    always_http: Vec<u32>,
    always_dns: Vec<u32>,
    /// Per rule: its place among the candidates of a packet (flowbits
    /// rank, then file order).
    order: Vec<u32>,
    /// Flowbit names, numbered.
    bits: std::collections::HashMap<String, u16>,
    /// Per rule: [`Rule::header_only`].
    header_only: Vec<bool>,
    /// Per rule: whether its `pass` or `drop` covers the rest of the flow
    /// ([`Rule::passes_flow`]).
    covers_flow: Vec<bool>,
}

/// The compiled rules, with their matching state.
pub struct Signatures {
    c: Arc<Compiled>,
    /// Candidate de-duplication: `seen[rule] == stamp` once queued.
    seen: Vec<u32>,
    stamp: u32,
    candidates: Vec<u32>,
    max_tracked: usize,
    thresholds: Bounded<TrackKey, Window>,
    /// Per flow id: the flowbits set (sorted bit numbers).
    flowbits: Bounded<u64, Vec<u16>>,
    /// The flows a `pass` rule passed (capped like the flowbits).
    passed: Bounded<u64, ()>,
    /// The flows a `drop` or `reject` rule dropped (capped the same way).
    dropped: Bounded<u64, ()>,
    stats: SignatureStats,
    limits: AlertLimits,
    /// The second of packet time being counted, and its alerts so far.
    second: i64,
    in_second: u32,
    /// One of several workers (see [`Signatures::set_gate`]): alerts
    /// leave with a [`GateTicket`] for the node's
    /// [`super::gate::AlertGate`], whose filled windows these are.
    gate: Option<Arc<FullWindows>>,
    /// The rule set's generation ([`Signatures::set_generation`]), in the
    /// keys of the thresholds the gate tracks.
    generation: u32,
}

impl Signatures {
    /// Compiles `set`; `max_tracked` caps the threshold table. Alerts are
    /// capped at [`AlertLimits::default`] (see [`Signatures::with_limits`]).
    pub fn new(set: &RuleSet, max_tracked: usize) -> Signatures {
        let rules = set.rules.clone();
        let meta = rules
            .iter()
            .map(|r| {
                let (desc, prio) = r.classtype.as_deref().map_or(("", 3), classtype);
                let category = match (desc, &r.classtype) {
                    ("", Some(name)) => name.clone(),
                    (d, _) => d.to_string(),
                };
                (category, r.priority.unwrap_or(prio))
            })
            .collect();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
        let mut always: [Vec<u32>; 4] = Default::default();
        let (mut always_http, mut always_dns) = (Vec::new(), Vec::new());
        for (i, r) in rules.iter().enumerate() {
            match r.fast_pattern.and_then(|f| r.contents.get(f)) {
                Some(c) if !c.negated => {
                    let p = c.pattern.to_ascii_lowercase();
                    let id = *index.entry(p.clone()).or_insert_with(|| {
                        patterns.push(p);
                        pattern_rules.push(Vec::new());
                        patterns.len() - 1
                    });
                    pattern_rules[id].push(i as u32);
                }
                _ if r.proto == Proto::Http => always_http.push(i as u32),
                _ if r.proto == Proto::Dns => always_dns.push(i as u32),
                _ => {
                    for (class, list) in always.iter_mut().enumerate() {
                        if applies(r.proto, class) {
                            list.push(i as u32);
                        }
                    }
                }
            }
        }
        let prefilter = Prefilter::new(&patterns);
        let order = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // Suricata's default action-order (pass, drop, reject,
                // alert), then the flowbits order, then the file's.
                (r.action.rank() << 30) | (u32::from(flowbits_rank(r)) << 28) | i as u32
            })
            .collect();
        let mut bits = std::collections::HashMap::new();
        for r in &rules {
            for op in &r.flowbits {
                let names = match op {
                    FlowbitsOp::Set(n) | FlowbitsOp::Unset(n) | FlowbitsOp::Toggle(n) => {
                        std::slice::from_ref(n)
                    }
                    FlowbitsOp::IsSet(ns) | FlowbitsOp::IsNotSet(ns) => ns.as_slice(),
                };
                for n in names {
                    let next = bits.len() as u16;
                    bits.entry(n.clone()).or_insert(next);
                }
            }
        }
        let header_only = rules.iter().map(Rule::header_only).collect();
        let covers_flow = rules.iter().map(Rule::passes_flow).collect();
        let compiled = Compiled {
            header_only,
            covers_flow,
            rules,
            meta,
            prefilter,
            pattern_rules,
            always,
            always_http,
            always_dns,
            order,
            bits,
        };
        Signatures::fresh_from(Arc::new(compiled), max_tracked, AlertLimits::default())
    }

    fn fresh_from(c: Arc<Compiled>, max_tracked: usize, limits: AlertLimits) -> Signatures {
        Signatures {
            seen: vec![0; c.rules.len()],
            c,
            stamp: 0,
            candidates: Vec::new(),
            max_tracked,
            thresholds: Bounded::new(max_tracked),
            flowbits: Bounded::new(max_tracked),
            passed: Bounded::new(max_tracked),
            dropped: Bounded::new(max_tracked),
            stats: SignatureStats::default(),
            limits,
            second: i64::MIN,
            in_second: 0,
            gate: None,
            generation: 0,
        }
    }

    /// The same rules with their own, empty matching state (thresholds,
    /// counters): one per worker, without compiling again.
    pub fn fresh(&self) -> Signatures {
        let mut s = Signatures::fresh_from(Arc::clone(&self.c), self.max_tracked, self.limits);
        s.gate.clone_from(&self.gate);
        s.generation = self.generation;
        s
    }

    /// Whether these signatures see only a share of the packets (one of
    /// several workers: `Some`, with the gate's filled windows). Then
    /// every alert leaves with a [`GateTicket`]: the thresholds of
    /// `alert` rules that track more than a flow are not checked here but
    /// by the node's [`super::gate::AlertGate`], which also applies the
    /// alert caps across workers; a match in a `limit` or `both` window
    /// the gate has filled is held back here ([`FullWindows`]). Thresholds
    /// of `by_flow` (a flow stays in one worker), and those of `pass`,
    /// `drop` and `reject` rules (whose effect on the packet and its flow
    /// cannot wait), are checked here.
    pub fn set_gate(&mut self, gate: Option<Arc<FullWindows>>) {
        self.gate = gate;
    }

    /// Numbers this rule set among those a node loads while it runs (0 at
    /// the start; a `run` reload that changes the rules gives the next).
    /// The node's alert gate outlives a reload, and keys the thresholds it
    /// tracks by generation and sid ([`threshold::gate_rule`]): a rule the
    /// reload brings starts with empty windows there, as it does in each
    /// worker, even where it reuses an old rule's sid.
    pub fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }

    /// Caps the alerts raised per packet and per second of packet time.
    pub fn with_limits(mut self, limits: AlertLimits) -> Signatures {
        self.limits = limits;
        self
    }

    /// New caps, keeping the state (a reload with unchanged rules).
    pub fn set_limits(&mut self, limits: AlertLimits) {
        self.limits = limits;
    }

    pub fn len(&self) -> usize {
        self.c.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.c.rules.is_empty()
    }

    pub fn stats(&self) -> &SignatureStats {
        &self.stats
    }

    /// Each capped table by name (the metrics' `detector` label): keys
    /// held, and evicted at the cap so far.
    pub fn state(&self) -> [(&'static str, usize, u64); 4] {
        [
            (
                "signature_thresholds",
                self.thresholds.len(),
                self.thresholds.evicted,
            ),
            (
                "signature_flowbits",
                self.flowbits.len(),
                self.flowbits.evicted,
            ),
            (
                "signature_passed_flows",
                self.passed.len(),
                self.passed.evicted,
            ),
            (
                "signature_dropped_flows",
                self.dropped.len(),
                self.dropped.evicted,
            ),
        ]
    }

    /// Matches one packet; alerts go to `out`. `flow` is what the flow
    /// table knows of the packet's flow (needed by `flow:` and for the
    /// alert's `flow_id`).
    pub fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        flow: Option<PacketFlow>,
        out: &mut Vec<AlertRecord>,
    ) {
        self.observe_packet(ts, vnet, d, flow, PacketInfo::default(), out);
    }

    /// [`Signatures::observe`], with what the alerts tell of the packet.
    pub fn observe_packet(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        flow: Option<PacketFlow>,
        info: PacketInfo<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        // A fragment is matched on its IP header only, as in Suricata: its
        // transport header and payload belong to the reassembled datagram,
        // which the caller matches when it is whole. It belongs to no flow
        // (`flow:`, `flowbits` fail on it, as Suricata keeps no flow for a
        // packet without ports), and an IPv6 fragment's protocol is its
        // Fragment header's, so only `ip` rules see it (Suricata gives 0
        // alerts where `udp ... dsize:<20` matched every IPv6 fragment).
        let fragment = ip.fragment != Fragment::None;
        let flow = flow.filter(|_| !fragment);
        if let Some(f) = flow {
            if self.passed.get_mut(&f.id).is_some() {
                self.stats.passed_packets += 1;
                return;
            }
            if self.dropped.get_mut(&f.id).is_some() {
                self.stats.dropped_flow_packets += 1;
                return;
            }
        }
        let header_only;
        let d = if fragment {
            header_only = Decoded {
                transport: Transport::None,
                payload: &[],
                l4: &[],
                ..d.clone()
            };
            &header_only
        } else {
            d
        };
        self.stats.packets += 1;
        let class = if fragment && ip.src.is_ipv6() {
            OTHER
        } else {
            class_of(ip.protocol)
        };
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.fill(0);
            self.stamp = 1;
        }
        self.candidates.clear();
        let c = &*self.c;
        self.candidates.extend_from_slice(&c.always[class]);
        if class == TCP && d.payload.first().is_some_and(u8::is_ascii_uppercase) {
            self.candidates.extend_from_slice(&c.always_http);
        }
        if (class == TCP || class == UDP) && d.ports().is_some_and(|(s, t)| s == 53 || t == 53) {
            self.candidates.extend_from_slice(&c.always_dns);
        }
        if let (Some(pf), false) = (&c.prefilter, d.payload.is_empty()) {
            let (rules, seen, stamp) = (&c.rules, &mut self.seen, self.stamp);
            let (pattern_rules, candidates) = (&c.pattern_rules, &mut self.candidates);
            pf.scan(d.payload, |id| {
                for &r in &pattern_rules[id as usize] {
                    let s = &mut seen[r as usize];
                    if *s != stamp && applies(rules[r as usize].proto, class) {
                        *s = stamp;
                        candidates.push(r);
                    }
                }
            });
        }
        if self.candidates.is_empty() {
            return;
        }
        // Rule order (flowbits setters first), so alerts come out in file
        // order whatever the pattern order was.
        let order = &c.order;
        self.candidates.sort_unstable_by_key(|&r| order[r as usize]);
        let mut app = App::default();
        let ports = d.ports();
        let second = ts.0.div_euclid(1_000_000);
        if second != self.second {
            self.second = second;
            self.in_second = 0;
        }
        let mut in_packet = 0u32;
        // Rules of addresses and ports alone are judged on the first
        // packet of each direction of a flow, as Suricata judges its
        // IP-only rules (one alert per flow direction, not per packet); a
        // packet without a flow (a fragment) on its own.
        // Suricata keeps flows for TCP, UDP, ICMP, SCTP and ESP only;
        // packets of other protocols (GRE, ...) are each judged (Suricata
        // 7.0.10 on 4 GRE and 3 protocol-253 packets: an alert each).
        let flow_protocol = matches!(ip.protocol, 1 | 6 | 17 | 50 | 58 | 132);
        // An ICMPv4 error (unreachable, source quench, redirect, time
        // exceeded, parameter problem) is judged on its own, as Suricata 7
        // judges it (an unreachable in the flow of the TCP or UDP packet it
        // quotes, where it is nearly always that flow's first packet back;
        // the others outside any flow): moni's flow table keeps one ICMP
        // flow for all of a host's unreachables, which judged the first
        // alone (0 alerts where Suricata gave 891 on an nmap UDP scan; 1
        // of 10 time-exceeded). ICMPv6 errors share an ICMPv6 flow in
        // Suricata too. Suricata skips the rarer unreachable that travels
        // a direction its quoted flow used already (a scanner's
        // unreachable for the victim's reply); moni judges it.
        let icmp_error = ip.protocol == 1
            && matches!(
                d.transport,
                Transport::Icmp {
                    icmp_type: 3 | 4 | 5 | 11 | 12,
                    ..
                }
            );
        let first_of_direction = !flow_protocol
            || icmp_error
            || flow.is_none_or(|f| {
                let c = f.counters;
                let seen = if f.to_server {
                    c.pkts_toserver
                } else {
                    c.pkts_toclient
                };
                seen <= u64::from(info.fragments.max(1))
            });
        for i in 0..self.candidates.len() {
            let r = self.candidates[i];
            self.stats.candidates += 1;
            if !first_of_direction && self.c.header_only[r as usize] {
                continue;
            }
            if !self.check(r as usize, d, flow, &mut app) {
                continue;
            }
            if !self.flowbits(r as usize, flow) {
                continue;
            }
            if self.c.rules[r as usize].noalert {
                continue;
            }
            self.stats.matches += 1;
            let rule = &self.c.rules[r as usize];
            let deferred = self.gate.as_ref().filter(|_| {
                rule.action == Action::Alert
                    && [rule.detection_filter, rule.threshold]
                        .iter()
                        .flatten()
                        .any(|t| t.track != Track::Flow)
            });
            if let Some(full) = deferred {
                if let Some(t) = FullWindows::applies(rule.detection_filter, rule.threshold) {
                    let key = threshold::key(
                        threshold::gate_rule(self.generation, rule.sid),
                        &t,
                        ip.src,
                        ip.dst,
                        flow.map(|f| f.id),
                    );
                    if full.filled(&key, ts) {
                        self.stats.thresholded += 1;
                        continue;
                    }
                }
                // The gate checks the thresholds and the caps; this
                // worker's caps do not count the alert (it may not go out).
                let tracked = self.tracked(r, ip.src, ip.dst, ports, flow.map(|f| f.id));
                let mut a = self.alert(r as usize, ts, vnet, d, flow, info);
                a.gate = Some(self.ticket(r, info, tracked));
                out.push(a);
                continue;
            }
            if !self.pass_thresholds(r, ts, ip.src, ip.dst, ports, flow.map(|f| f.id)) {
                self.stats.thresholded += 1;
                continue;
            }
            if self.c.rules[r as usize].action == Action::Pass {
                // Pass rules come first: nothing alerted on the packet yet.
                self.stats.passed_packets += 1;
                if let (Some(f), true) = (flow, self.c.covers_flow[r as usize]) {
                    self.passed.entry(&f.id, || ());
                    self.stats.passed_flows += 1;
                    self.stats.passed_flows_evicted = self.passed.evicted;
                }
                return;
            }
            let blocks = self.c.rules[r as usize].action.blocks();
            if let (Some(f), true) = (flow, blocks && self.c.covers_flow[r as usize]) {
                // The flow is dropped from the next packet on; this one's
                // other rules still alert, as in Suricata's IDS mode.
                if self.dropped.get_mut(&f.id).is_none() {
                    self.dropped.entry(&f.id, || ());
                    self.stats.dropped_flows += 1;
                    self.stats.dropped_flows_evicted = self.dropped.evicted;
                }
            }
            // The packet's cap first: what it drops never counts against
            // the second's.
            if in_packet >= self.limits.per_packet {
                self.stats.dropped_per_packet += 1;
                continue;
            }
            in_packet += 1;
            if self.in_second >= self.limits.per_second {
                self.stats.dropped_per_second += 1;
                continue;
            }
            self.in_second += 1;
            let mut a = self.alert(r as usize, ts, vnet, d, flow, info);
            if self.gate.is_some() {
                // Counted where the gate passes it.
                a.gate = Some(self.ticket(r, info, Vec::new()));
            } else {
                self.stats.alerts += 1;
            }
            out.push(a);
        }
    }

    /// The rule's flowbits: the tests (all must hold), then, if they do,
    /// the actions. A packet without a flow has no bits.
    fn flowbits(&mut self, r: usize, flow: Option<PacketFlow>) -> bool {
        let c = &*self.c;
        let ops = &c.rules[r].flowbits;
        if ops.is_empty() {
            return true;
        }
        let Some(id) = flow.map(|f| f.id) else {
            return false;
        };
        let bit = |n: &String| c.bits.get(n).copied().unwrap_or(u16::MAX);
        let held: &[u16] = self.flowbits.get_mut(&id).map_or(&[], |v| v.as_slice());
        let has = |n: &String| held.binary_search(&bit(n)).is_ok();
        for op in ops {
            let ok = match op {
                FlowbitsOp::IsSet(ns) => ns.iter().any(has),
                FlowbitsOp::IsNotSet(ns) => ns.iter().any(|n| !has(n)),
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        if ops.iter().any(|o| {
            matches!(
                o,
                FlowbitsOp::Set(_) | FlowbitsOp::Unset(_) | FlowbitsOp::Toggle(_)
            )
        }) {
            let v = self.flowbits.entry(&id, Vec::new);
            for op in ops {
                let (n, set) = match op {
                    FlowbitsOp::Set(n) => (n, Some(true)),
                    FlowbitsOp::Unset(n) => (n, Some(false)),
                    FlowbitsOp::Toggle(n) => (n, None),
                    _ => continue,
                };
                let b = bit(n);
                match (v.binary_search(&b), set) {
                    (Ok(at), Some(false) | None) => {
                        v.remove(at);
                    }
                    (Err(at), Some(true) | None) if v.len() < MAX_BITS_PER_FLOW => v.insert(at, b),
                    _ => {}
                }
            }
        }
        true
    }

    /// Everything but flowbits and thresholds.
    fn check<'a>(
        &self,
        r: usize,
        d: &Decoded<'a>,
        flow: Option<PacketFlow>,
        app: &mut App<'a>,
    ) -> bool {
        let rule = &self.c.rules[r];
        let Some(ip) = d.ip else { return false };
        if rule
            .ip_version
            .is_some_and(|v| v != if ip.src.is_ipv6() { 6 } else { 4 })
        {
            return false;
        }
        let (sport, dport) = d.ports().map_or((None, None), |(a, b)| (Some(a), Some(b)));
        let forward = rule.src.matches(ip.src)
            && rule.dst.matches(ip.dst)
            && rule.src_ports.matches(sport)
            && rule.dst_ports.matches(dport);
        let header = forward
            || (rule.bidirectional
                && rule.src.matches(ip.dst)
                && rule.dst.matches(ip.src)
                && rule.src_ports.matches(dport)
                && rule.dst_ports.matches(sport));
        if !header {
            return false;
        }
        if let Some(want) = rule.flow.to_server {
            if flow.is_none_or(|f| f.to_server != want) {
                return false;
            }
        }
        if let Some(want) = rule.flow.established {
            if flow.is_none_or(|f| f.established != want) {
                return false;
            }
        }
        if let Some(f) = rule.flags {
            match d.transport {
                Transport::Tcp { flags, .. } if f.test(flags) => {}
                _ => return false,
            }
        }
        if rule.itype.is_some() || rule.icode.is_some() {
            let Transport::Icmp {
                icmp_type, code, ..
            } = d.transport
            else {
                return false;
            };
            if rule.itype.is_some_and(|c| !c.test(u32::from(icmp_type)))
                || rule.icode.is_some_and(|c| !c.test(u32::from(code)))
            {
                return false;
            }
        }
        if !rule.vlan.iter().all(|t| t.test(d.vlans())) {
            return false;
        }
        if !rule.header.iter().all(|t| t.test(d)) {
            return false;
        }
        if let Some(c) = rule.dsize {
            // Suricata's signature mask (SignatureCreateMask): `dsize` with
            // `!N`, `>N`, `>=N`, `N-M`, `N<>M` or `N` > 0 requires a
            // payload; `<N`, `<=N` and `0` do not.
            let len = d.payload.len() as u32;
            let needs_payload = match c {
                NumCmp::Lt(_) | NumCmp::Le(_) => false,
                NumCmp::Eq(n) => n > 0,
                _ => true,
            };
            if !c.test(len) || (len == 0 && needs_payload) {
                return false;
            }
        }
        // The application layer the rule's protocol or buffers ask for.
        match rule.proto {
            Proto::Http => {
                // A rule on request buffers needs a request, one on the
                // status line a response, any other either.
                let needs_request = rule.buffers().any(Buffer::is_http_request);
                let needs_response = rule.buffers().any(Buffer::is_http_response);
                let request = app.http(d.payload).is_some();
                let response = is_http_response(d.payload);
                if (needs_request && !request)
                    || (needs_response && !response)
                    || (!request && !response)
                {
                    return false;
                }
            }
            Proto::Sip if app.sip(d.payload).is_none() => return false,
            Proto::Dns => {
                let on_53 = d.ports().is_some_and(|(s, t)| s == 53 || t == 53);
                if !on_53 || d.payload.len() < 12 {
                    return false;
                }
            }
            _ => {}
        }
        for &(b, cmp) in &rule.lens {
            let ok = match b {
                Buffer::DnsQuery => app
                    .dns(d)
                    .is_some_and(|qs| qs.iter().any(|q| cmp.test(q.len() as u32))),
                _ => app
                    .buffer(b, d.payload)
                    .is_some_and(|x| cmp.test(x.len() as u32)),
            };
            if !ok {
                return false;
            }
        }
        let mut rest: &[Content] = &rule.contents;
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|c| c.buffer == first.buffer).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let ok = match first.buffer {
                // Payload keywords need a payload (SIG_MASK_REQUIRE_PAYLOAD),
                // even a rule of negated contents only.
                Buffer::Payload => !d.payload.is_empty() && content::matches(group, d.payload),
                Buffer::DnsQuery => app
                    .dns(d)
                    .is_some_and(|qs| qs.iter().any(|q| content::matches(group, q))),
                b => app
                    .buffer(b, d.payload)
                    .is_some_and(|x| content::matches(group, x)),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// What the gate needs of rule `r`'s alert on the packet of `info`,
    /// with the thresholds it checks.
    fn ticket(
        &self,
        r: u32,
        info: PacketInfo<'_>,
        thresholds: Vec<(Threshold, TrackKey, Option<u16>)>,
    ) -> Box<GateTicket> {
        Box::new(GateTicket {
            thresholds,
            limits: self.limits,
            number: info.number,
            part: u8::from(info.fragments > 0),
            order: self.c.order[r as usize],
        })
    }

    /// The rule's thresholds, each with the key the gate tracks it by
    /// ([`threshold::gate_rule`]) and the port it counts.
    fn tracked(
        &self,
        r: u32,
        src: IpAddr,
        dst: IpAddr,
        ports: Option<(u16, u16)>,
        flow: Option<u64>,
    ) -> Vec<(Threshold, TrackKey, Option<u16>)> {
        let rule = &self.c.rules[r as usize];
        [rule.detection_filter, rule.threshold]
            .into_iter()
            .flatten()
            .map(|t| {
                let key = threshold::key(
                    threshold::gate_rule(self.generation, rule.sid),
                    &t,
                    src,
                    dst,
                    flow,
                );
                (t, key, threshold::counted_port(&t, ports))
            })
            .collect()
    }

    fn pass_thresholds(
        &mut self,
        r: u32,
        ts: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        ports: Option<(u16, u16)>,
        flow: Option<u64>,
    ) -> bool {
        let rule = &self.c.rules[r as usize];
        for t in [rule.detection_filter, rule.threshold]
            .into_iter()
            .flatten()
        {
            let port = threshold::counted_port(&t, ports);
            let key = threshold::key(u64::from(r), &t, src, dst, flow);
            if !threshold::check(&mut self.thresholds, &key, &t, ts, port) {
                return false;
            }
        }
        true
    }

    fn alert(
        &self,
        r: usize,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        flow: Option<PacketFlow>,
        info: PacketInfo<'_>,
    ) -> AlertRecord {
        let rule = &self.c.rules[r];
        let (category, severity) = &self.c.meta[r];
        let ip = d.ip;
        // A fragment (matched on its IP header alone), as Suricata shows
        // it: over IPv6 its protocol is the Fragment header's (44) and it
        // has no ports; over IPv4 it keeps TCP's or UDP's number, with
        // ports 0.
        let fragment = ip.is_some_and(|i| i.fragment != Fragment::None);
        let v6_fragment = fragment && ip.is_some_and(|i| i.src.is_ipv6());
        let protocol = match ip {
            Some(_) if v6_fragment => 44,
            Some(i) => i.protocol,
            None => 0,
        };
        let ports = if fragment {
            matches!(protocol, 6 | 17 | 132).then_some((0, 0))
        } else {
            d.ports()
        };
        let icmp = match d.transport {
            Transport::Icmp {
                icmp_type, code, ..
            } => Some((icmp_type, code)),
            _ => None,
        };
        let details = details_json(rule, d.payload.len(), icmp, info.number, info.frame);
        AlertRecord {
            time: ts,
            end: ts,
            vnet,
            kind: "signature",
            trigger: None,
            to_server: flow.map(|f| f.to_server),
            flow: flow.map(|f| f.counters),
            signature_id: rule.sid,
            rev: rule.rev,
            signature: rule.msg.clone(),
            category: category.clone().into(),
            severity: *severity,
            src_addr: ip.map(|i| i.src),
            src_port: ports.map(|p| p.0),
            dst_addr: ip.map(|i| i.dst),
            dst_port: ports.map(|p| p.1),
            protocol,
            flow_id: flow.map(|f| f.id),
            // A tunnelled packet's own tags, without the outer packets'
            // (Suricata 7's EVE on GRE and VXLAN: none where the outer
            // frame was on VLAN 6).
            vlans: d
                .vlans()
                .get(usize::from(d.tunnels.outer_vlans)..)
                .unwrap_or_default()
                .to_vec(),
            details,
            tunnel: if d.tunnels.is_empty() {
                crate::record::TunnelInfo::default()
            } else {
                crate::record::TunnelInfo::of(&d.tunnels)
            },
            gate: None,
        }
    }
}

/// A signature alert's `details` as JSON, written directly: the same text
/// serde_json writes for this object (its keys sorted, as its map sorts
/// them; `details_json_is_what_serde_json_writes` holds it to that), at a
/// fraction of the cost of building the map first, which under a flood of
/// alerts was a third of a worker's time. `icmp`: (type, code); `number`:
/// the packet's `pcap_cnt` (0: left out); `frame`: the packet and its link
/// type, with `[ids] alert_packet`.
pub(crate) fn details_json(
    rule: &Rule,
    payload_len: usize,
    icmp: Option<(u8, u8)>,
    number: u64,
    frame: Option<(&[u8], u16)>,
) -> String {
    use std::fmt::Write as _;
    fn text(out: &mut String, v: &str) {
        // A string serializes without fail.
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    fn key(out: &mut String, k: &str) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
    }
    fn list(out: &mut String, vs: &[String]) {
        out.push('[');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            text(out, v);
        }
        out.push(']');
    }
    let mut out = String::with_capacity(64);
    out.push('{');
    // The rule's IPS action, for EVE's `alert.action` ("blocked" for a
    // reject, which Suricata answers even in IDS mode).
    let action = match rule.action {
        Action::Drop => Some("drop"),
        Action::Reject => Some("reject"),
        Action::Alert | Action::Pass => None,
    };
    if let Some(a) = action {
        key(&mut out, "action");
        text(&mut out, a);
    }
    if let Some(c) = &rule.classtype {
        key(&mut out, "classtype");
        text(&mut out, c);
    }
    key(&mut out, "gid");
    let _ = write!(out, "{}", rule.gid);
    if let Some((t, c)) = icmp {
        key(&mut out, "icmp_code");
        let _ = write!(out, "{c}");
        key(&mut out, "icmp_type");
        let _ = write!(out, "{t}");
    }
    if let Some((_, linktype)) = frame {
        key(&mut out, "linktype");
        let _ = write!(out, "{linktype}");
    }
    if !rule.metadata.is_empty() {
        key(&mut out, "metadata");
        list(&mut out, &rule.metadata);
    }
    if let Some((f, _)) = frame {
        use base64::Engine as _;
        key(&mut out, "packet");
        out.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(f, &mut out);
        out.push('"');
    }
    key(&mut out, "payload_len");
    let _ = write!(out, "{payload_len}");
    if number > 0 {
        key(&mut out, "pcap_cnt");
        let _ = write!(out, "{number}");
    }
    if !rule.references.is_empty() {
        key(&mut out, "references");
        list(&mut out, &rule.references);
    }
    out.push('}');
    out
}
