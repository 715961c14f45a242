//! RTCP compound packets (RFC 3550 §6.4, RFC 3611 §4.7): sender and
//! receiver report blocks and the XR VoIP metrics block.
//!
//! Contract: [`parse_compound`] accepts any byte sequence and never panics;
//! it returns the reports of every complete packet before the first
//! malformed one.

/// One report block: what the reporter received from `source`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReportBlock {
    pub reporter: u32,
    pub source: u32,
    /// Fraction lost since the previous report, 0..1.
    pub fraction_lost: f64,
    /// Cumulative packets lost (signed 24-bit).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR from `source`.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// What an RTCP compound packet says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rtcp {
    /// Sender reports: (sender SSRC, middle 32 bits of its NTP time).
    pub sender_reports: Vec<(u32, u32)>,
    pub blocks: Vec<ReportBlock>,
    pub voip_metrics: Vec<VoipMetrics>,
}

/// The quality part of an XR VoIP metrics block (RFC 3611 §4.7); 127
/// (unavailable) reads as `None`: (reporter, source, R factor, MOS-LQ,
/// MOS-CQ).
pub type VoipMetrics = (u32, u32, Option<u8>, Option<f64>, Option<f64>);

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn report_block(reporter: u32, b: &[u8]) -> Option<ReportBlock> {
    let lost = be32(b, 4)?;
    let cumulative = ((lost & 0x00ff_ffff) << 8) as i32 >> 8;
    Some(ReportBlock {
        reporter,
        source: be32(b, 0)?,
        fraction_lost: f64::from(lost >> 24) / 256.0,
        cumulative_lost: cumulative,
        highest_seq: be32(b, 8)?,
        jitter: be32(b, 12)?,
        lsr: be32(b, 16)?,
        dlsr: be32(b, 20)?,
    })
}

/// Parses an RTCP compound packet.
pub fn parse_compound(mut b: &[u8]) -> Rtcp {
    let mut out = Rtcp::default();
    while b.len() >= 4 {
        if b[0] >> 6 != 2 {
            break;
        }
        let count = usize::from(b[0] & 0x1f);
        let pt = b[1];
        let len = (usize::from(u16::from_be_bytes([b[2], b[3]])) + 1) * 4;
        let Some(pkt) = b.get(..len) else { break };
        let Some(ssrc) = be32(pkt, 4) else { break };
        match pt {
            200 => {
                if let Some(ntp) = be32(pkt, 10).map(|_| {
                    // Middle 32 bits of the 64-bit NTP timestamp at 8..16.
                    u32::from_be_bytes([pkt[10], pkt[11], pkt[12], pkt[13]])
                }) {
                    out.sender_reports.push((ssrc, ntp));
                }
                for i in 0..count {
                    if let Some(rb) = pkt.get(28 + 24 * i..).and_then(|x| report_block(ssrc, x)) {
                        out.blocks.push(rb);
                    }
                }
            }
            201 => {
                for i in 0..count {
                    if let Some(rb) = pkt.get(8 + 24 * i..).and_then(|x| report_block(ssrc, x)) {
                        out.blocks.push(rb);
                    }
                }
            }
            207 => {
                let mut at = 8;
                while let (Some(&bt), Some(blen)) = (
                    pkt.get(at),
                    pkt.get(at + 2..at + 4)
                        .map(|x| (usize::from(u16::from_be_bytes([x[0], x[1]])) + 1) * 4),
                ) {
                    if bt == 7 && blen >= 36 {
                        if let Some(blk) = pkt.get(at..at + 36) {
                            let opt = |v: u8| (v != 127).then_some(v);
                            // RFC 3611 4.7.5: MOS in tenths, 10 to 50; 127 is
                            // "unavailable", and anything else from the wire
                            // is no MOS either.
                            let mos = |v: u8| (10..=50).contains(&v).then_some(f64::from(v) / 10.0);
                            out.voip_metrics.push((
                                ssrc,
                                be32(blk, 4).unwrap_or(0),
                                opt(blk[24]),
                                mos(blk[26]),
                                mos(blk[27]),
                            ));
                        }
                    }
                    at += blen;
                }
            }
            _ => {}
        }
        b = &b[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rr(reporter: u32, source: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&reporter.to_be_bytes());
        p.extend_from_slice(&source.to_be_bytes());
        p.extend_from_slice(&[64, 0xff, 0xff, 0xfe]); // 25 % lost, cumulative -2
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&80u32.to_be_bytes());
        p.extend_from_slice(&lsr.to_be_bytes());
        p.extend_from_slice(&dlsr.to_be_bytes());
        p
    }

    #[test]
    fn reads_receiver_report_blocks() {
        let r = parse_compound(&rr(1, 2, 0xabcd, 0x8000));
        assert_eq!(r.blocks.len(), 1);
        let b = r.blocks[0];
        assert_eq!(
            (b.reporter, b.source, b.jitter, b.lsr, b.dlsr),
            (1, 2, 80, 0xabcd, 0x8000)
        );
        assert_eq!(b.cumulative_lost, -2);
        assert!((b.fraction_lost - 0.25).abs() < 1e-9);
    }

    #[test]
    fn reads_sender_reports_and_xr_voip_metrics() {
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&9u32.to_be_bytes());
        sr.extend_from_slice(&[0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0]); // NTP
        sr.extend_from_slice(&[0; 12]);
        let mut xr = vec![0x80, 207, 0, 10];
        xr.extend_from_slice(&9u32.to_be_bytes());
        let mut blk = vec![7, 0, 0, 8];
        blk.extend_from_slice(&5u32.to_be_bytes());
        blk.extend_from_slice(&[0; 16]);
        blk.extend_from_slice(&[90, 127, 41, 39, 0, 0, 0, 0, 0, 0, 0, 0]); // R 90, MOS 4.1/3.9
        xr.extend_from_slice(&blk);
        let r = parse_compound(&[sr, xr].concat());
        assert_eq!(r.sender_reports, vec![(9, 0x3456_7800 >> 8 | 0x1200_0000)]);
        assert_eq!(r.voip_metrics, vec![(9, 5, Some(90), Some(4.1), Some(3.9))]);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_compound(&b);
        }
    }
}
