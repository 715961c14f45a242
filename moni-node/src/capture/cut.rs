//! The kernel's cut of each captured frame: how many of its bytes the
//! kernel copies into moni-node's ring.
//!
//! Why: on a mirror port that is a veth (a software switch's mirror, the
//! lab's), the kernel copies each mirrored frame into the ring in the
//! sender's context, on production's CPU. A TCP stream at full speed
//! through the lab's production path kept 0.84-0.93 of its rate with
//! moni-node copying the first 1,522 bytes of each mirrored frame, and
//! 0.95, as much as with the mirror alone, when the kernel copied the
//! headers only (docs/lab.md). Without signature rules nothing in moni
//! reads a TCP segment's payload except SIP's (flows, bins and the
//! detectors read headers, lengths come from the frame's wire length), so
//! by default ([`TcpPayload::Auto`]) the kernel keeps the headers of
//! TCP segments and the whole of everything else: UDP (RTP, SIP, DNS,
//! tunnels), ICMP (the quoted probe), fragments, IPv6 with extension
//! headers, frames with a second VLAN tag, and TCP on the SIP ports.
//!
//! The cut is the return value of a classic BPF program attached to the
//! capture socket: the kernel copies at most that many bytes. libpcap
//! compiles the operator's filter (`[[sources]] filter`) for the same
//! socket; the cut is appended to it, each of its accepting returns
//! replaced by a jump to the cut. The program reads the frame as the
//! kernel hands it to a packet socket on an Ethernet port, where the
//! outer VLAN tag is already out of the frame (libpcap puts it back in
//! the copy) and a frame too short for a load would end the program with
//! 0 (dropped unseen): every load is guarded, and a frame the program
//! cannot read is kept whole, to be counted by the decoder.

/// Whether the kernel may cut TCP payload (`[[sources]] tcp_payload`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpPayload {
    /// Headers only while no signature rules are loaded, except on the
    /// SIP ports (`[rtp] sip_ports`); whole (up to the snaplen) while
    /// rules are loaded.
    #[default]
    Auto,
    /// Always up to the snaplen.
    Always,
}

/// One classic BPF instruction (`struct sock_filter`, `struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// The classic BPF opcodes used here (linux/filter.h, net/bpf.h).
const LD_W_LEN: u16 = 0x80; // BPF_LD | BPF_W | BPF_LEN: A = frame length
const LD_H_ABS: u16 = 0x28; // A = u16 at k
const LD_B_ABS: u16 = 0x30; // A = u8 at k
const LD_H_IND: u16 = 0x48; // A = u16 at X + k
const LD_B_IND: u16 = 0x50; // A = u8 at X + k
const LDX_B_MSH: u16 = 0xb1; // X = 4 * (u8 at k & 0xf)
const LDX_IMM: u16 = 0x01; // X = k
const TXA: u16 = 0x87; // A = X
const ALU_ADD_K: u16 = 0x04;
const ALU_ADD_X: u16 = 0x0c;
const ALU_SUB_X: u16 = 0x1c;
const ALU_LSH_K: u16 = 0x64;
const ALU_RSH_K: u16 = 0x74;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;

/// The most ports the program compares with (each costs two
/// instructions, and a conditional jump reaches 255 ahead at most).
pub const MAX_KEPT_PORTS: usize = 32;

/// Where a conditional jump goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    /// The program's end, `ret #snaplen`: the frame up to the snaplen.
    Whole,
    /// A label placed with [`Asm::label`].
    Label(u8),
}

/// A small assembler: forward jumps to labels, resolved at the end.
struct Asm {
    code: Vec<(Insn, To, To)>,
    labels: [Option<usize>; 4],
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((
            Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            To::Next,
            To::Next,
        ));
    }

    fn jump(&mut self, code: u16, k: u32, t: To, f: To) {
        self.code.push((
            Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            t,
            f,
        ));
    }

    fn label(&mut self, l: u8) {
        self.labels[usize::from(l)] = Some(self.code.len());
    }

    /// The instructions, ending in `ret #whole`; `None` if a jump would
    /// not reach.
    fn finish(mut self, whole: u32) -> Option<Vec<Insn>> {
        let end = self.code.len();
        self.op(RET_K, whole);
        let labels = self.labels;
        let target = |to: To, at: usize| -> Option<u8> {
            let t = match to {
                To::Next => return Some(0),
                To::Whole => end,
                To::Label(l) => labels[usize::from(l)]?,
            };
            u8::try_from(t.checked_sub(at + 1)?).ok()
        };
        self.code
            .iter()
            .enumerate()
            .map(|(i, &(mut insn, t, f))| {
                insn.jt = target(t, i)?;
                insn.jf = target(f, i)?;
                Some(insn)
            })
            .collect()
    }
}

const IPV4: u8 = 0;
const IPV6: u8 = 1;
const TCP: u8 = 2;

/// The cut on its own: TCP segments (IPv4 without fragmentation, IPv6
/// without extension headers, neither on a port of `keep_ports`) to the
/// end of their TCP header, everything else up to `snaplen`. `None` when
/// `keep_ports` has more than [`MAX_KEPT_PORTS`] ports.
pub fn headers_only_tcp(snaplen: u32, keep_ports: &[u16]) -> Option<Vec<Insn>> {
    if keep_ports.len() > MAX_KEPT_PORTS {
        return None;
    }
    let mut a = Asm {
        code: Vec::new(),
        labels: [None; 4],
    };
    // Ethernet and the smallest IPv4 header are there.
    a.op(LD_W_LEN, 0);
    a.jump(JGE_K, 14 + 20, To::Next, To::Whole);
    a.op(LD_H_ABS, 12);
    a.jump(JEQ_K, 0x0800, To::Label(IPV4), To::Next);
    a.jump(JEQ_K, 0x86dd, To::Label(IPV6), To::Whole);
    a.label(IPV4);
    a.op(LD_B_ABS, 14 + 9);
    a.jump(JEQ_K, 6, To::Next, To::Whole);
    // A fragment (more to come, or not the first) is kept whole: the
    // reassembly needs all of it.
    a.op(LD_H_ABS, 14 + 6);
    a.jump(JSET_K, 0x3fff, To::Whole, To::Next);
    a.op(LDX_B_MSH, 14);
    a.op(TXA, 0);
    // A header length below 20 is the decoder's to count.
    a.jump(JGE_K, 20, To::Label(TCP), To::Whole);
    a.label(IPV6);
    a.op(LD_W_LEN, 0);
    a.jump(JGE_K, 14 + 40, To::Next, To::Whole);
    a.op(LD_B_ABS, 14 + 6);
    a.jump(JEQ_K, 6, To::Next, To::Whole);
    a.op(LDX_IMM, 40);
    // X is the IP header's length: the TCP header starts at 14 + X.
    a.label(TCP);
    a.op(LD_W_LEN, 0);
    a.op(ALU_SUB_X, 0);
    a.jump(JGE_K, 14 + 20, To::Next, To::Whole);
    for at in [14, 16] {
        if !keep_ports.is_empty() {
            a.op(LD_H_IND, at);
            for &p in keep_ports {
                a.jump(JEQ_K, u32::from(p), To::Whole, To::Next);
            }
        }
    }
    a.op(LD_B_IND, 14 + 12);
    a.op(ALU_RSH_K, 4);
    a.op(ALU_LSH_K, 2);
    a.jump(JGE_K, 20, To::Next, To::Whole);
    a.op(ALU_ADD_X, 0);
    a.op(ALU_ADD_K, 14);
    a.jump(JGT_K, snaplen, To::Whole, To::Next);
    a.op(RET_A, 0);
    a.finish(snaplen)
}

/// `filter` (libpcap's program for the operator's filter) with the cut
/// after it: each return of a non-zero length (an accepted frame) becomes
/// a jump to `cut`. `None` if the filter returns a computed length (not
/// libpcap's way) or the whole is too long for the kernel.
pub fn after_filter(filter: &[Insn], cut: &[Insn]) -> Option<Vec<Insn>> {
    let n = filter.len();
    let mut out = Vec::with_capacity(n + cut.len());
    for (i, insn) in filter.iter().enumerate() {
        out.push(match insn.code {
            RET_K if insn.k != 0 => Insn {
                code: JA,
                jt: 0,
                jf: 0,
                k: u32::try_from(n - i - 1).ok()?,
            },
            RET_A => return None,
            _ => *insn,
        });
    }
    out.extend_from_slice(cut);
    // BPF_MAXINSNS
    (out.len() <= 4096).then_some(out)
}

/// Reads libpcap's instruction as `pcap` prints it ("code jt jf k").
pub fn parse_insn(text: &str) -> Option<Insn> {
    let mut f = text.split_whitespace();
    let insn = Insn {
        code: f.next()?.parse().ok()?,
        jt: f.next()?.parse().ok()?,
        jf: f.next()?.parse().ok()?,
        k: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(insn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpcap's own interpreter (`bpf_filter`, the one `tcpdump -r`
    /// filters with) runs the programs: it returns what the kernel's
    /// would for these opcodes, and 0 for a load past the frame's end.
    fn run(prog: &[Insn], frame: &[u8]) -> u32 {
        crate::sys::run_filter(prog, frame)
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, frag: u16, options: usize, l4: &[u8]) -> Vec<u8> {
        let ihl = 5 + options / 4;
        let total = (ihl * 4 + l4.len()) as u16;
        let mut h = vec![0x40 | ihl as u8, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 1]);
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.extend(std::iter::repeat_n(1u8, options));
        h.extend_from_slice(l4);
        eth(0x0800, &h)
    }

    fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend(std::iter::repeat_n(0u8, 32));
        h.extend_from_slice(l4);
        eth(0x86dd, &h)
    }

    fn tcp(sport: u16, dport: u16, options: usize, payload: usize) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&[0; 8]);
        t.push((((20 + options) / 4) as u8) << 4);
        t.extend_from_slice(&[0x18, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend(std::iter::repeat_n(1u8, options));
        t.extend(std::iter::repeat_n(b'x', payload));
        t
    }

    const SNAP: u32 = 1522;

    #[test]
    fn tcp_is_cut_after_its_header_and_everything_else_is_kept() {
        let cut = headers_only_tcp(SNAP, &[5060]).expect("fits");
        // IPv4 TCP, with and without IP and TCP options: the end of the
        // TCP header.
        assert_eq!(
            run(&cut, &ipv4(6, 0x4000, 0, &tcp(40000, 443, 0, 1400))),
            54
        );
        assert_eq!(
            run(&cut, &ipv4(6, 0, 8, &tcp(40000, 443, 12, 1400))),
            14 + 28 + 32
        );
        // A segment without payload: its whole length.
        assert_eq!(run(&cut, &ipv4(6, 0, 0, &tcp(40000, 443, 0, 0))), 54);
        // IPv6 TCP.
        assert_eq!(run(&cut, &ipv6(6, &tcp(40000, 80, 12, 1000))), 14 + 40 + 32);
        // SIP over TCP, either direction: whole.
        assert_eq!(run(&cut, &ipv4(6, 0, 0, &tcp(5060, 40000, 0, 700))), SNAP);
        assert_eq!(run(&cut, &ipv6(6, &tcp(40000, 5060, 0, 700))), SNAP);
        // UDP, ICMP, fragments, extension headers, ARP, a second VLAN
        // tag, MPLS: whole.
        let udp = [0u8; 200];
        assert_eq!(run(&cut, &ipv4(17, 0, 0, &udp)), SNAP);
        assert_eq!(run(&cut, &ipv4(1, 0, 0, &udp)), SNAP);
        assert_eq!(run(&cut, &ipv4(6, 0x2000, 0, &tcp(1, 2, 0, 500))), SNAP);
        assert_eq!(run(&cut, &ipv4(6, 0x0010, 0, &[7; 500])), SNAP);
        assert_eq!(run(&cut, &ipv6(0, &tcp(1, 2, 0, 500))), SNAP);
        assert_eq!(run(&cut, &eth(0x0806, &[0; 28])), SNAP);
        assert_eq!(
            run(&cut, &eth(0x8100, &ipv4(6, 0, 0, &tcp(1, 2, 0, 500))[12..])),
            SNAP
        );
        assert_eq!(run(&cut, &eth(0x8847, &[0; 100])), SNAP);
    }

    #[test]
    fn a_frame_the_program_cannot_read_is_kept_whole_never_dropped() {
        let cut = headers_only_tcp(SNAP, &[5060]).expect("fits");
        let whole = ipv4(6, 0, 0, &tcp(40000, 443, 0, 100));
        // Every length a truncated or malformed frame can have: never 0.
        for n in 0..=whole.len() {
            let r = run(&cut, &whole[..n]);
            assert!(r > 0, "{n} bytes: dropped");
            assert!(r == SNAP || r == 54, "{n} bytes: {r}");
        }
        let v6 = ipv6(6, &tcp(40000, 443, 0, 100));
        for n in 0..=v6.len() {
            assert!(run(&cut, &v6[..n]) > 0, "IPv6, {n} bytes: dropped");
        }
        // Header lengths below the minimum: the decoder counts them.
        let mut bad_ihl = whole.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(run(&cut, &bad_ihl), SNAP);
        let mut bad_doff = whole.clone();
        bad_doff[14 + 20 + 12] = 0x40;
        assert_eq!(run(&cut, &bad_doff), SNAP);
        // A header longer than the snaplen: the snaplen.
        let short = headers_only_tcp(64, &[]).expect("fits");
        assert_eq!(run(&short, &ipv4(6, 0, 40, &tcp(1, 2, 40, 100))), 64);
        assert_eq!(run(&short, &ipv4(6, 0, 0, &tcp(1, 2, 0, 100))), 54);
    }

    #[test]
    fn the_ports_to_keep_are_every_one_given_and_their_number_is_capped() {
        let ports: Vec<u16> = (0..MAX_KEPT_PORTS as u16).map(|i| 5060 + i).collect();
        let cut = headers_only_tcp(SNAP, &ports).expect("fits");
        for &p in &ports {
            assert_eq!(run(&cut, &ipv4(6, 0, 0, &tcp(p, 40000, 0, 300))), SNAP);
            assert_eq!(run(&cut, &ipv4(6, 0, 0, &tcp(40000, p, 0, 300))), SNAP);
        }
        assert_eq!(run(&cut, &ipv4(6, 0, 0, &tcp(40000, 80, 0, 300))), 54);
        let none = headers_only_tcp(SNAP, &[]).expect("fits");
        assert_eq!(run(&none, &ipv4(6, 0, 0, &tcp(5060, 40000, 0, 300))), 54);
        let too_many: Vec<u16> = (0..=MAX_KEPT_PORTS as u16).collect();
        assert!(headers_only_tcp(SNAP, &too_many).is_none());
    }

    #[test]
    fn the_cut_follows_the_operators_filter() {
        // libpcap's program for "tcp port 443 or udp", as it compiles it
        // for an Ethernet handle.
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("dead handle");
        let prog = cap.compile("tcp port 443 or udp", true).expect("compiles");
        let filter: Vec<Insn> = prog
            .get_instructions()
            .iter()
            .map(|i| parse_insn(&i.to_string()).expect("four numbers"))
            .collect();
        assert!(filter.iter().any(|i| i.code == RET_K && i.k != 0));
        let cut = headers_only_tcp(SNAP, &[5060]).expect("fits");
        let both = after_filter(&filter, &cut).expect("fits");
        // Accepted and cut; accepted and whole; rejected.
        assert_eq!(run(&both, &ipv4(6, 0, 0, &tcp(40000, 443, 0, 1000))), 54);
        assert_eq!(run(&both, &ipv4(17, 0, 0, &[0; 100])), SNAP);
        assert_eq!(run(&both, &ipv4(6, 0, 0, &tcp(40000, 80, 0, 1000))), 0);
        assert_eq!(run(&both, &ipv4(1, 0, 0, &[0; 100])), 0);
        // The filter alone accepts what it did.
        assert!(run(&filter, &ipv4(6, 0, 0, &tcp(40000, 443, 0, 1000))) > 0);
        assert!(parse_insn("6 0 0").is_none());
        assert!(parse_insn("6 0 0 1 2").is_none());
    }
}
