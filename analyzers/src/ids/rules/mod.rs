//! Signature engine for a practical subset of the Suricata/Snort rule
//! language, matched per packet.
//!
//! - [`parse`]: rule text to [`Rule`]; every rule outside the subset is
//!   reported ([`Skipped`]) with its line and the reason.
//! - [`content`]: `content` matching with `nocase`, `offset`, `depth`,
//!   `distance` and `within`, backtracking over earlier matches like
//!   Suricata does for relative chains.
//! - [`threshold`]: `threshold` (limit, threshold, both) and
//!   `detection_filter` per tracked address, in a capped table.
//! - [`prefilter`]: an Aho-Corasick DFA over every rule's fast pattern that
//!   finds, in one pass over a payload, which patterns occur.
//! - [`engine`]: [`Signatures`], the compiled rule set: the prefilter picks
//!   the candidate rules of a packet, so its cost grows with the patterns
//!   that occur in it rather than with the number of rules.
//! - [`header`]: IP, TCP and ICMP header keywords (`ttl`, `ipopts`,
//!   `tcp.mss`, ...), read from the header bytes the decoder kept.
//! - [`app`]: the HTTP request and DNS query buffers one packet carries.
//!
//! Supported: `alert` rules on `ip` (`ipv4`, `ipv6`: one version), `tcp`,
//! `udp`, `icmp` (ICMP and ICMPv6, as in Suricata), `icmpv4`, `icmpv6`,
//! `http`, `dns`; address and port lists with negation, ranges and
//! variables (`$HOME_NET`, ...); `->` and `<>`; options `msg`, `sid`,
//! `rev`, `gid`, `classtype`, `priority`, `reference`, `metadata`,
//! `target`, `content` (also negated, with `|hex|`) and its modifiers
//! `nocase`, `offset`, `depth`, `distance`, `within`, `startswith`,
//! `endswith`, `fast_pattern`, `rawbytes`; sticky buffers of HTTP requests
//! and `dns.query`, `bsize`, `urilen`; `dsize`, `itype`, `icode`,
//! `icmp_id`, `icmp_seq`, `ttl`, `id`, `ip_proto`, `ipopts`, `fragbits`,
//! `fragoffset`, `flags`/`tcp.flags`, `seq`, `ack`, `window`, `tcp.mss`,
//! `vlan.id`, `flow` (`to_server`, `to_client`, `established`,
//! `not_established`, `stateless`), `flowbits`, `threshold` (also
//! `by_flow` and `backoff`) and `detection_filter` (with `unique_on`);
//! `isdataat`, `byte_test`, `byte_jump`, `byte_extract` and `pcre` (the
//! `regex` crate's subset) in a buffer's chain ([`content`]). Each
//! behaves as in Suricata on packet payloads; what needs more (response
//! or body buffers, backreferences in `pcre`, ...) is skipped with the
//! keyword named.
//!
//! Payloads are matched one packet at a time (the caller puts IP
//! fragments back together and hands the datagram over; a fragment is
//! matched on its IP header only): there is no TCP stream reassembly yet,
//! so a pattern split across two segments is missed.

pub mod app;
pub mod content;
pub mod engine;
pub mod gate;
pub mod header;
pub mod parse;
pub mod prefilter;
pub mod threshold;

use std::net::IpAddr;

pub use engine::{AlertLimits, PacketInfo, RuleSet, SignatureStats, Signatures};
pub use header::HeaderTest;
pub use parse::{Skipped, Vars};

/// The protocol a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Ip,
    Tcp,
    Udp,
    Icmp,
    /// `http`/`http1`: TCP packets that start an HTTP/1.x request or
    /// response (Suricata detects HTTP on any port by its first bytes).
    Http,
    /// `dns`: DNS queries to port 53, over UDP or TCP.
    Dns,
    /// `sip`: UDP or TCP packets that start a SIP request or response
    /// (any port, by the start line).
    Sip,
}

/// The buffer a `content` inspects: the packet payload, or a sticky
/// buffer filled from the one packet by [`app`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Buffer {
    Payload,
    HttpMethod,
    HttpUri,
    HttpUriRaw,
    HttpProtocol,
    HttpRequestLine,
    HttpHeader,
    HttpHeaderNames,
    HttpUserAgent,
    HttpHost,
    HttpCookie,
    HttpAcceptEnc,
    HttpContentType,
    /// The response's status line: `http.stat_code`, `http.stat_msg`,
    /// `http.response_line`.
    HttpStatCode,
    HttpStatMsg,
    HttpResponseLine,
    DnsQuery,
    /// A SIP message's start line: `sip.method`, `sip.uri`,
    /// `sip.request_line` (requests), `sip.stat_code`, `sip.stat_msg`,
    /// `sip.response_line` (responses) and `sip.protocol` (both).
    SipMethod,
    SipUri,
    SipRequestLine,
    SipStatCode,
    SipStatMsg,
    SipResponseLine,
    SipProtocol,
}

impl Buffer {
    /// The sticky buffer a keyword selects (Suricata 5+ names).
    pub fn sticky(keyword: &str) -> Option<Buffer> {
        Some(match keyword {
            "pkt_data" => Buffer::Payload,
            "http.method" => Buffer::HttpMethod,
            "http.uri" => Buffer::HttpUri,
            "http.uri.raw" => Buffer::HttpUriRaw,
            "http.protocol" => Buffer::HttpProtocol,
            "http.request_line" => Buffer::HttpRequestLine,
            "http.header" => Buffer::HttpHeader,
            "http.header_names" => Buffer::HttpHeaderNames,
            "http.user_agent" => Buffer::HttpUserAgent,
            "http.host" => Buffer::HttpHost,
            "http.cookie" => Buffer::HttpCookie,
            "http.accept_enc" => Buffer::HttpAcceptEnc,
            "http.content_type" => Buffer::HttpContentType,
            "http.stat_code" => Buffer::HttpStatCode,
            "http.stat_msg" => Buffer::HttpStatMsg,
            "http.response_line" => Buffer::HttpResponseLine,
            "dns.query" | "dns_query" => Buffer::DnsQuery,
            "sip.method" => Buffer::SipMethod,
            "sip.uri" => Buffer::SipUri,
            "sip.request_line" => Buffer::SipRequestLine,
            "sip.stat_code" => Buffer::SipStatCode,
            "sip.stat_msg" => Buffer::SipStatMsg,
            "sip.response_line" => Buffer::SipResponseLine,
            "sip.protocol" => Buffer::SipProtocol,
            _ => return None,
        })
    }

    /// The buffer a legacy content modifier (`content:"x"; http_uri;`)
    /// moves its content to.
    pub fn modifier(keyword: &str) -> Option<Buffer> {
        Some(match keyword {
            "http_method" => Buffer::HttpMethod,
            "http_uri" => Buffer::HttpUri,
            "http_raw_uri" => Buffer::HttpUriRaw,
            "http_header" => Buffer::HttpHeader,
            "http_user_agent" => Buffer::HttpUserAgent,
            "http_host" => Buffer::HttpHost,
            "http_cookie" => Buffer::HttpCookie,
            "http_stat_code" => Buffer::HttpStatCode,
            "http_stat_msg" => Buffer::HttpStatMsg,
            _ => return None,
        })
    }

    /// An HTTP buffer, of the request or of the response.
    pub fn is_http(self) -> bool {
        self.is_http_request() || self.is_http_response()
    }

    /// A buffer of an HTTP request.
    pub fn is_http_request(self) -> bool {
        matches!(
            self,
            Buffer::HttpMethod
                | Buffer::HttpUri
                | Buffer::HttpUriRaw
                | Buffer::HttpProtocol
                | Buffer::HttpRequestLine
                | Buffer::HttpHeader
                | Buffer::HttpHeaderNames
                | Buffer::HttpUserAgent
                | Buffer::HttpHost
                | Buffer::HttpCookie
                | Buffer::HttpAcceptEnc
                | Buffer::HttpContentType
        )
    }

    /// A buffer of an HTTP response's status line.
    pub fn is_http_response(self) -> bool {
        matches!(
            self,
            Buffer::HttpStatCode | Buffer::HttpStatMsg | Buffer::HttpResponseLine
        )
    }

    /// A buffer of a SIP message's start line.
    pub fn is_sip(self) -> bool {
        matches!(
            self,
            Buffer::SipMethod
                | Buffer::SipUri
                | Buffer::SipRequestLine
                | Buffer::SipStatCode
                | Buffer::SipStatMsg
                | Buffer::SipResponseLine
                | Buffer::SipProtocol
        )
    }

    /// Whether every byte string this buffer holds also occurs in the
    /// packet payload (ASCII case aside), so a content in it can serve as
    /// the rule's prefilter pattern. Rebuilt buffers (`http.header` joins
    /// names and values with `: `; `dns.query` has dots where the wire
    /// has label lengths) cannot.
    pub fn verbatim(self) -> bool {
        !matches!(
            self,
            Buffer::HttpHeader | Buffer::HttpHeaderNames | Buffer::DnsQuery
        )
    }

    /// Buffers Suricata fills from responses too: without `flow:to_server`
    /// a rule on them would inspect responses, which we do not parse.
    pub fn both_directions(self) -> bool {
        matches!(
            self,
            Buffer::HttpHeader
                | Buffer::HttpHeaderNames
                | Buffer::HttpCookie
                | Buffer::HttpProtocol
                | Buffer::HttpContentType
        )
    }
}

/// An address prefix; IPv4 is held IPv4-mapped, with its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    mask: u128,
    v6: bool,
}

fn to_u128(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

impl Cidr {
    pub fn new(addr: IpAddr, len: u8) -> Cidr {
        let (a, v6) = to_u128(addr);
        let bits = if v6 {
            u32::from(len)
        } else {
            u32::from(len) + 96
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits.min(128))
        };
        Cidr {
            net: a & mask,
            mask,
            v6,
        }
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        let (x, v6) = to_u128(a);
        v6 == self.v6 && x & self.mask == self.net
    }
}

/// An address list: in `any` or one of `pos`, and in none of `neg`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrSpec {
    pub any: bool,
    pub pos: Vec<Cidr>,
    pub neg: Vec<Cidr>,
}

impl AddrSpec {
    pub fn matches(&self, a: IpAddr) -> bool {
        (self.any || self.pos.iter().any(|c| c.contains(a)))
            && !self.neg.iter().any(|c| c.contains(a))
    }
}

/// A port list of inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSpec {
    pub any: bool,
    pub pos: Vec<(u16, u16)>,
    pub neg: Vec<(u16, u16)>,
}

impl PortSpec {
    /// Whether `port` matches; a packet without ports (ICMP, later
    /// fragments) matches only `any`.
    pub fn matches(&self, port: Option<u16>) -> bool {
        let Some(p) = port else {
            return self.is_any();
        };
        let within = |r: &(u16, u16)| r.0 <= p && p <= r.1;
        (self.any || self.pos.iter().any(within)) && !self.neg.iter().any(within)
    }

    fn is_any(&self) -> bool {
        self.any && self.neg.is_empty()
    }
}

/// One `content` with its modifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub pattern: Vec<u8>,
    pub negated: bool,
    pub nocase: bool,
    pub offset: Option<u32>,
    pub depth: Option<u32>,
    pub distance: Option<i32>,
    pub within: Option<u32>,
    /// `startswith`: the match starts the buffer.
    pub startswith: bool,
    /// `endswith`: the match ends the buffer.
    pub endswith: bool,
    pub buffer: Buffer,
    /// What this step of the buffer's chain is: a `content` (the fields
    /// above), or a keyword that reads the buffer at the cursor the steps
    /// before it left (`isdataat`, `byte_test`, `byte_jump`,
    /// `byte_extract`, `pcre`; its `pattern` is then empty).
    pub op: Op,
    /// `byte_extract` variables standing for `offset`, `depth`,
    /// `distance` and `within` (in that order; the field itself then holds
    /// a placeholder).
    pub vars: [Option<u8>; 4],
}

impl Content {
    /// A step of `buffer`'s chain with no position modifiers.
    pub fn new(pattern: Vec<u8>, negated: bool, buffer: Buffer, op: Op) -> Content {
        Content {
            pattern,
            negated,
            nocase: false,
            offset: None,
            depth: None,
            distance: None,
            within: None,
            startswith: false,
            endswith: false,
            buffer,
            op,
            vars: [None; 4],
        }
    }

    /// Positioned after the previous step's match.
    pub fn relative(&self) -> bool {
        match &self.op {
            Op::Content => self.distance.is_some() || self.within.is_some(),
            Op::IsDataAt { relative, .. } => *relative,
            Op::ByteTest { read, .. }
            | Op::ByteJump { read, .. }
            | Op::ByteExtract { read, .. } => read.relative,
            Op::Pcre { relative, .. } => *relative,
        }
    }

    /// A `content` (not one of the other chain keywords).
    pub fn is_content(&self) -> bool {
        self.op == Op::Content
    }
}

/// Most `byte_extract` variables in one rule.
pub const MAX_VARS: usize = 8;

/// A number in a chain keyword: literal, or a `byte_extract` variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Num {
    Lit(i64),
    Var(u8),
}

/// How `byte_test`, `byte_jump` and `byte_extract` read a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRead {
    /// Bytes read: 1-8 as binary, 1-20 as a `string`.
    pub nbytes: u8,
    pub offset: Num,
    /// From the cursor instead of the buffer's start.
    pub relative: bool,
    /// `little` (binary only; big endian by default).
    pub little: bool,
    /// `string`: the radix of the ASCII number (16, 10, 8); none: binary.
    pub base: Option<u32>,
    /// `bitmask`: ANDed, then shifted right by its trailing zeros.
    pub bitmask: Option<u64>,
}

/// `byte_test` operators (`!` negates any of them; `!` alone is `!=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOp {
    Lt,
    Gt,
    Eq,
    Le,
    Ge,
    /// `&`: any bit in common.
    And,
    /// `^`: any bit different.
    Xor,
}

/// One regular expression of `pcre`, compared by its text.
#[derive(Clone, Debug)]
pub struct Re(pub regex::bytes::Regex);

impl PartialEq for Re {
    fn eq(&self, o: &Re) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

impl Eq for Re {}

/// What one step of a buffer's chain does; see [`content`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Content,
    /// `isdataat:[!]N[,relative]`.
    IsDataAt {
        at: Num,
        relative: bool,
        negated: bool,
    },
    ByteTest {
        read: ByteRead,
        op: ByteOp,
        negated: bool,
        value: Num,
    },
    ByteJump {
        read: ByteRead,
        multiplier: u64,
        align: bool,
        from_beginning: bool,
        from_end: bool,
        post_offset: i64,
    },
    /// `byte_extract`: the value (times `multiplier`, rounded up to
    /// `align`) goes into variable `var`.
    ByteExtract {
        read: ByteRead,
        multiplier: u64,
        align: u8,
        var: u8,
    },
    Pcre {
        re: Re,
        negated: bool,
        relative: bool,
        /// `A`: the match must start where the search does.
        anchored: bool,
        /// PCRE's `$` without `E` or `m` also matches before a final
        /// newline; the regex crate's only at the end: the expression
        /// has such a `$`, so a buffer ending in `\n` is also searched
        /// without it.
        dollar_before_newline: bool,
    },
}

/// A numeric test (`dsize`, `itype`, `icode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumCmp {
    Eq(u32),
    Ne(u32),
    Lt(u32),
    Gt(u32),
    Le(u32),
    Ge(u32),
    /// `a<>b`: strictly between.
    Between(u32, u32),
    /// `a-b`: strictly between too, as in Suricata's integer keywords.
    Range(u32, u32),
}

impl NumCmp {
    pub fn test(self, x: u32) -> bool {
        match self {
            NumCmp::Eq(n) => x == n,
            NumCmp::Ne(n) => x != n,
            NumCmp::Lt(n) => x < n,
            NumCmp::Gt(n) => x > n,
            NumCmp::Le(n) => x <= n,
            NumCmp::Ge(n) => x >= n,
            NumCmp::Between(a, b) | NumCmp::Range(a, b) => a < x && x < b,
        }
    }
}

/// `flags`: the bits, the bits to ignore, and the modifier (`=` exactly,
/// `+` at least these, `*` any of these, `!` none of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsSpec {
    pub bits: u8,
    pub ignore: u8,
    pub modifier: u8,
}

impl FlagsSpec {
    /// No bits, none ignored, modifier `=`: what `flags` and `fragbits`
    /// parse their letters into.
    pub const EXACT_NONE: FlagsSpec = FlagsSpec {
        bits: 0,
        ignore: 0,
        modifier: b'=',
    };

    pub fn test(self, flags: u8) -> bool {
        let f = flags & !self.ignore;
        match self.modifier {
            b'+' => f & self.bits == self.bits,
            b'*' => f & self.bits != 0,
            b'!' => f & self.bits == 0,
            _ => f == self.bits,
        }
    }
}

/// Which VLAN layer a `vlan.id` test looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanLayer {
    /// Any layer may match.
    Any,
    /// Every layer must match (and there must be one).
    All,
    /// Layer 0 is the outermost; negative counts from the innermost.
    Index(i8),
}

/// `vlan.id:[!|<|>|..]N[,layer]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTest {
    pub cmp: NumCmp,
    pub layer: VlanLayer,
}

impl VlanTest {
    pub fn test(self, vlans: &[u16]) -> bool {
        let ok = |v: &u16| self.cmp.test(u32::from(*v));
        match self.layer {
            VlanLayer::Any => vlans.iter().any(ok),
            VlanLayer::All => !vlans.is_empty() && vlans.iter().all(ok),
            VlanLayer::Index(i) => {
                let idx = if i < 0 {
                    vlans.len().checked_sub(usize::from(i.unsigned_abs()))
                } else {
                    Some(i as usize)
                };
                idx.and_then(|i| vlans.get(i)).is_some_and(ok)
            }
        }
    }
}

/// `flow`: direction and state, when the rule asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSpec {
    pub to_server: Option<bool>,
    pub established: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdKind {
    /// Alert on the first `count` matches of each window.
    Limit,
    /// Alert on every `count`-th match within a window.
    Threshold,
    /// Alert once per window, at the `count`-th match.
    Both,
    /// Alert on every match after the first `count` of a window.
    DetectionFilter,
    /// `backoff` (by_flow only): alert at the `count`-th match, then each
    /// time the count has grown `multiplier` times.
    Backoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Track {
    Src,
    Dst,
    Rule,
    Both,
    /// `by_flow`: per flow (a packet without a flow is not counted).
    Flow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub kind: ThresholdKind,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
    /// `unique_on`: count distinct destination (true) or source (false)
    /// ports instead of matches.
    pub unique_on_dst_port: Option<bool>,
    /// `backoff`'s multiplier (0 otherwise).
    pub multiplier: u32,
}

/// What a matching rule does, as Suricata does it in IDS mode (moni
/// watches a mirror: nothing it decides reaches the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Raise an alert.
    #[default]
    Alert,
    /// Raise nothing, and stop inspecting the packet (and, for some
    /// rules, the rest of its flow: [`Rule::passes_flow`]), as Suricata
    /// does: pass rules are checked before every other rule (its default
    /// `action-order`), so no rule alerts on what a pass rule matched.
    Pass,
    /// `drop`: an IPS action. In IDS mode Suricata alerts on it (the
    /// alert's action "allowed"), the packet's other rules still alert,
    /// and where the match covers the flow ([`Rule::passes_flow`]) the
    /// flow's later packets, both directions, are not inspected: what an
    /// inline sensor would have dropped goes unseen.
    Drop,
    /// `reject`, `rejectsrc`, `rejectdst`, `rejectboth`: a drop that also
    /// answers the sender; watching, the same as [`Action::Drop`].
    Reject,
}

impl Action {
    /// Suricata's default `action-order`: pass, drop, reject, alert.
    pub fn rank(self) -> u32 {
        match self {
            Action::Pass => 0,
            Action::Drop => 1,
            Action::Reject => 2,
            Action::Alert => 3,
        }
    }

    /// Whether a match blocks the traffic on an inline sensor.
    pub fn blocks(self) -> bool {
        matches!(self, Action::Drop | Action::Reject)
    }
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Line of the rule in its file (1-based).
    pub line: usize,
    pub action: Action,
    pub sid: u32,
    pub rev: u32,
    pub gid: u32,
    pub msg: String,
    pub classtype: Option<String>,
    pub priority: Option<u8>,
    pub proto: Proto,
    /// The IP version the protocol keyword names (`ipv4`, `icmpv6`, ...),
    /// `None` for either.
    pub ip_version: Option<u8>,
    pub src: AddrSpec,
    pub src_ports: PortSpec,
    pub dst: AddrSpec,
    pub dst_ports: PortSpec,
    pub bidirectional: bool,
    pub contents: Vec<Content>,
    pub dsize: Option<NumCmp>,
    pub flags: Option<FlagsSpec>,
    pub flow: FlowSpec,
    pub itype: Option<NumCmp>,
    pub icode: Option<NumCmp>,
    pub vlan: Vec<VlanTest>,
    /// `ttl`, `id`, `ipopts`, `tcp.mss`, ... : all must hold.
    pub header: Vec<HeaderTest>,
    /// `bsize` (per sticky buffer) and `urilen` (on `http.uri`, or
    /// `http.uri.raw` with `,raw`).
    pub lens: Vec<(Buffer, NumCmp)>,
    /// `flowbits` tests and actions, in rule order.
    pub flowbits: Vec<FlowbitsOp>,
    /// `flowbits:noalert`: the rule sets bits but raises nothing.
    pub noalert: bool,
    pub threshold: Option<Threshold>,
    pub detection_filter: Option<Threshold>,
    pub references: Vec<String>,
    pub metadata: Vec<String>,
    /// Index into `contents` of the prefilter pattern (none: the rule is
    /// checked on every packet of its protocol).
    pub fast_pattern: Option<usize>,
}

impl Rule {
    /// A rule of protocol, addresses and ports alone (thresholds aside):
    /// what Suricata calls IP-only (and, in 7, the same with ports),
    /// judged on the first packet of each flow direction only.
    pub fn header_only(&self) -> bool {
        matches!(
            self.proto,
            Proto::Ip | Proto::Tcp | Proto::Udp | Proto::Icmp
        ) && self.contents.is_empty()
            && self.dsize.is_none()
            && self.flags.is_none()
            && self.flow == FlowSpec::default()
            && self.itype.is_none()
            && self.icode.is_none()
            && self.vlan.is_empty()
            && self.header.is_empty()
            && self.lens.is_empty()
            && self.flowbits.is_empty()
    }

    /// The buffers the rule's contents and length tests read.
    pub fn buffers(&self) -> impl Iterator<Item = Buffer> + '_ {
        self.contents
            .iter()
            .map(|c| c.buffer)
            .chain(self.lens.iter().map(|(b, _)| *b))
    }

    /// Whether a `pass` (or, the same way, a `drop`) on this rule covers
    /// the rest of the flow too, or only the packet. Suricata (`FlowApplySignatureActions`) passes the
    /// flow for IP-only rules, application-layer rules and matches in the
    /// reassembled TCP stream, and only the packet for a match on a
    /// packet's own payload or header: a pass on `content:"INVITE"` over
    /// UDP lets the reply's first packet alert (Suricata 7 on a SIP
    /// capture). moni reassembles no TCP stream, so a payload match on a
    /// TCP packet passes that packet, where Suricata passes the flow once
    /// its stream is inspected.
    pub fn passes_flow(&self) -> bool {
        self.header_only() || matches!(self.proto, Proto::Http | Proto::Dns | Proto::Sip)
    }
}

/// One `flowbits` option; a bit is an index into the rule set's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowbitsOp {
    Set(String),
    Unset(String),
    Toggle(String),
    /// Any of the names (`a|b`) is set.
    IsSet(Vec<String>),
    /// None of the names is set.
    IsNotSet(Vec<String>),
}

/// Suricata's `classification.config`: classtype to (description,
/// priority). Unknown classtypes keep their name and priority 3.
pub fn classtype(name: &str) -> (&'static str, u8) {
    const TABLE: &[(&str, &str, u8)] = &[
        ("not-suspicious", "Not Suspicious Traffic", 3),
        ("unknown", "Unknown Traffic", 3),
        ("bad-unknown", "Potentially Bad Traffic", 2),
        ("attempted-recon", "Attempted Information Leak", 2),
        ("successful-recon-limited", "Information Leak", 2),
        (
            "successful-recon-largescale",
            "Large Scale Information Leak",
            2,
        ),
        ("attempted-dos", "Attempted Denial of Service", 2),
        ("successful-dos", "Denial of Service", 2),
        ("attempted-user", "Attempted User Privilege Gain", 1),
        ("unsuccessful-user", "Unsuccessful User Privilege Gain", 1),
        ("successful-user", "Successful User Privilege Gain", 1),
        (
            "attempted-admin",
            "Attempted Administrator Privilege Gain",
            1,
        ),
        (
            "successful-admin",
            "Successful Administrator Privilege Gain",
            1,
        ),
        ("rpc-portmap-decode", "Decode of an RPC Query", 2),
        ("shellcode-detect", "Executable code was detected", 1),
        ("string-detect", "A suspicious string was detected", 3),
        (
            "suspicious-filename-detect",
            "A suspicious filename was detected",
            2,
        ),
        (
            "suspicious-login",
            "An attempted login using a suspicious username was detected",
            2,
        ),
        ("system-call-detect", "A system call was detected", 2),
        ("tcp-connection", "A TCP connection was detected", 4),
        ("trojan-activity", "A Network Trojan was detected", 1),
        (
            "unusual-client-port-connection",
            "A client was using an unusual port",
            2,
        ),
        ("network-scan", "Detection of a Network Scan", 3),
        (
            "denial-of-service",
            "Detection of a Denial of Service Attack",
            2,
        ),
        (
            "non-standard-protocol",
            "Detection of a non-standard protocol or event",
            2,
        ),
        (
            "protocol-command-decode",
            "Generic Protocol Command Decode",
            3,
        ),
        (
            "web-application-activity",
            "access to a potentially vulnerable web application",
            2,
        ),
        ("web-application-attack", "Web Application Attack", 1),
        ("misc-activity", "Misc activity", 3),
        ("misc-attack", "Misc Attack", 2),
        ("icmp-event", "Generic ICMP event", 3),
        (
            "inappropriate-content",
            "Inappropriate Content was Detected",
            1,
        ),
        (
            "policy-violation",
            "Potential Corporate Privacy Violation",
            1,
        ),
        (
            "default-login-attempt",
            "Attempt to login by a default username and password",
            2,
        ),
        (
            "targeted-activity",
            "Targeted Malicious Activity was Detected",
            1,
        ),
        ("exploit-kit", "Exploit Kit Activity Detected", 1),
        (
            "external-ip-check",
            "Device Retrieving External IP Address Detected",
            2,
        ),
        ("domain-c2", "Domain Observed Used for C2 Detected", 1),
        ("pup-activity", "Possibly Unwanted Program Detected", 2),
        (
            "credential-theft",
            "Successful Credential Theft Detected",
            1,
        ),
        (
            "social-engineering",
            "Possible Social Engineering Attempted",
            2,
        ),
        ("coin-mining", "Crypto Currency Mining Activity Detected", 2),
        (
            "command-and-control",
            "Malware Command and Control Activity Detected",
            1,
        ),
    ];
    TABLE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or(("", 3), |(_, d, p)| (*d, *p))
}

#[cfg(test)]
mod tests;
