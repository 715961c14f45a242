//! RTCP state per (VNet, leg, media SSRC): the recent sender reports by
//! NTP time, and what report blocks and XR VoIP metrics said of the stream
//! (round trip measured at the probe, far-end loss, jitter and MOS).
//! Bounded: at most `max` sources, the oldest evicted.
//!
//! The leg (the two IP addresses, either way round) is part of the key
//! because one SSRC can be seen on several legs: a media relay or B2BUA
//! that forwards RTP without rewriting the SSRC (the corpus's
//! `SIP_CALL_RTP_G711.pcap`: 204 ↔ 196 ↔ 199). Keyed by SSRC alone, the
//! round trip measured on one leg was reported for the stream on the
//! other, and which one won depended on packet order; it also made the
//! result depend on `--workers`, since the shard hash (the address pair)
//! puts the two legs in different workers. Keyed by leg, a stream takes
//! the RTCP of its own leg, which is always in its own worker.

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::flow::key::Endpoint;
use crate::record::RtcpView;
use crate::time::Timestamp;
use crate::vnet::VnetId;
use crate::voip::rtcp;

/// The two IP addresses of a leg, either way round (ports ignored: RTCP
/// runs on the RTP port + 1, or another port `a=rtcp` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Leg(Endpoint, Endpoint);

impl Leg {
    /// The leg between `a` and `b`, whatever their order and ports.
    pub(super) fn new(a: Endpoint, b: Endpoint) -> Leg {
        let (a, b) = (Endpoint { port: 0, ..a }, Endpoint { port: 0, ..b });
        if a <= b {
            Leg(a, b)
        } else {
            Leg(b, a)
        }
    }

    /// The leg between two addresses.
    pub(super) fn of(a: std::net::IpAddr, b: std::net::IpAddr) -> Leg {
        Leg::new(Endpoint::new(a, 0), Endpoint::new(b, 0))
    }
}

type Key = (VnetId, Leg, u32);

#[derive(Clone, Debug, Default)]
pub(super) struct RtcpState {
    sender_reports: VecDeque<(u32, Timestamp)>,
    pub(super) view: RtcpView,
    /// Jitter in timestamp units, converted with the stream's clock.
    remote_jitter_units: Option<u32>,
}

/// The RTCP state of every source, capped.
#[derive(Debug)]
pub(super) struct RtcpTable {
    states: HashMap<Key, RtcpState, foldhash::fast::RandomState>,
    order: VecDeque<Key>,
    max: usize,
}

impl RtcpTable {
    pub(super) fn new(max: usize) -> RtcpTable {
        RtcpTable {
            states: HashMap::default(),
            order: VecDeque::new(),
            max,
        }
    }

    /// A new cap (for new sources).
    pub(super) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The latest round trip of `ssrc` on `leg`, ms.
    pub(super) fn rtt_ms(&self, vnet: VnetId, leg: Leg, ssrc: u32) -> Option<f64> {
        self.states
            .get(&(vnet, leg, ssrc))
            .and_then(|st| st.view.rtt_ms)
    }

    fn state(&mut self, key: Key) -> &mut RtcpState {
        if !self.states.contains_key(&key) {
            if self.states.len() >= self.max.max(1) {
                while let Some(old) = self.order.pop_front() {
                    if self.states.remove(&old).is_some() {
                        break;
                    }
                }
            }
            self.order.push_back(key);
        }
        self.states.entry(key).or_default()
    }

    /// Learns from an RTCP compound packet: sender reports are remembered
    /// by their NTP time; a report block echoing one gives the round trip
    /// (RFC 3550 §6.4.1, measured at the probe), plus the far end's loss
    /// and jitter; an XR VoIP metrics block gives its own MOS.
    pub(super) fn report(&mut self, ts: Timestamp, vnet: VnetId, leg: Leg, r: &rtcp::Rtcp) {
        for &(ssrc, ntp) in &r.sender_reports {
            let st = self.state((vnet, leg, ssrc));
            st.sender_reports.push_back((ntp, ts));
            if st.sender_reports.len() > 8 {
                st.sender_reports.pop_front();
            }
        }
        for b in &r.blocks {
            let st = self.state((vnet, leg, b.source));
            if b.lsr != 0 {
                if let Some(&(_, t_sr)) = st.sender_reports.iter().find(|(n, _)| *n == b.lsr) {
                    let rtt_ms = ts.micros_since(t_sr) as f64 / 1000.0
                        - f64::from(b.dlsr) * 1000.0 / 65536.0;
                    if rtt_ms >= 0.0 {
                        st.view.rtt_ms = Some(rtt_ms);
                    }
                }
            }
            st.view.remote_fraction_lost = Some(b.fraction_lost);
            st.view.remote_cumulative_lost = Some(i64::from(b.cumulative_lost));
            st.remote_jitter_units = Some(b.jitter);
        }
        for &(_, source, _, _, mos_cq) in &r.voip_metrics {
            if let Some(m) = mos_cq {
                self.state((vnet, leg, source)).view.remote_mos_cq = Some(m);
            }
        }
    }

    /// The RTCP view of a stream on `leg`, jitter converted with its clock
    /// rate.
    pub(super) fn view(&self, vnet: VnetId, leg: Leg, ssrc: u32, clock: Option<u32>) -> RtcpView {
        let Some(st) = self.states.get(&(vnet, leg, ssrc)) else {
            return RtcpView::default();
        };
        let mut v = st.view;
        v.remote_jitter_ms = match (st.remote_jitter_units, clock) {
            (Some(j), Some(rate)) if rate > 0 => Some(f64::from(j) * 1000.0 / f64::from(rate)),
            _ => None,
        };
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voip::rtcp::{ReportBlock, Rtcp};

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("address")
    }

    fn leg() -> Leg {
        Leg::of(ip("192.0.2.1"), ip("192.0.2.2"))
    }

    fn block(source: u32, lsr: u32, dlsr: u32) -> ReportBlock {
        ReportBlock {
            reporter: 2,
            source,
            fraction_lost: 0.25,
            cumulative_lost: 7,
            highest_seq: 100,
            jitter: 80,
            lsr,
            dlsr,
        }
    }

    #[test]
    fn a_block_echoing_a_sender_report_gives_the_round_trip() {
        let mut t = RtcpTable::new(10);
        let v = VnetId(0);
        let sr = Rtcp {
            sender_reports: vec![(1, 0xABCD_0000)],
            ..Rtcp::default()
        };
        t.report(Timestamp(1_000_000), v, leg(), &sr);
        // Echoed 130 ms later after a 0.5 s hold (DLSR in 1/65536 s).
        let rr = Rtcp {
            blocks: vec![block(1, 0xABCD_0000, 32_768)],
            voip_metrics: vec![(2, 1, Some(90), Some(4.1), Some(4.0))],
            ..Rtcp::default()
        };
        t.report(Timestamp(1_630_000), v, leg(), &rr);
        assert!((t.rtt_ms(v, leg(), 1).expect("rtt") - 130.0).abs() < 1e-9);
        let view = t.view(v, leg(), 1, Some(8000));
        assert_eq!(view.remote_fraction_lost, Some(0.25));
        assert_eq!(view.remote_cumulative_lost, Some(7));
        assert_eq!(view.remote_jitter_ms, Some(10.0));
        assert_eq!(view.remote_mos_cq, Some(4.0));
        // Without a clock the jitter cannot be converted.
        assert_eq!(t.view(v, leg(), 1, None).remote_jitter_ms, None);
        // An unknown LSR gives no round trip.
        t.report(
            Timestamp(2_000_000),
            v,
            leg(),
            &Rtcp {
                blocks: vec![block(9, 0x1234_0000, 0)],
                ..Rtcp::default()
            },
        );
        assert_eq!(t.rtt_ms(v, leg(), 9), None);
    }

    #[test]
    fn the_table_is_capped() {
        let mut t = RtcpTable::new(3);
        for ssrc in 0..10u32 {
            let sr = Rtcp {
                sender_reports: vec![(ssrc, ssrc)],
                ..Rtcp::default()
            };
            t.report(Timestamp(i64::from(ssrc)), VnetId(0), leg(), &sr);
        }
        assert_eq!(t.states.len(), 3);
        assert!(t.states.contains_key(&(VnetId(0), leg(), 9)));
        assert!(!t.states.contains_key(&(VnetId(0), leg(), 0)));
    }

    /// A relay that keeps the SSRC (SIP_CALL_RTP_G711.pcap: 204 <-> 196
    /// <-> 199) shows one SSRC on two legs, each with its own RTCP: each
    /// leg's stream gets its own leg's round trip, whatever came last, and
    /// a leg is the same either way round and whatever the ports.
    #[test]
    fn each_leg_of_a_relayed_ssrc_keeps_its_own_round_trip() {
        let mut t = RtcpTable::new(10);
        let v = VnetId(0);
        let (relay, a, b) = (ip("200.57.7.196"), ip("200.57.7.204"), ip("200.57.7.199"));
        let (leg_a, leg_b) = (Leg::of(a, relay), Leg::of(relay, b));
        assert_eq!(leg_a, Leg::of(relay, a));
        assert_eq!(
            Leg::new(Endpoint::new(a, 8001), Endpoint::new(relay, 40377)),
            Leg::new(Endpoint::new(relay, 40376), Endpoint::new(a, 8000)),
        );
        assert_ne!(leg_a, leg_b);
        let ssrc = 3_535_621_694;
        let sr = |ntp| Rtcp {
            sender_reports: vec![(ssrc, ntp)],
            ..Rtcp::default()
        };
        let rr = |ntp| Rtcp {
            blocks: vec![block(ssrc, ntp, 0)],
            ..Rtcp::default()
        };
        // Leg A: 2 ms; then leg B, with the relay's own sender report: 1 ms.
        t.report(Timestamp(1_000_000), v, leg_a, &sr(0x10_0000));
        t.report(Timestamp(1_002_000), v, leg_a, &rr(0x10_0000));
        t.report(Timestamp(1_500_000), v, leg_b, &sr(0x20_0000));
        t.report(Timestamp(1_501_000), v, leg_b, &rr(0x20_0000));
        assert_eq!(t.rtt_ms(v, leg_a, ssrc), Some(2.0));
        assert_eq!(t.rtt_ms(v, leg_b, ssrc), Some(1.0));
        assert_eq!(t.view(v, leg_a, ssrc, Some(8000)).rtt_ms, Some(2.0));
        // A block echoing a sender report seen only on the other leg gives
        // no round trip.
        t.report(Timestamp(1_600_000), v, leg_b, &rr(0x10_0000));
        assert_eq!(t.rtt_ms(v, leg_b, ssrc), Some(1.0));
        // Nothing is known of the SSRC on a third leg.
        assert_eq!(t.rtt_ms(v, Leg::of(a, b), ssrc), None);
    }
}
