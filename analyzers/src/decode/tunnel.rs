//! Decapsulation of overlay tunnels: VXLAN (and VXLAN-GPE), Geneve, GRE
//! (with NVGRE, PPP and ERSPAN type II/III payloads), MPLS label stacks,
//! GTP-U and IP-in-IP.
//!
//! Contract, the same as the rest of [`crate::decode`](mod@crate::decode): any byte sequence,
//! no panic. Decapsulation is a loop, not a recursion: after the outer
//! layers decoded, `decapsulate` asks whether the packet is a tunnel
//! (`next_layer`), decodes the inner packet and repeats, at most
//! [`DecodeConfig::max_tunnel_depth`] times; one layer more counts
//! [`DecodeError::TunnelTooDeep`] and keeps what decoded so far.
//!
//! Lax like the rest: a tunnel whose header or inner packet is broken
//! keeps the outer layers (the packet still counts in the flow between the
//! tunnel endpoints) and names one reason. An inner frame that is not IP
//! (ARP inside VXLAN, say) also keeps the outer layers, without an error:
//! it is a well-formed frame moni has no flow for.
//!
//! The result carries both views: the innermost IP packet as the
//! [`Decoded`] itself, and the tunnel layers crossed (outermost first) with
//! the outermost IP addresses in [`Tunnels`].

use std::borrow::Cow;
use std::net::IpAddr;

use super::mpls::{self, MplsPayload};
use super::{be16, from_ether_type, DecodeError, Decoded, Transport};

/// Tunnel layers recorded per packet. [`DecodeConfig::max_tunnel_depth`]
/// is capped at this.
pub const MAX_TUNNEL_LAYERS: usize = 8;

/// Settings of the decoder (`[decode]` in the node config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeConfig {
    /// Tunnel layers decapsulated at most; one more counts
    /// `tunnel_too_deep`. Default 4, at most [`MAX_TUNNEL_LAYERS`].
    pub max_tunnel_depth: u8,
    /// UDP destination ports of VXLAN (IANA 4789; Linux used 8472).
    pub vxlan_ports: Cow<'static, [u16]>,
    /// UDP destination port of VXLAN-GPE (IANA 4790).
    pub vxlan_gpe_port: u16,
    /// UDP destination port of Geneve (IANA 6081).
    pub geneve_port: u16,
    /// UDP destination port of GTP-U (IANA 2152; both directions go to it).
    pub gtpu_port: u16,
    /// What follows the bottom MPLS label.
    pub mpls_payload: MplsPayload,
    /// Bytes the reassembly of fragmented outer packets may hold
    /// ([`super::reassembly`]); 0 turns reassembly off. Default 16 MiB.
    pub max_reassembly_bytes: usize,
    /// Seconds of packet time a fragmented datagram may take to complete.
    /// Default 30 (Linux's `ipfrag_time`).
    pub reassembly_timeout_secs: u32,
}

impl DecodeConfig {
    /// The defaults, usable in a `static`.
    pub const DEFAULT: DecodeConfig = DecodeConfig {
        max_tunnel_depth: 4,
        vxlan_ports: Cow::Borrowed(&[4789, 8472]),
        vxlan_gpe_port: 4790,
        geneve_port: 6081,
        gtpu_port: 2152,
        mpls_payload: MplsPayload::Auto,
        max_reassembly_bytes: 16 << 20,
        reassembly_timeout_secs: 30,
    };
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig::DEFAULT
    }
}

/// The kind of one tunnel layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    /// VXLAN or VXLAN-GPE; the id is the VNI.
    #[default]
    Vxlan,
    /// Geneve; the id is the VNI.
    Geneve,
    /// GRE (and NVGRE: GRE with a key carrying Ethernet); the id is the key
    /// when the key flag is set (for GRE version 1, the call id).
    Gre,
    /// ERSPAN type II in GRE; the id is the session id.
    Erspan2,
    /// ERSPAN type III in GRE; the id is the session id.
    Erspan3,
    /// An MPLS label stack; the id is the top label.
    Mpls,
    /// GTP-U; the id is the TEID.
    Gtpu,
    /// IPv4 or IPv6 directly in IPv4 or IPv6 (protocols 4 and 41); no id.
    Ipip,
}

impl TunnelKind {
    /// The name used in records (`tunnel_type`) and in the VNet map.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan2 => "erspan2",
            TunnelKind::Erspan3 => "erspan3",
            TunnelKind::Mpls => "mpls",
            TunnelKind::Gtpu => "gtpu",
            TunnelKind::Ipip => "ipip",
        }
    }

    /// Whether the id names a virtual network (or mirror session) that is
    /// the same in both directions, so that it can separate flows. GRE
    /// keys, MPLS labels and GTP TEIDs are often chosen per direction.
    fn is_segment(self) -> bool {
        matches!(
            self,
            TunnelKind::Vxlan | TunnelKind::Geneve | TunnelKind::Erspan2 | TunnelKind::Erspan3
        )
    }
}

/// One tunnel layer a packet crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TunnelLayer {
    pub kind: TunnelKind,
    /// VNI, GRE key, ERSPAN session, top MPLS label or TEID.
    pub id: Option<u32>,
    /// GRE only: the payload was Ethernet (0x6558). With a key, that is
    /// NVGRE, whose virtual subnet id (VSID) is the key's upper 24 bits.
    pub ethernet: bool,
}

impl TunnelLayer {
    /// The NVGRE virtual subnet id, for a keyed GRE layer carrying Ethernet.
    pub fn nvgre_vsid(&self) -> Option<u32> {
        match (self.kind, self.ethernet, self.id) {
            (TunnelKind::Gre, true, Some(key)) => Some(key >> 8),
            _ => None,
        }
    }
}

/// The tunnel layers of a packet, outermost first, and the outermost IP
/// addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tunnels {
    layers: [TunnelLayer; MAX_TUNNEL_LAYERS],
    count: u8,
    /// Every label of every MPLS stack crossed (the first
    /// [`MAX_MPLS_LABELS`], as many as one stack may have), which the VNet
    /// map matches, with the index of the layer each belongs to.
    mpls_labels: [u32; MAX_MPLS_LABELS],
    mpls_layer: [u8; MAX_MPLS_LABELS],
    mpls_count: u8,
    /// Source and destination of the outermost IP header, when the
    /// outermost layer was IP.
    pub outer: Option<(IpAddr, IpAddr)>,
    /// The outermost IP packet was a fragment (its first): the rest of its
    /// datagram is elsewhere, so a sharded probe must send this frame
    /// where the other fragments go (by [`Tunnels::outer`]) for the
    /// [`super::reassembly`] to see them all.
    pub outer_fragment: bool,
    /// The IP identification of that outer fragment (with
    /// `outer_fragment`), by which a sharded probe sends the datagram's
    /// later fragments after it.
    pub outer_fragment_id: u32,
    /// How many of the inner packet's VLAN ids (the first) are the outer
    /// packets' tags: the rest (an ERSPAN frame's original VLAN, the
    /// inner frame's own tags) are the inner packet's, which Suricata's
    /// EVE shows for an alert on it.
    pub outer_vlans: u8,
}

/// Equal when the stacks read the same: the slots past `count` and
/// `mpls_count` are always empty, so they need no comparing (a packet
/// batch compares each packet's stack with the one before it).
/// (Written out: the derived comparisons of the addresses and slices
/// cost a batch more than a packet's tunnel decode.)
impl PartialEq for Tunnels {
    fn eq(&self, other: &Self) -> bool {
        fn same_ip(a: &IpAddr, b: &IpAddr) -> bool {
            match (a, b) {
                (IpAddr::V4(a), IpAddr::V4(b)) => a.to_bits() == b.to_bits(),
                (IpAddr::V6(a), IpAddr::V6(b)) => a.to_bits() == b.to_bits(),
                _ => false,
            }
        }
        fn same_layer(a: &TunnelLayer, b: &TunnelLayer) -> bool {
            a.kind == b.kind
                && a.ethernet == b.ethernet
                && a.id.unwrap_or(u32::MAX) == b.id.unwrap_or(u32::MAX)
                && a.id.is_some() == b.id.is_some()
        }
        if self.count != other.count
            || self.outer_vlans != other.outer_vlans
            || self.mpls_count != other.mpls_count
            || self.outer_fragment_id != other.outer_fragment_id
            || self.outer_fragment != other.outer_fragment
        {
            return false;
        }
        let same_outer = match (&self.outer, &other.outer) {
            (None, None) => true,
            (Some((a, b)), Some((c, d))) => same_ip(a, c) && same_ip(b, d),
            _ => false,
        };
        let n = usize::from(self.count).min(MAX_TUNNEL_LAYERS);
        same_outer
            && (0..n).all(|i| same_layer(&self.layers[i], &other.layers[i]))
            && self.mpls_labels == other.mpls_labels
            && self.mpls_layer == other.mpls_layer
    }
}

impl Eq for Tunnels {}

impl Tunnels {
    /// No tunnel.
    pub const EMPTY: Tunnels = Tunnels {
        layers: [TunnelLayer {
            kind: TunnelKind::Vxlan,
            id: None,
            ethernet: false,
        }; MAX_TUNNEL_LAYERS],
        count: 0,
        mpls_labels: [0; MAX_MPLS_LABELS],
        mpls_layer: [0; MAX_MPLS_LABELS],
        mpls_count: 0,
        outer: None,
        outer_fragment: false,
        outer_fragment_id: 0,
        outer_vlans: 0,
    };

    /// The layers crossed, outermost first.
    pub fn layers(&self) -> &[TunnelLayer] {
        &self.layers[..usize::from(self.count).min(MAX_TUNNEL_LAYERS)]
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The MPLS labels crossed (outermost first, at most
    /// [`MAX_MPLS_LABELS`]).
    pub fn mpls_labels(&self) -> &[u32] {
        &self.mpls_labels[..usize::from(self.mpls_count).min(MAX_MPLS_LABELS)]
    }

    /// The labels of the MPLS stack that is layer `layer` of
    /// [`Tunnels::layers`], outermost first.
    pub fn mpls_labels_of(&self, layer: usize) -> impl DoubleEndedIterator<Item = u32> + '_ {
        let n = usize::from(self.mpls_count).min(MAX_MPLS_LABELS);
        self.mpls_labels[..n]
            .iter()
            .zip(&self.mpls_layer[..n])
            .filter(move |(_, l)| usize::from(**l) == layer)
            .map(|(label, _)| *label)
    }

    /// `tunnel_type`: the kinds, outermost first, joined by `/`; `None`
    /// without a tunnel.
    pub fn type_name(&self) -> Option<String> {
        let mut layers = self.layers().iter();
        let first = layers.next()?;
        let mut s = first.kind.as_str().to_string();
        for l in layers {
            s.push('/');
            s.push_str(l.kind.as_str());
        }
        Some(s)
    }

    /// `tunnel_id`: the id of the innermost layer that has one (for GRE
    /// the whole key, as tshark shows it; NVGRE's VSID is its upper 24
    /// bits).
    pub fn id(&self) -> Option<u32> {
        self.layers().iter().rev().find_map(|l| l.id)
    }

    /// The discriminator that keeps flows of different virtual networks
    /// apart in the flow key: the innermost VNI, NVGRE VSID or ERSPAN
    /// session with its kind in the top byte, 0 when there is none.
    pub fn segment(&self) -> u32 {
        self.layers()
            .iter()
            .rev()
            .find_map(|l| {
                let id = if l.kind.is_segment() {
                    l.id.unwrap_or(0)
                } else {
                    l.nvgre_vsid()?
                };
                Some((l.kind as u32 + 1) << 24 | (id & 0x00ff_ffff))
            })
            .unwrap_or(0)
    }

    fn push(&mut self, layer: TunnelLayer, labels: &[u32]) {
        let index = self.count;
        if let Some(slot) = self.layers.get_mut(usize::from(self.count)) {
            *slot = layer;
            self.count += 1;
        }
        for l in labels {
            let i = usize::from(self.mpls_count);
            if let (Some(slot), Some(at)) =
                (self.mpls_labels.get_mut(i), self.mpls_layer.get_mut(i))
            {
                *slot = *l;
                *at = index;
                self.mpls_count += 1;
            }
        }
    }
}

/// The [`Tunnels`] of a decoded packet. An untunnelled packet (the common
/// case, on the hot path) carries no stack and reads as
/// [`Tunnels::EMPTY`]; the decoder boxes the stack it builds, so that
/// `Decoded` stays small; a receiver that holds the stack elsewhere (a
/// packet batch, which carries it by value beside the frame) borrows it
/// instead of allocating a box per packet.
#[derive(Clone, Debug, Default)]
pub enum TunnelStack<'a> {
    /// No tunnel.
    #[default]
    None,
    /// The decoder's own stack.
    Owned(Box<Tunnels>),
    /// A stack kept by the caller.
    Shared(&'a Tunnels),
}

/// Whether an outer IP packet is a fragment, and its identification.
fn fragment_of(f: super::Fragment) -> (bool, u32) {
    match f {
        super::Fragment::None => (false, 0),
        super::Fragment::First { id } | super::Fragment::Later { id } => (true, id),
    }
}

/// Boxes a thread keeps for reuse: the capture loop decodes a burst of up
/// to 16 packets before it copies any stack into its batch, so as many
/// stacks are out at once.
const SPARES: usize = 32;

thread_local! {
    /// Boxes given back by [`recycle_tunnels`], for the next tunnelled
    /// packets this thread decodes: a capture loop that copies each stack
    /// into its batch then allocates nothing per packet. The boxes are
    /// the point: each is handed out as a stack's allocation.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Tunnels>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `t` in a box [`recycle_tunnels`] gave back, or a new one.
#[inline]
fn boxed(t: Tunnels) -> Box<Tunnels> {
    let spare = SPARE.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()));
    match spare {
        Some(mut b) => {
            *b = t;
            b
        }
        None => Box::new(t),
    }
}

/// Gives a stack's box back for a later decode on this thread to reuse.
pub fn recycle_tunnels(b: Box<Tunnels>) {
    SPARE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARES {
                s.push(b);
            }
        }
    });
}

impl TunnelStack<'_> {
    /// A stack of its own, in the box [`recycle_tunnels`] gave back if any.
    #[inline]
    pub fn owned(tunnels: Tunnels) -> Self {
        TunnelStack::Owned(boxed(tunnels))
    }

    /// A stack of the one `layer` found in the IP packet `outer`, in a
    /// recycled box.
    #[inline(always)]
    pub(super) fn one_layer(layer: TunnelLayer, outer: super::IpLayer) -> Self {
        let mut layers = Tunnels::EMPTY.layers;
        layers[0] = layer;
        let (outer_fragment, outer_fragment_id) = fragment_of(outer.fragment);
        let t = Tunnels {
            layers,
            count: 1,
            mpls_labels: [0; MAX_MPLS_LABELS],
            mpls_layer: [0; MAX_MPLS_LABELS],
            mpls_count: 0,
            outer: Some((outer.src, outer.dst)),
            outer_fragment,
            outer_fragment_id,
            outer_vlans: 0,
        };
        TunnelStack::owned(t)
    }

    /// `stack` (the outer packet's) with one more layer, in a box: the
    /// outer packet's own box when it had one, else a recycled one, so
    /// that the stack is not copied from box to box.
    /// `outer_ip` is the outer packet's IP layer, which the first layer
    /// records as the outermost addresses.
    pub(super) fn owned_grown(
        stack: TunnelStack<'_>,
        outer_ip: Option<super::IpLayer>,
        layer: TunnelLayer,
        labels: &[u32],
    ) -> Self {
        let mut b = match stack {
            TunnelStack::Owned(b) => b,
            TunnelStack::Shared(t) => Box::new(*t),
            TunnelStack::None => boxed(Tunnels::EMPTY),
        };
        // The outermost IP header: the first one a layer was found in (an
        // MPLS stack straight on the link has none).
        if b.outer.is_none() {
            b.outer = outer_ip.map(|ip| (ip.src, ip.dst));
            (b.outer_fragment, b.outer_fragment_id) =
                outer_ip.map_or((false, 0), |ip| fragment_of(ip.fragment));
        }
        b.push(layer, labels);
        TunnelStack::Owned(b)
    }

    /// The stack in a box, or `None` without tunnels.
    pub fn into_box(self) -> Option<Box<Tunnels>> {
        match self {
            TunnelStack::None => None,
            TunnelStack::Owned(b) => Some(b),
            TunnelStack::Shared(t) => Some(Box::new(*t)),
        }
    }
}

/// Equal when the stacks read the same, wherever they are kept.
impl PartialEq for TunnelStack<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for TunnelStack<'_> {}

static NO_TUNNELS: Tunnels = Tunnels::EMPTY;

impl std::ops::Deref for TunnelStack<'_> {
    type Target = Tunnels;
    fn deref(&self) -> &Tunnels {
        match self {
            TunnelStack::None => &NO_TUNNELS,
            TunnelStack::Owned(b) => b,
            TunnelStack::Shared(t) => t,
        }
    }
}

/// Where the inner packet of a tunnel starts.
#[derive(Debug)]
pub(super) enum Inner<'a> {
    /// An Ethernet frame.
    Ethernet(&'a [u8]),
    /// A packet of this EtherType (IPv4, IPv6, MPLS).
    EtherType(u16, &'a [u8]),
    /// IPv4 or IPv6, by the first nibble.
    Ip(&'a [u8]),
}

/// MPLS labels a packet's tunnel stack keeps for the VNet map (segment
/// routing stacks run to a dozen labels; the decoder reads at most this
/// many of one stack).
pub const MAX_MPLS_LABELS: usize = 16;

/// One tunnel layer found in a decoded packet.
#[derive(Debug)]
pub(super) struct Step<'a> {
    layer: TunnelLayer,
    labels: [u32; MAX_MPLS_LABELS],
    label_count: u8,
    /// ERSPAN: the mirrored frame's original VLAN (0: none), which joins
    /// the packet's VLAN stack as Suricata does.
    vlan: u16,
    inner: Inner<'a>,
}

impl<'a> Step<'a> {
    fn new(kind: TunnelKind, id: Option<u32>, inner: Inner<'a>) -> Self {
        Step {
            layer: TunnelLayer {
                kind,
                id,
                ethernet: false,
            },
            labels: [0; MAX_MPLS_LABELS],
            label_count: 0,
            vlan: 0,
            inner,
        }
    }
}

/// Decapsulates `d` layer by layer (see the module doc), in place: each
/// inner packet is decoded over its outer one, which is kept only when the
/// inner decode fails (the common inner frame, Ethernet with IPv4, is read
/// by the fast path, which writes nothing until it has accepted the frame;
/// a copy of the ~170-byte `Decoded` per layer was a tenth of a tunnelled
/// packet's cost).
#[inline(always)]
pub(super) fn decapsulate<'a>(d: &mut Decoded<'a>, cfg: &DecodeConfig) {
    // Most packets are no tunnel: told so without a call.
    if may_be_tunnel(d, cfg) {
        decapsulate_layers(d, cfg);
    }
}

/// Whether `port` is a VXLAN port (the default pair compared without a
/// loop: every UDP packet asks).
#[inline(always)]
fn is_vxlan_port(cfg: &DecodeConfig, port: u16) -> bool {
    match *cfg.vxlan_ports {
        [a, b] => port == a || port == b,
        ref ports => ports.contains(&port),
    }
}

/// Whether `d` may carry a tunnel layer: `false` only when
/// [`next_layer`] would find none.
#[inline(always)]
fn may_be_tunnel(d: &Decoded<'_>, cfg: &DecodeConfig) -> bool {
    if d.error.is_some() {
        return false;
    }
    match d.ip {
        None => matches!(d.ether_type, Some(mpls::UNICAST | mpls::MULTICAST)),
        Some(ip) => match (ip.protocol, d.transport) {
            (GRE | IPV4_IN_IP | IPV6_IN_IP, _) => true,
            // GTP-U goes to its port in both directions (TS 29.281; the
            // source port may be any): a client's source port 2152 is not
            // GTP-U.
            (_, Transport::Udp { dst_port, .. }) => {
                is_vxlan_port(cfg, dst_port)
                    || dst_port == cfg.vxlan_gpe_port
                    || dst_port == cfg.geneve_port
                    || dst_port == cfg.gtpu_port
            }
            _ => false,
        },
    }
}

/// The overlay moni sees most (a VXLAN mirror session or fabric: VXLAN
/// carrying Ethernet with IPv4) decapsulated without the general loop's
/// steps, as [`decapsulate_layers`] would: `true` when `d` was such a
/// packet and is its inner packet now, `false` (and `d` untouched) when
/// the general loop must look.
#[inline(always)]
fn vxlan_ethernet_ipv4(d: &mut Decoded<'_>, cfg: &DecodeConfig) -> bool {
    let (Some(ip), Transport::Udp { dst_port, .. }) = (d.ip, d.transport) else {
        return false;
    };
    if ip.fragment != super::Fragment::None
        || cfg.max_tunnel_depth == 0
        || !matches!(d.tunnels, TunnelStack::None)
        || !is_vxlan_port(cfg, dst_port)
    {
        return false;
    }
    let (Some(h), Some(rest)) = (d.payload.get(..8), d.payload.get(8..)) else {
        return false;
    };
    if h[0] & 0x08 == 0 {
        return false;
    }
    let layer = TunnelLayer {
        kind: TunnelKind::Vxlan,
        id: Some(be24(&h[4..7])),
        ethernet: false,
    };
    let (outer_vlans, outer_vlan_count) = (d.vlan_ids, d.vlan_count);
    if !super::fast::fast_ethernet_ipv4(rest, d) {
        return false;
    }
    d.tunnels = TunnelStack::one_layer(layer, ip);
    join_vlans(d, outer_vlans, outer_vlan_count, None);
    true
}

/// Puts the VLAN stack of the whole packet in `d` (the inner packet),
/// outermost first: the outer packet's tags, an ERSPAN frame's original
/// VLAN, then the inner packet's own (three at most).
#[inline(always)]
fn join_vlans(d: &mut Decoded<'_>, outer: [u16; 3], outer_count: u8, erspan: Option<u16>) {
    let mut vlans = outer;
    let mut n = usize::from(outer_count);
    for v in erspan.iter().chain(d.vlans()) {
        if let Some(slot) = vlans.get_mut(n) {
            *slot = *v;
            n += 1;
        }
    }
    d.vlan_ids = vlans;
    d.vlan_count = n as u8;
    if let TunnelStack::Owned(t) = &mut d.tunnels {
        t.outer_vlans = outer_count;
    }
}

#[inline(never)]
fn decapsulate_layers<'a>(d: &mut Decoded<'a>, cfg: &DecodeConfig) {
    if !vxlan_ethernet_ipv4(d, cfg) {
        general_layers(d, cfg, 0);
    } else if may_be_tunnel(d, cfg) {
        general_layers(d, cfg, 1);
    }
}

/// The general loop: decapsulates `d`, which `depth` layers were taken
/// off already, layer by layer.
fn general_layers<'a>(d: &mut Decoded<'a>, cfg: &DecodeConfig, mut depth: u8) {
    let max_depth = cfg.max_tunnel_depth.min(MAX_TUNNEL_LAYERS as u8);
    loop {
        let step = match next_layer(d, cfg) {
            None => return,
            Some(Err(e)) => {
                d.error = Some(e);
                return;
            }
            Some(Ok(step)) => step,
        };
        if depth >= max_depth {
            d.error = Some(DecodeError::TunnelTooDeep);
            return;
        }
        depth += 1;
        // What the inner packet inherits from the outer one.
        let (outer_vlans, outer_vlan_count, outer_ip) = (d.vlan_ids, d.vlan_count, d.ip);
        let stack = std::mem::take(&mut d.tunnels);
        let fast = match step.inner {
            Inner::Ethernet(b) => super::fast::fast_ethernet_ipv4(b, d),
            _ => false,
        };
        if !fast {
            let inner = match step.inner {
                Inner::Ethernet(b) => super::vlan::decode_ethernet(b),
                Inner::EtherType(t, b) => from_ether_type(t, b),
                Inner::Ip(b) => match b.first().map(|v| v >> 4) {
                    Some(4) => from_ether_type(0x0800, b),
                    Some(6) => from_ether_type(0x86dd, b),
                    Some(_) => Decoded::failed(DecodeError::IpInvalid),
                    None => Decoded::failed(DecodeError::IpTruncated),
                },
            };
            // An MPLS stack inside the tunnel is the next layer, found by
            // the next turn; anything else without IP ends here, with the
            // outer packet.
            let inner_is_mpls = inner.ip.is_none()
                && inner.error.is_none()
                && matches!(inner.ether_type, Some(mpls::UNICAST | mpls::MULTICAST));
            if inner.ip.is_none() && !inner_is_mpls {
                d.tunnels = stack;
                if inner.error.is_some() {
                    d.error = inner.error;
                }
                return;
            }
            *d = inner;
        }
        // `d` is the inner packet now.
        d.tunnels = TunnelStack::owned_grown(
            stack,
            outer_ip,
            step.layer,
            &step.labels[..usize::from(step.label_count)],
        );
        let erspan_vlan = (step.vlan != 0).then_some(step.vlan);
        join_vlans(d, outer_vlans, outer_vlan_count, erspan_vlan);
    }
}

const GRE: u8 = 47;
const IPV4_IN_IP: u8 = 4;
const IPV6_IN_IP: u8 = 41;

/// The tunnel layer `d` carries, if any: `None` for a packet that is not a
/// tunnel, an error for a tunnel header that is broken.
#[inline]
pub(super) fn next_layer<'a>(
    d: &Decoded<'a>,
    cfg: &DecodeConfig,
) -> Option<Result<Step<'a>, DecodeError>> {
    if d.error.is_some() {
        return None;
    }
    let Some(ip) = d.ip else {
        // MPLS straight on the link (or inside a tunnel, see decapsulate).
        return match d.ether_type {
            Some(mpls::UNICAST | mpls::MULTICAST) => {
                Some(mpls::parse(d.net_payload, cfg.mpls_payload))
            }
            _ => None,
        };
    };
    // A later fragment has no tunnel header; a first one is decapsulated as
    // far as it goes (its inner packet counts where the datagram does).
    if matches!(ip.fragment, super::Fragment::Later { .. }) {
        return None;
    }
    match (ip.protocol, d.transport) {
        (GRE, _) => Some(gre(d.payload)),
        (IPV4_IN_IP, _) => Some(Ok(Step::new(
            TunnelKind::Ipip,
            None,
            Inner::EtherType(0x0800, d.payload),
        ))),
        (IPV6_IN_IP, _) => Some(Ok(Step::new(
            TunnelKind::Ipip,
            None,
            Inner::EtherType(0x86dd, d.payload),
        ))),
        (_, Transport::Udp { dst_port, .. }) => {
            if is_vxlan_port(cfg, dst_port) {
                Some(vxlan(d.payload))
            } else if dst_port == cfg.vxlan_gpe_port {
                Some(vxlan_gpe(d.payload))
            } else if dst_port == cfg.geneve_port {
                Some(geneve(d.payload))
            } else if dst_port == cfg.gtpu_port {
                gtpu(d.payload)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn be24(b: &[u8]) -> u32 {
    match b {
        [a, b, c, ..] => u32::from_be_bytes([0, *a, *b, *c]),
        _ => 0,
    }
}

fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// VXLAN (RFC 7348): flags (I = 0x08 says the VNI is valid), 3 reserved
/// bytes, the 24-bit VNI, 1 reserved byte, then Ethernet.
#[inline]
fn vxlan(b: &[u8]) -> Result<Step<'_>, DecodeError> {
    let (Some(h), Some(rest)) = (b.get(..8), b.get(8..)) else {
        return Err(DecodeError::VxlanTruncated);
    };
    if h[0] & 0x08 == 0 {
        return Err(DecodeError::VxlanInvalid);
    }
    Ok(Step::new(
        TunnelKind::Vxlan,
        Some(be24(&h[4..7])),
        Inner::Ethernet(rest),
    ))
}

/// VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe): like VXLAN, with a next-protocol
/// byte (1 IPv4, 2 IPv6, 3 Ethernet, 5 MPLS) valid when the P flag is set.
#[inline]
fn vxlan_gpe(b: &[u8]) -> Result<Step<'_>, DecodeError> {
    let (Some(h), Some(rest)) = (b.get(..8), b.get(8..)) else {
        return Err(DecodeError::VxlanTruncated);
    };
    if h[0] & 0x08 == 0 {
        return Err(DecodeError::VxlanInvalid);
    }
    let vni = Some(be24(&h[4..7]));
    let inner = if h[0] & 0x04 == 0 {
        Inner::Ethernet(rest)
    } else {
        match h[3] {
            1 => Inner::EtherType(0x0800, rest),
            2 => Inner::EtherType(0x86dd, rest),
            3 => Inner::Ethernet(rest),
            5 => Inner::EtherType(mpls::UNICAST, rest),
            _ => return Err(DecodeError::TunnelUnknownPayload),
        }
    };
    Ok(Step::new(TunnelKind::Vxlan, vni, inner))
}

/// Geneve (RFC 8926): version (2 bits, 0) and option length in 4-byte
/// words, flags, a protocol type (EtherType; 0x6558 is Ethernet), the
/// 24-bit VNI, then the options, skipped by their length.
#[inline]
fn geneve(b: &[u8]) -> Result<Step<'_>, DecodeError> {
    let Some(h) = b.get(..8) else {
        return Err(DecodeError::GeneveTruncated);
    };
    if h[0] >> 6 != 0 {
        return Err(DecodeError::GeneveInvalid);
    }
    let header_len = 8 + usize::from(h[0] & 0x3f) * 4;
    let Some(rest) = b.get(header_len..) else {
        return Err(DecodeError::GeneveTruncated);
    };
    let vni = Some(be24(&h[4..7]));
    Ok(Step::new(
        TunnelKind::Geneve,
        vni,
        ether_payload(be16(&h[2..4]), rest)?,
    ))
}

/// The inner packet of a payload tagged with an EtherType-style protocol.
fn ether_payload(protocol: u16, rest: &[u8]) -> Result<Inner<'_>, DecodeError> {
    match protocol {
        0x6558 => Ok(Inner::Ethernet(rest)),
        // ARP and RARP carried straight in the tunnel stay outside without
        // an error, as inside Ethernet.
        0x0800 | 0x86dd | mpls::UNICAST | mpls::MULTICAST | 0x0806 | 0x8035 => {
            Ok(Inner::EtherType(protocol, rest))
        }
        _ => Err(DecodeError::TunnelUnknownPayload),
    }
}

/// GRE (RFC 2784 / 2890, and version 1 of RFC 2637 for PPTP).
fn gre(b: &[u8]) -> Result<Step<'_>, DecodeError> {
    let Some(h) = b.get(..4) else {
        return Err(DecodeError::GreTruncated);
    };
    let (flags, version) = (h[0], h[1] & 0x07);
    let checksum = flags & 0x80 != 0;
    let routing = flags & 0x40 != 0;
    let key = flags & 0x20 != 0;
    let seq = flags & 0x10 != 0;
    let protocol = be16(&h[2..4]);
    let (len, id) = match version {
        0 => {
            // Source routing (RFC 1701) is deprecated and variable: refuse.
            if routing {
                return Err(DecodeError::GreInvalid);
            }
            let key_at = 4 + if checksum { 4 } else { 0 };
            let len = key_at + if key { 4 } else { 0 } + if seq { 4 } else { 0 };
            let id = if key {
                Some(be32(
                    b.get(key_at..key_at + 4).ok_or(DecodeError::GreTruncated)?,
                ))
            } else {
                None
            };
            (len, id)
        }
        1 => {
            // Enhanced GRE: key (payload length + call id) always present,
            // then sequence and acknowledgement numbers when flagged.
            if !key || protocol != 0x880b {
                return Err(DecodeError::GreInvalid);
            }
            let ack = h[1] & 0x80 != 0;
            let call = b.get(6..8).ok_or(DecodeError::GreTruncated)?;
            let len = 8 + if seq { 4 } else { 0 } + if ack { 4 } else { 0 };
            (len, Some(u32::from(be16(call))))
        }
        _ => return Err(DecodeError::GreInvalid),
    };
    let Some(rest) = b.get(len..) else {
        return Err(DecodeError::GreTruncated);
    };
    match protocol {
        // ERSPAN type I has no header and no sequence number; type II has
        // both (the S flag tells them apart, as Wireshark does).
        0x88be if seq => erspan2(rest),
        0x88be => Ok(Step::new(TunnelKind::Erspan2, None, Inner::Ethernet(rest))),
        0x22eb => erspan3(rest),
        0x880b => ppp(rest, id),
        _ => {
            let inner = ether_payload(protocol, rest)?;
            let mut step = Step::new(TunnelKind::Gre, id, inner);
            step.layer.ethernet = protocol == 0x6558;
            Ok(step)
        }
    }
}

/// ERSPAN type II: 8 bytes (version 1, VLAN, CoS, encapsulation, truncated
/// flag, 10-bit session id, index), then the mirrored Ethernet frame.
fn erspan2(b: &[u8]) -> Result<Step<'_>, DecodeError> {
    let (Some(h), Some(rest)) = (b.get(..8), b.get(8..)) else {
        return Err(DecodeError::ErspanTruncated);
    };
    if h[0] >> 4 != 1 {
        return Err(DecodeError::ErspanInvalid);
    }
    let session = u32::from(be16(&h[2..4]) & 0x03ff);
    let mut step = Step::new(TunnelKind::Erspan2, Some(session), Inner::Ethernet(rest));
    step.vlan = be16(&h[0..2]) & 0x0fff;
    Ok(step)
}

/// ERSPAN type III: 12 bytes (version 2, VLAN, CoS, BSO, T, session id,
/// timestamp, SGT, P, frame type, hardware id, direction, granularity, O),
/// then an 8-byte platform-specific subheader when O is set, then the
/// mirrored frame (Ethernet when the frame type is 0).
fn erspan3(b: &[u8]) -> Result<Step<'_>, DecodeError> {
    let Some(h) = b.get(..12) else {
        return Err(DecodeError::ErspanTruncated);
    };
    if h[0] >> 4 != 2 {
        return Err(DecodeError::ErspanInvalid);
    }
    let session = Some(u32::from(be16(&h[2..4]) & 0x03ff));
    let header_len = if h[11] & 0x01 != 0 { 20 } else { 12 };
    let Some(rest) = b.get(header_len..) else {
        return Err(DecodeError::ErspanTruncated);
    };
    let frame_type = (h[10] >> 2) & 0x1f;
    let inner = match frame_type {
        0 => Inner::Ethernet(rest),
        // 2: IP (no Ethernet header).
        2 => Inner::Ip(rest),
        _ => return Err(DecodeError::TunnelUnknownPayload),
    };
    let mut step = Step::new(TunnelKind::Erspan3, session, inner);
    step.vlan = be16(&h[0..2]) & 0x0fff;
    Ok(step)
}

/// PPP in GRE: optional address and control (0xff 0x03), then a protocol
/// of one byte (compressed, odd) or two.
fn ppp(b: &[u8], id: Option<u32>) -> Result<Step<'_>, DecodeError> {
    let b = match b {
        [0xff, 0x03, rest @ ..] => rest,
        _ => b,
    };
    let (protocol, rest) = match b {
        [p, rest @ ..] if p & 1 == 1 => (u16::from(*p), rest),
        [a, c, rest @ ..] => (u16::from_be_bytes([*a, *c]), rest),
        _ => return Err(DecodeError::GreTruncated),
    };
    let inner = match protocol {
        0x21 => Inner::EtherType(0x0800, rest),
        0x57 => Inner::EtherType(0x86dd, rest),
        0x281 => Inner::EtherType(mpls::UNICAST, rest),
        _ => return Err(DecodeError::TunnelUnknownPayload),
    };
    Ok(Step::new(TunnelKind::Gre, id, inner))
}

/// GTP-U version 1 (3GPP TS 29.281): flags (version 1, PT 1, E, S, PN),
/// message type, length, TEID; 4 more bytes when any of E, S, PN is set;
/// then the extension headers chained by their last byte. Only a G-PDU
/// (type 255) carries a user packet; echo and error messages are not a
/// tunnel (`None`).
fn gtpu(b: &[u8]) -> Option<Result<Step<'_>, DecodeError>> {
    let Some(h) = b.get(..8) else {
        return Some(Err(DecodeError::GtpuTruncated));
    };
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 {
        return Some(Err(DecodeError::GtpuInvalid));
    }
    if h[1] != 0xff {
        return None;
    }
    let teid = Some(be32(&h[4..8]));
    let mut at = 8;
    if h[0] & 0x07 != 0 {
        let Some(opt) = b.get(8..12) else {
            return Some(Err(DecodeError::GtpuTruncated));
        };
        at = 12;
        let mut next = if h[0] & 0x04 != 0 { opt[3] } else { 0 };
        while next != 0 {
            let Some(&words) = b.get(at) else {
                return Some(Err(DecodeError::GtpuTruncated));
            };
            if words == 0 {
                return Some(Err(DecodeError::GtpuInvalid));
            }
            let end = at + usize::from(words) * 4;
            let Some(&n) = b.get(end - 1) else {
                return Some(Err(DecodeError::GtpuTruncated));
            };
            next = n;
            at = end;
        }
    }
    let Some(rest) = b.get(at..) else {
        return Some(Err(DecodeError::GtpuTruncated));
    };
    Some(Ok(Step::new(TunnelKind::Gtpu, teid, Inner::Ip(rest))))
}

/// The MPLS step, built by [`mpls::parse`].
pub(super) fn mpls_step<'a>(labels: &[u32], inner: Inner<'a>) -> Step<'a> {
    let mut step = Step::new(TunnelKind::Mpls, labels.first().copied(), inner);
    for l in labels {
        if let Some(slot) = step.labels.get_mut(usize::from(step.label_count)) {
            *slot = *l;
            step.label_count += 1;
        }
    }
    step
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::eth_ipv4_tcp_syn as inner_frame;
    use super::super::{decode, decode_with, LinkType, MplsPayload};
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 packet 192.0.2.1 -> 192.0.2.2 of `protocol` around `payload`.
    fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
        let mut p = vec![
            0x45, 0, 0, 0, 0, 7, 0, 0, 64, protocol, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
        ];
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 1, 2, 3, 4, 5, 6];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn udp(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(8 + payload.len()).unwrap_or(0);
        let mut u = src.to_be_bytes().to_vec();
        u.extend_from_slice(&dst.to_be_bytes());
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn over_ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
        ethernet(0x0800, &ipv4(protocol, payload))
    }

    /// A VXLAN frame around the test SYN (for tests elsewhere in decode).
    pub(in crate::decode) fn a_vxlan_frame() -> Vec<u8> {
        vxlan_frame(42, &inner_frame())
    }

    fn vxlan_frame(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0x08, 0, 0, 0];
        v.extend_from_slice(&(vni << 8).to_be_bytes());
        v.extend_from_slice(inner);
        over_ipv4(17, &udp(49152, 4789, &v))
    }

    fn gre(flags: u8, protocol: u16, extra: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut g = vec![flags, 0];
        g.extend_from_slice(&protocol.to_be_bytes());
        g.extend_from_slice(extra);
        g.extend_from_slice(inner);
        g
    }

    /// Decodes a frame the test built (leaked: tests only, a few bytes).
    fn dec(f: Vec<u8>) -> Decoded<'static> {
        decode(LinkType::Ethernet, Box::leak(f.into_boxed_slice()))
    }

    fn dec_with(f: Vec<u8>, cfg: &DecodeConfig) -> Decoded<'static> {
        decode_with(LinkType::Ethernet, Box::leak(f.into_boxed_slice()), cfg)
    }

    fn assert_inner(d: &Decoded<'_>, kind: &str, id: Option<u32>) {
        assert_eq!(d.error, None, "{kind}");
        assert_eq!(d.ports(), Some((1234, 80)), "{kind}");
        assert_eq!(d.ip.map(|i| i.src.to_string()), Some("10.0.0.1".into()));
        assert_eq!(d.tunnels.type_name().as_deref(), Some(kind));
        assert_eq!(d.tunnels.id(), id, "{kind}");
    }

    #[test]
    fn vxlan_carries_the_inner_flow_and_outer_addresses() {
        let d = dec(vxlan_frame(5001, &inner_frame()));
        assert_inner(&d, "vxlan", Some(5001));
        let outer = d.tunnels.outer.map(|(s, d)| (s.to_string(), d.to_string()));
        assert_eq!(outer, Some(("192.0.2.1".into(), "192.0.2.2".into())));
        assert_ne!(d.tunnels.segment(), 0);
        // A port moni is not told about is plain UDP.
        let cfg = DecodeConfig {
            vxlan_ports: Cow::Owned(vec![9999]),
            ..DecodeConfig::DEFAULT
        };
        let d = dec_with(vxlan_frame(5001, &inner_frame()), &cfg);
        assert!(d.tunnels.is_empty());
        assert_eq!(d.ports(), Some((49152, 4789)));
    }

    #[test]
    fn vxlan_gpe_carries_ip() {
        let mut v = vec![0x0c, 0, 0, 1, 0, 0, 0x30, 0];
        v.extend_from_slice(&inner_frame()[14..]);
        let d = dec(over_ipv4(17, &udp(1, 4790, &v)));
        assert_inner(&d, "vxlan", Some(0x30));
    }

    #[test]
    fn geneve_options_are_skipped() {
        // Two words of options, protocol Ethernet, VNI 4242.
        let mut g = vec![
            0x02, 0, 0x65, 0x58, 0, 0x10, 0x92, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        g.extend_from_slice(&inner_frame());
        let d = dec(over_ipv4(17, &udp(47101, 6081, &g)));
        assert_inner(&d, "geneve", Some(4242));
        g[0] = 0x40; // version 1
        let d = dec(over_ipv4(17, &udp(47101, 6081, &g)));
        assert_eq!(d.error, Some(DecodeError::GeneveInvalid));
        assert_eq!(d.ports(), Some((47101, 6081)), "the outer layers stay");
    }

    #[test]
    fn gre_with_checksum_key_and_sequence() {
        // C, K and S: checksum + reserved, key 77, sequence 1.
        let extra = [0, 0, 0, 0, 0, 0, 0, 77, 0, 0, 0, 1];
        let g = gre(0xb0, 0x0800, &extra, &inner_frame()[14..]);
        let d = dec(over_ipv4(47, &g));
        assert_inner(&d, "gre", Some(77));
        // Plain GRE carrying Ethernet; NVGRE's VSID is the key's top 24 bits.
        let g = gre(0x20, 0x6558, &[0, 0, 0x13, 0x01], &inner_frame());
        let d = dec(over_ipv4(47, &g));
        assert_inner(&d, "gre", Some(0x1301));
        assert_eq!(d.tunnels.layers()[0].nvgre_vsid(), Some(0x13));
        // The VSID keeps tenants apart in the flow key, whatever the
        // key's low byte (NVGRE's flow id).
        let g2 = gre(0x20, 0x6558, &[0, 0, 0x14, 0x01], &inner_frame());
        let g3 = gre(0x20, 0x6558, &[0, 0, 0x13, 0x77], &inner_frame());
        let (s1, s2, s3) = (
            d.tunnels.segment(),
            dec(over_ipv4(47, &g2)).tunnels.segment(),
            dec(over_ipv4(47, &g3)).tunnels.segment(),
        );
        assert!(s1 != 0 && s1 != s2 && s1 == s3, "{s1:x} {s2:x} {s3:x}");
        // Cut inside the key.
        let d = dec(over_ipv4(47, &g[..6]));
        assert_eq!(d.error, Some(DecodeError::GreTruncated));
        assert_eq!(d.ip.map(|i| i.protocol), Some(47));
    }

    #[test]
    fn gre_v1_ppp_is_decoded() {
        let mut g = vec![0x30, 0x81, 0x88, 0x0b, 0, 40, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0];
        g.extend_from_slice(&[0xff, 0x03, 0x00, 0x21]);
        g.extend_from_slice(&inner_frame()[14..]);
        let d = dec(over_ipv4(47, &g));
        assert_inner(&d, "gre", Some(9));
    }

    #[test]
    fn erspan_type2_and_type3_give_the_session() {
        let mut e2 = vec![0x10, 0x05, 0x00, 0x2a, 0, 0, 0, 0];
        e2.extend_from_slice(&inner_frame());
        let g = gre(0x10, 0x88be, &[0, 0, 0, 1], &e2);
        let d = dec(over_ipv4(47, &g));
        assert_inner(&d, "erspan2", Some(42));
        assert_eq!(d.vlans(), &[5], "the mirrored frame's VLAN");
        let mut e3 = vec![0x20, 0x05, 0x03, 0xff, 1, 2, 3, 4, 0, 0, 0, 0x01];
        e3.extend_from_slice(&[0; 8]); // platform-specific subheader (O set)
        e3.extend_from_slice(&inner_frame());
        let g = gre(0x10, 0x22eb, &[0, 0, 0, 1], &e3);
        let d = dec(over_ipv4(47, &g));
        assert_inner(&d, "erspan3", Some(1023));
        // ERSPAN II with version 2 in its header is broken, not type III.
        e2[0] = 0x20;
        let g = gre(0x10, 0x88be, &[0, 0, 0, 1], &e2);
        let d = dec(over_ipv4(47, &g));
        assert_eq!(d.error, Some(DecodeError::ErspanInvalid));
    }

    #[test]
    fn mpls_stacks_by_payload_setting() {
        let labels = [0x00, 0x3e, 0x80, 0xff, 0x00, 0x06, 0x31, 0xff]; // 1000, 99 (bottom)
        let mut m = labels.to_vec();
        m.extend_from_slice(&inner_frame()[14..]);
        let d = dec(ethernet(0x8847, &m));
        assert_inner(&d, "mpls", Some(1000));
        assert_eq!(d.tunnels.mpls_labels(), &[1000, 99]);
        assert_eq!(d.tunnels.outer, None);
        // Pseudowire Ethernet with a control word.
        let mut pw = labels.to_vec();
        pw.extend_from_slice(&[0, 0, 0, 0]);
        pw.extend_from_slice(&inner_frame());
        let d = dec(ethernet(0x8847, &pw));
        assert_inner(&d, "mpls", Some(1000));
        let ip_only = DecodeConfig {
            mpls_payload: MplsPayload::Ip,
            ..DecodeConfig::DEFAULT
        };
        let d = dec_with(ethernet(0x8847, &pw), &ip_only);
        assert_eq!(d.error, Some(DecodeError::MplsUnknownPayload));
        assert_eq!(d.ip, None);
        // No bottom of stack.
        let d = dec(ethernet(0x8847, &labels[..4]));
        assert_eq!(d.error, Some(DecodeError::MplsTruncated));
        // MPLS inside GRE inside VXLAN: both layers, outermost first.
        let g = gre(0, 0x8847, &[], &m);
        let inner_gre = ethernet(0x0800, &ipv4(47, &g));
        let d = dec(vxlan_frame(7, &inner_gre));
        assert_inner(&d, "vxlan/gre/mpls", Some(1000));
    }

    /// An MPLS stack as bytes, bottom of stack set on the last label.
    fn mpls(labels: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            let bottom = u32::from(i + 1 == labels.len());
            m.extend_from_slice(&(l << 12 | bottom << 8 | 64).to_be_bytes());
        }
        m.extend_from_slice(payload);
        m
    }

    /// The VNet map's MPLS entries match each stack at its own layer: the
    /// innermost mapped layer wins across nested stacks (an outer stack's
    /// label used to win over a VNI inside it), and a label deep in a
    /// segment-routing stack is matched (only the first four were).
    #[test]
    fn mpls_labels_are_matched_at_their_own_layer_and_to_any_depth() {
        use crate::vnet::{parse_vnet_map_spec, Role, VnetMap};
        let m = parse_vnet_map_spec(
            "mpls:100=Outer:monitor,vxlan:5001=A:production,mpls:2005=SR:shadow",
        )
        .expect("spec");
        let map = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let name = |d: &Decoded<'_>| map.get(map.resolve_packet(d, None)).name.clone();
        // MPLS 100 / IP / VXLAN 5001 / Ethernet / MPLS 200 / IP.
        let inner_mpls = ethernet(0x8847, &mpls(&[200], &inner_frame()[14..]));
        let mut v = vec![0x08, 0, 0, 0];
        v.extend_from_slice(&(5001u32 << 8).to_be_bytes());
        v.extend_from_slice(&inner_mpls);
        let f = ethernet(0x8847, &mpls(&[100], &ipv4(17, &udp(49152, 4789, &v))));
        let d = dec(f);
        assert_eq!(d.tunnels.type_name().as_deref(), Some("mpls/vxlan/mpls"));
        assert_eq!(d.tunnels.mpls_labels_of(0).collect::<Vec<_>>(), [100]);
        assert_eq!(d.tunnels.mpls_labels_of(2).collect::<Vec<_>>(), [200]);
        assert_eq!(name(&d), "A");
        // A five-label stack with only the last label mapped.
        let d = dec(ethernet(
            0x8847,
            &mpls(&[2001, 2002, 2003, 2004, 2005], &inner_frame()[14..]),
        ));
        assert_eq!(d.tunnels.mpls_labels(), &[2001, 2002, 2003, 2004, 2005]);
        assert_eq!(name(&d), "SR");
        // Only the outer stack mapped: it names the VNet.
        let d = dec(ethernet(0x8847, &mpls(&[100, 7], &inner_frame()[14..])));
        assert_eq!(name(&d), "Outer");
    }

    #[test]
    fn gtpu_with_extension_headers() {
        // E and S set, next extension 0x85 (PDU session container, 1 word).
        let mut g = vec![
            0x36, 0xff, 0, 0, 0, 0, 0x10, 0x01, 0, 1, 0, 0x85, 1, 0, 9, 0,
        ];
        g.extend_from_slice(&inner_frame()[14..]);
        let d = dec(over_ipv4(17, &udp(2152, 2152, &g)));
        assert_inner(&d, "gtpu", Some(0x1001));
        // An echo request is not a tunnel and not an error.
        let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
        let d = dec(over_ipv4(17, &udp(2152, 2152, &echo)));
        assert!(d.tunnels.is_empty());
        assert_eq!(d.error, None);
        // A zero-length extension header.
        g[12] = 0;
        let d = dec(over_ipv4(17, &udp(2152, 2152, &g)));
        assert_eq!(d.error, Some(DecodeError::GtpuInvalid));
    }

    #[test]
    fn ip_in_ip_both_versions() {
        let d = dec(over_ipv4(4, &inner_frame()[14..]));
        assert_inner(&d, "ipip", None);
        // IPv4 in IPv6.
        let inner = &inner_frame()[14..];
        let mut v6 = vec![0x60, 0, 0, 0];
        v6.extend_from_slice(&u16::try_from(inner.len()).unwrap_or(0).to_be_bytes());
        v6.extend_from_slice(&[41, 64]);
        v6.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(inner);
        let d = dec(ethernet(0x86dd, &v6));
        assert_inner(&d, "ipip", None);
        assert_eq!(
            d.tunnels.outer.map(|(s, _)| s.to_string()),
            Some("2001:db8::1".into())
        );
    }

    #[test]
    fn vlan_tags_inside_the_tunnel_follow_the_outer_ones() {
        let mut tagged = inner_frame()[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0, 0, 30]);
        tagged.extend_from_slice(&inner_frame()[12..]);
        let mut f = vxlan_frame(1, &tagged);
        f.splice(12..12, [0x81, 0, 0, 5]);
        let d = dec(f.to_vec());
        assert_eq!(d.vlans(), &[5, 30]);
        assert_inner(&d, "vxlan", Some(1));
    }

    /// GRE inside GRE, `depth` times, around the TCP SYN.
    fn nested_gre(depth: usize) -> Vec<u8> {
        let mut p = inner_frame()[14..].to_vec();
        for _ in 0..depth {
            p = ipv4(47, &gre(0, 0x0800, &[], &p));
        }
        ethernet(0x0800, &p)
    }

    #[test]
    fn nesting_stops_at_the_depth_limit() {
        let d = dec(nested_gre(4));
        assert_inner(&d, "gre/gre/gre/gre", None);
        let d = dec(nested_gre(100));
        assert_eq!(d.error, Some(DecodeError::TunnelTooDeep));
        assert_eq!(d.tunnels.layers().len(), 4);
        assert_eq!(d.ip.map(|i| i.protocol), Some(47));
        let deeper = DecodeConfig {
            max_tunnel_depth: 200,
            ..DecodeConfig::DEFAULT
        };
        let d = dec_with(nested_gre(100), &deeper);
        assert_eq!(d.error, Some(DecodeError::TunnelTooDeep));
        assert_eq!(d.tunnels.layers().len(), MAX_TUNNEL_LAYERS);
    }

    #[test]
    fn a_broken_inner_packet_keeps_the_outer_layers() {
        let d = dec(vxlan_frame(9, &inner_frame()[..20]));
        assert_eq!(d.error, Some(DecodeError::IpTruncated));
        assert_eq!(d.ports(), Some((49152, 4789)));
        assert!(d.tunnels.is_empty());
        // ARP inside: no IP, no error, the outer flow.
        let arp = ethernet(0x0806, &[0; 28]);
        let d = dec(vxlan_frame(9, &arp));
        assert_eq!(d.error, None);
        assert_eq!(d.ports(), Some((49152, 4789)));
        // ARP straight in GRE and in Geneve (protocol 0x0806): the same.
        let d = dec(over_ipv4(47, &gre(0, 0x0806, &[], &[0; 28])));
        assert_eq!((d.error, d.ip.map(|i| i.protocol)), (None, Some(47)));
        let mut g = vec![0, 0, 0x08, 0x06, 0, 0, 1, 0];
        g.extend_from_slice(&[0; 28]);
        let d = dec(over_ipv4(17, &udp(49152, 6081, &g)));
        assert_eq!((d.error, d.ports()), (None, Some((49152, 6081))));
        // A DNS query from source port 2152 is not GTP-U (nor an error).
        let dns = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        let d = dec(over_ipv4(17, &udp(2152, 53, &dns)));
        assert_eq!((d.error, d.ports()), (None, Some((2152, 53))));
        assert!(d.tunnels.is_empty());
    }

    /// One valid frame of each kind of tunnel this decoder reads.
    pub(in crate::decode) fn valid_tunnel_frames() -> Vec<Vec<u8>> {
        let inner = inner_frame();
        let mut geneve = vec![0x01, 0, 0x65, 0x58, 0, 0, 1, 0, 0, 0, 0, 0];
        geneve.extend_from_slice(&inner);
        let mut e2 = vec![0x10, 0x05, 0x00, 0x2a, 0, 0, 0, 0];
        e2.extend_from_slice(&inner);
        let mut gtp = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0, 9, 0];
        gtp.extend_from_slice(&inner[14..]);
        let mut mpls = vec![0, 0x10, 0x01, 0xff];
        mpls.extend_from_slice(&inner[14..]);
        vec![
            vxlan_frame(5001, &inner),
            over_ipv4(17, &udp(1, 6081, &geneve)),
            over_ipv4(47, &gre(0xb0, 0x0800, &[0; 12], &inner[14..])),
            over_ipv4(47, &gre(0x10, 0x88be, &[0, 0, 0, 1], &e2)),
            over_ipv4(17, &udp(2152, 2152, &gtp)),
            ethernet(0x8847, &mpls),
            over_ipv4(4, &inner[14..]),
            nested_gre(3),
        ]
    }

    #[test]
    fn the_fuzz_seeds_decode() {
        for f in valid_tunnel_frames() {
            let d = dec(f.to_vec());
            assert_eq!(d.ports(), Some((1234, 80)), "{f:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(4096),
            ..ProptestConfig::default()
        })]

        /// Any bytes behind each tunnel's outer headers.
        #[test]
        fn any_tunnel_payload_never_panics(
            kind in 0usize..8,
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let f = match kind {
                0 => over_ipv4(17, &udp(1, 4789, &bytes)),
                1 => over_ipv4(17, &udp(1, 4790, &bytes)),
                2 => over_ipv4(17, &udp(1, 6081, &bytes)),
                3 => over_ipv4(17, &udp(2152, 2152, &bytes)),
                4 => over_ipv4(47, &bytes),
                5 => ethernet(0x8847, &bytes),
                6 => over_ipv4(4, &bytes),
                _ => over_ipv4(41, &bytes),
            };
            for payload in [MplsPayload::Auto, MplsPayload::Ethernet, MplsPayload::Ip] {
                let cfg = DecodeConfig { mpls_payload: payload, ..DecodeConfig::DEFAULT };
                let d = dec_with(f.to_vec(), &cfg);
                prop_assert!(d.tunnels.layers().len() <= 4);
                prop_assert!(d.vlan_count <= 3);
            }
        }

        /// Valid tunnel frames with a few bytes changed and cut anywhere.
        #[test]
        fn mutated_tunnel_frames_never_panic(
            which in 0usize..8,
            mutations in proptest::collection::vec((0usize..160, any::<u8>()), 0..6),
            cut in 0usize..200,
        ) {
            let frames = valid_tunnel_frames();
            let mut f = frames[which % frames.len()].clone();
            for (pos, byte) in mutations {
                if let Some(b) = f.get_mut(pos) {
                    *b = byte;
                }
            }
            f.truncate(cut);
            let d = dec(f.to_vec());
            prop_assert!(d.tunnels.layers().len() <= 4);
            prop_assert_eq!(d.clone(), super::super::decode_general(LinkType::Ethernet, &f));
            // The pre-check that spares untunnelled packets the call
            // never turns away a packet the decoder would decapsulate.
            let outer = super::super::decode_link(LinkType::Ethernet, &f);
            let cfg = DecodeConfig::DEFAULT;
            prop_assert!(may_be_tunnel(&outer, &cfg) || next_layer(&outer, &cfg).is_none());
        }

        /// The VXLAN shortcut (`vxlan_ethernet_ipv4`) decodes as the general
        /// loop does, on VXLAN frames (inner VLAN tags, nested VXLAN,
        /// broken and cut ones included).
        #[test]
        fn the_vxlan_shortcut_agrees_with_the_general_loop(
            vni in 0u32..(1 << 24),
            inner_vlans in 0usize..3,
            nested in any::<bool>(),
            mutations in proptest::collection::vec((0usize..140, any::<u8>()), 0..4),
            cut in 40usize..200,
        ) {
            let mut inner = inner_frame();
            for _ in 0..inner_vlans {
                let mut tagged = inner[..12].to_vec();
                tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
                tagged.extend_from_slice(&inner[12..]);
                inner = tagged;
            }
            let mut f = vxlan_frame(vni, &inner);
            if nested {
                f = vxlan_frame(vni ^ 1, &f);
            }
            for (pos, byte) in mutations {
                if let Some(b) = f.get_mut(pos) {
                    *b = byte;
                }
            }
            f.truncate(cut);
            let frame: &'static [u8] = Box::leak(f.into_boxed_slice());
            let cfg = DecodeConfig::DEFAULT;
            let shortcut = decode_with(LinkType::Ethernet, frame, &cfg);
            let mut general = super::super::decode_link(LinkType::Ethernet, frame);
            if may_be_tunnel(&general, &cfg) {
                general_layers(&mut general, &cfg, 0);
            }
            prop_assert_eq!(shortcut, general);
        }
    }
}
