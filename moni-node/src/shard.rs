//! Which worker analyses a packet.
//!
//! The hash is symmetric in the two IP addresses and ignores ports and
//! VLANs: both directions of a flow, the later fragments of a datagram
//! (which carry no ports), RTP with its RTCP, and the copies of one call in
//! a production and a shadow VNet (same inner addresses, other VLAN) all
//! meet in one worker, which is what flows, fragments and the
//! shadow/production comparison need.

use std::net::IpAddr;

use analyzers::Decoded;

fn fold(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(29)
        }
    }
}

/// splitmix64's finaliser: spreads neighbouring addresses over workers.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The worker (0..workers) for a decoded packet; frames without IP go to 0.
pub fn worker_for(d: &Decoded<'_>, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let Some(ip) = d.ip else { return 0 };
    // The first fragment of a tunnel packet goes where its later fragments
    // go (they carry only the outer addresses), so that one worker can
    // reassemble the datagram.
    let (src, dst) = match d.tunnels.outer {
        Some(outer) if d.tunnels.outer_fragment => outer,
        _ => (ip.src, ip.dst),
    };
    let h = mix(fold(src)).wrapping_add(mix(fold(dst)));
    ((u128::from(h) * workers as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use analyzers::decode::Fragment;
    use analyzers::decode::{IpLayer, Transport};

    fn packet(src: &str, dst: &str, vlan: u16) -> Decoded<'static> {
        let mut d = Decoded::failed(analyzers::DecodeError::IpInvalid);
        d.error = None;
        d.vlan_ids = [vlan, 0, 0];
        d.vlan_count = 1;
        d.ip = Some(IpLayer {
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            protocol: 17,
            fragment: Fragment::None,
        });
        d.transport = Transport::Udp {
            src_port: 4000,
            dst_port: 5000,
        };
        d
    }

    #[test]
    fn both_directions_and_both_vnets_meet() {
        for w in [2, 3, 8] {
            for i in 0..200u32 {
                let a = format!("10.0.{}.{}", i / 250, i % 250);
                let b = format!("2001:db8::{i:x}");
                let c = "192.0.2.7";
                let x = worker_for(&packet(&a, c, 100), w);
                assert_eq!(x, worker_for(&packet(c, &a, 200), w));
                assert!(x < w);
                let y = worker_for(&packet(&b, "2001:db8::1", 100), w);
                assert_eq!(y, worker_for(&packet("2001:db8::1", &b, 300), w));
            }
        }
    }

    /// The first fragment of a tunnel packet is decapsulated (inner
    /// addresses), its later fragments are not (outer addresses): both go
    /// to the worker of the outer addresses, which reassembles them.
    #[test]
    fn a_tunnel_packets_fragments_meet() {
        let outer = (
            "192.0.2.1".parse().expect("addr"),
            "192.0.2.2".parse().expect("addr"),
        );
        let mut found_apart = false;
        for i in 0..64u32 {
            let inner = format!("10.1.0.{i}");
            let mut first = packet(&inner, "10.2.0.1", 0);
            let mut t = analyzers::decode::Tunnels::EMPTY;
            t.outer = Some(outer);
            t.outer_fragment = true;
            first.tunnels = analyzers::decode::TunnelStack(Some(Box::new(t)));
            let later = packet("192.0.2.1", "192.0.2.2", 0);
            assert_eq!(worker_for(&first, 8), worker_for(&later, 8));
            // Unfragmented, the same packet goes by its inner addresses.
            t.outer_fragment = false;
            first.tunnels = analyzers::decode::TunnelStack(Some(Box::new(t)));
            found_apart |= worker_for(&first, 8) != worker_for(&later, 8);
        }
        assert!(found_apart);
    }

    #[test]
    fn load_spreads_over_workers() {
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let a = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            counts[worker_for(&packet(&a, "10.255.0.1", 1), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
