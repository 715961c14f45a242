//! Wraps a scenario's VLAN-tagged VNets in overlay tunnels: each frame
//! tagged with a mapped VLAN loses its tag and travels inside VXLAN,
//! Geneve, GRE (keyed, carrying Ethernet), ERSPAN type II or an MPLS
//! pseudowire whose id names the VNet instead. The inner frames, and so
//! the truth of flows, streams and calls, are unchanged; only the frames
//! grow by the outer headers.

use crate::scenario::Scenario;

/// The encapsulation to wrap in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// UDP 4789, the id is the VNI.
    Vxlan,
    /// UDP 6081, the id is the VNI.
    Geneve,
    /// GRE with the key flag, protocol 0x6558; the id is the key.
    Gre,
    /// GRE with a sequence number, protocol 0x88BE, ERSPAN type II; the id
    /// is the session (10 bits).
    Erspan2,
    /// An MPLS label (the id, 20 bits) and a pseudowire control word, then
    /// the Ethernet frame (RFC 4448).
    Mpls,
}

impl Encap {
    /// The largest id this encapsulation carries: 24-bit VNIs, 10-bit
    /// ERSPAN sessions, 20-bit MPLS labels, 32-bit GRE keys.
    pub fn max_id(self) -> u32 {
        match self {
            Encap::Vxlan | Encap::Geneve => (1 << 24) - 1,
            Encap::Gre => u32::MAX,
            Encap::Erspan2 => (1 << 10) - 1,
            Encap::Mpls => (1 << 20) - 1,
        }
    }

    /// The VNet map kind that names this encapsulation's id.
    pub fn map_kind(self) -> &'static str {
        match self {
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
            Encap::Gre => "gre",
            Encap::Erspan2 => "erspan",
            Encap::Mpls => "mpls",
        }
    }
}

const OUTER_MACS: [u8; 12] = [2, 0, 0, 0, 0, 0xfe, 2, 0, 0, 0, 0, 0xfd];

fn outer_ipv4(protocol: u8, payload: &[u8], ip_id: u16) -> Vec<u8> {
    let mut f = OUTER_MACS.to_vec();
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip.extend_from_slice(&[172, 16, 0, 1, 172, 16, 0, 2]);
    let sum = crate::frame::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// `inner` (an Ethernet frame) wrapped in `encap` with `id`; `n` numbers
/// the packet (IP id, sequence numbers, UDP source port entropy).
pub fn wrap_frame(encap: Encap, id: u32, inner: &[u8], n: u32) -> Vec<u8> {
    let sport = 49152 | (n as u16 & 0x3fff);
    match encap {
        Encap::Vxlan => {
            let mut v = vec![0x08, 0, 0, 0];
            v.extend_from_slice(&(id << 8).to_be_bytes());
            v.extend_from_slice(inner);
            outer_ipv4(17, &udp(sport, 4789, &v), n as u16)
        }
        Encap::Geneve => {
            let mut g = vec![0, 0, 0x65, 0x58];
            g.extend_from_slice(&(id << 8).to_be_bytes());
            g.extend_from_slice(inner);
            outer_ipv4(17, &udp(sport, 6081, &g), n as u16)
        }
        Encap::Gre => {
            let mut g = vec![0x20, 0, 0x65, 0x58];
            g.extend_from_slice(&id.to_be_bytes());
            g.extend_from_slice(inner);
            outer_ipv4(47, &g, n as u16)
        }
        Encap::Erspan2 => {
            let mut g = vec![0x10, 0, 0x88, 0xbe];
            g.extend_from_slice(&n.to_be_bytes());
            let session = (id & 0x3ff) as u16;
            g.extend_from_slice(&[0x10, 0x00]);
            g.extend_from_slice(&session.to_be_bytes());
            g.extend_from_slice(&[0, 0, 0, 0]);
            g.extend_from_slice(inner);
            outer_ipv4(47, &g, n as u16)
        }
        Encap::Mpls => {
            let mut f = OUTER_MACS.to_vec();
            f.extend_from_slice(&[0x88, 0x47]);
            let entry = (id & 0x000f_ffff) << 12 | 0x100 | 64;
            f.extend_from_slice(&entry.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0]);
            f.extend_from_slice(inner);
            f
        }
    }
}

/// `s` with each frame tagged with a VLAN of `ids` (VLAN, tunnel id) moved
/// into `encap` with that id; other frames are kept as they are.
pub fn wrap(s: &Scenario, encap: Encap, ids: &[(u16, u32)]) -> Scenario {
    let mut out = s.clone();
    out.name = format!("{}-{}", s.name, encap.map_kind());
    for (n, p) in out.packets.iter_mut().enumerate() {
        let f = &p.frame;
        if f.len() < 18 || f[12..14] != [0x81, 0x00] {
            continue;
        }
        let vlan = u16::from_be_bytes([f[14], f[15]]) & 0x0fff;
        let Some(&(_, id)) = ids.iter().find(|(v, _)| *v == vlan) else {
            continue;
        };
        let mut inner = f[..12].to_vec();
        inner.extend_from_slice(&f[16..]);
        let wrapped = wrap_frame(encap, id, &inner, n as u32);
        // The wire length grows by what the wrapping added to the bytes.
        let grown = wrapped.len() as i64 - f.len() as i64;
        p.orig_len = u32::try_from(i64::from(p.orig_len) + grown).unwrap_or(p.orig_len);
        p.frame = wrapped;
    }
    out
}

/// Copies the classic little-endian pcap at `input` (as [`crate::pcap`]
/// writes it) to `output` with every frame wrapped in `encap` with `id`:
/// the tunnelled twin of a capture, for the benchmark and the committed
/// tunnel samples. `max_frames` stops after that many frames. Returns the
/// frames copied.
pub fn wrap_pcap_file(
    input: &std::path::Path,
    output: &std::path::Path,
    encap: Encap,
    id: u32,
    max_frames: Option<u64>,
) -> std::io::Result<u64> {
    map_pcap_file(input, output, max_frames, |frame, n| {
        wrap_frame(encap, id, frame, n)
    })
}

/// The first `frames` frames of the pcap at `input`, unchanged, in
/// `output`: the untunnelled source of a sample made with
/// `wrap_pcap_file(…, Some(frames))`.
pub fn head_pcap_file(
    input: &std::path::Path,
    output: &std::path::Path,
    frames: u64,
) -> std::io::Result<u64> {
    map_pcap_file(input, output, Some(frames), |frame, _| frame.to_vec())
}

/// Copies up to `max_frames` frames of a little-endian microsecond pcap,
/// each through `f(frame, index)`; the wire length grows by what `f`
/// added.
fn map_pcap_file(
    input: &std::path::Path,
    output: &std::path::Path,
    max_frames: Option<u64>,
    mut f: impl FnMut(&[u8], u32) -> Vec<u8>,
) -> std::io::Result<u64> {
    use std::io::{Error, ErrorKind, Read};
    let mut r = std::io::BufReader::new(std::fs::File::open(input)?);
    let mut header = [0u8; 24];
    r.read_exact(&mut header).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => Error::new(
            ErrorKind::InvalidData,
            "shorter than a pcap file header (24 bytes)",
        ),
        _ => e,
    })?;
    if header[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "not a little-endian microsecond pcap",
        ));
    }
    let mut w = crate::pcap::PcapWriter::create(output)?;
    let mut n = 0u64;
    let mut rec = [0u8; 16];
    let mut frame = Vec::new();
    while max_frames.is_none_or(|m| n < m) {
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let word = |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
        let (secs, micros, caplen, orig) = (word(0), word(4), word(8), word(12));
        if caplen > 262_144 {
            return Err(Error::new(ErrorKind::InvalidData, "record too long"));
        }
        frame.resize(caplen as usize, 0);
        r.read_exact(&mut frame)?;
        let wrapped = f(&frame, n as u32);
        let grown = (wrapped.len() - frame.len().min(wrapped.len())) as u32;
        let ts = i64::from(secs) * 1_000_000 + i64::from(micros);
        w.write(ts, &wrapped, orig.saturating_add(grown))?;
        n += 1;
    }
    w.finish()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_short_input_is_named_as_such() {
        let dir = std::env::temp_dir().join(format!("moni-wrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
        for bytes in [&b""[..], &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0][..]] {
            std::fs::write(&input, bytes).expect("write");
            let e = wrap_pcap_file(&input, &output, Encap::Vxlan, 1, None).expect_err("refused");
            assert_eq!(e.to_string(), "shorter than a pcap file header (24 bytes)");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
