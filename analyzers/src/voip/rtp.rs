//! RTP and RTCP wire views (RFC 3550 §5.1, §6.4).
//!
//! Contract: [`RtpHeader::parse`] accepts any byte sequence and never
//! panics; it returns `None` unless the bytes hold a complete version-2 RTP
//! header (CSRCs and header extension included) whose payload type is not
//! in the RTCP range.

/// A parsed RTP fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Bytes of header (fixed + CSRC + extension).
    pub header_len: usize,
}

impl RtpHeader {
    pub fn parse(b: &[u8]) -> Option<RtpHeader> {
        let first = *b.first()?;
        if first >> 6 != 2 || b.len() < 12 {
            return None;
        }
        let payload_type = b[1] & 0x7f;
        // 72-76 collide with RTCP packet types 200-204 when the marker is set.
        if (72..=76).contains(&payload_type) {
            return None;
        }
        let csrc = usize::from(first & 0x0f);
        let mut header_len = 12 + 4 * csrc;
        if first & 0x10 != 0 {
            let ext = b.get(header_len + 2..header_len + 4)?;
            header_len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        if header_len > b.len() {
            return None;
        }
        Some(RtpHeader {
            marker: b[1] & 0x80 != 0,
            payload_type,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            header_len,
        })
    }
}

/// Whether the bytes start like an RTCP compound packet (version 2, packet
/// type SR/RR/SDES/BYE/APP/RTPFB/PSFB/XR).
pub fn looks_like_rtcp(b: &[u8]) -> bool {
    b.len() >= 8 && b[0] >> 6 == 2 && (200..=207).contains(&b[1])
}

/// Whether the bytes are a whole RTCP compound packet: one or more
/// version-2 packets of a known type (SR, RR, SDES, BYE, APP, RTPFB, PSFB,
/// XR) whose length fields add up to the datagram. A DNS message or
/// random UDP passes the first-byte test of [`looks_like_rtcp`] now and
/// then; it almost never passes this.
pub fn is_rtcp_compound(mut b: &[u8]) -> bool {
    if !looks_like_rtcp(b) {
        return false;
    }
    // Fewer than 4 bytes after the last packet are tolerated: some stacks
    // pad the datagram (SIP_CALL_RTP_G711.pcap ends 4 compounds with 2).
    while b.len() >= 4 {
        if b[0] >> 6 != 2 || !(200..=207).contains(&b[1]) {
            return false;
        }
        let len = (usize::from(u16::from_be_bytes([b[2], b[3]])) + 1) * 4;
        let Some(rest) = b.get(len..) else {
            return false;
        };
        b = rest;
    }
    true
}

/// RTP clock rate of a static payload type (RFC 3551 tables 4 and 5), if
/// known. G.722 uses 8000 by RFC 3551's historical error.
pub fn static_clock_rate(payload_type: u8) -> Option<u32> {
    match payload_type {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        16 => Some(11025),
        17 => Some(22050),
        // Video: CelB, JPEG, nv, H261, MPV, MP2T, H263.
        25 | 26 | 28 | 31 | 32 | 33 | 34 => Some(90_000),
        _ => None,
    }
}

/// Encoding name of a static payload type (RFC 3551), for the `codec` column.
pub fn static_codec_name(payload_type: u8) -> Option<&'static str> {
    Some(match payload_type {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        8 => "PCMA",
        9 => "G722",
        13 => "CN",
        15 => "G728",
        18 => "G729",
        31 => "H261",
        34 => "H263",
        _ => return None,
    })
}

/// A video stream: a static video payload type of RFC 3551 (CelB, JPEG,
/// nv, H261, MPV, MP2T, H263) or a video encoding an SDP named. The
/// E-model rates voice only.
pub fn is_video(payload_type: u8, codec: &str) -> bool {
    const VIDEO: &[&str] = &[
        "H261",
        "H263",
        "H263-1998",
        "H263-2000",
        "H264",
        "H264-SVC",
        "H265",
        "VP8",
        "VP9",
        "AV1",
        "JPEG",
        "MPV",
        "MP2T",
        "CELB",
        "NV",
        "THEORA",
    ];
    matches!(payload_type, 25 | 26 | 28 | 31..=34)
        || VIDEO.iter().any(|v| v.eq_ignore_ascii_case(codec))
}

/// Comfort noise (RFC 3389, PT 13) or the old CN payload type 19.
pub fn is_comfort_noise(payload_type: u8) -> bool {
    payload_type == 13 || payload_type == 19
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut b = vec![0x80, pt];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend_from_slice(&[0xd5; 160]);
        b
    }

    #[test]
    fn parses_a_pcmu_packet() {
        let h = RtpHeader::parse(&packet(0x80, 7, 160, 0xdead_beef)).expect("rtp");
        assert!(h.marker);
        assert_eq!(h.payload_type, 0);
        assert_eq!((h.sequence, h.timestamp, h.ssrc), (7, 160, 0xdead_beef));
        assert_eq!(h.header_len, 12);
    }

    #[test]
    fn rejects_rtcp_wrong_version_and_short_headers() {
        let mut rtcp = packet(200, 0, 0, 1);
        assert!(RtpHeader::parse(&rtcp).is_none());
        assert!(looks_like_rtcp(&rtcp));
        rtcp[0] = 0x40;
        assert!(RtpHeader::parse(&rtcp).is_none());
        assert!(RtpHeader::parse(&packet(0, 1, 1, 1)[..11]).is_none());
        // Extension announced but missing.
        let mut ext = packet(0, 1, 1, 1)[..12].to_vec();
        ext[0] |= 0x10;
        assert!(RtpHeader::parse(&ext).is_none());
    }

    #[test]
    fn compound_rtcp_lengths_must_add_up() {
        // RR with no block (8 bytes) + SDES of 12 bytes.
        let mut rr = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        rr.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'a', 0]);
        assert!(is_rtcp_compound(&rr));
        assert!(!is_rtcp_compound(&rr[..rr.len() - 1]));
        let mut longer = rr.clone();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        assert!(!is_rtcp_compound(&longer));
        // A DNS response whose id and flags happen to read 0x80 0xC8.
        let dns = [
            0x80, 0xc8, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
        ];
        assert!(looks_like_rtcp(&dns));
        assert!(!is_rtcp_compound(&dns));
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(h) = RtpHeader::parse(&b) {
                prop_assert!(h.header_len <= b.len());
            }
            let _ = looks_like_rtcp(&b);
            let _ = is_rtcp_compound(&b);
        }
    }
}
