//! Just enough SIP and SDP to learn which media endpoints a call announces.
//!
//! Tolerant by design: any byte sequence is accepted; lines may end in CRLF
//! or LF; header names are case-insensitive and compact forms are known
//! (`i` Call-ID, `c` Content-Type, `l` Content-Length). Only the SDP media
//! lines moni needs are read: `c=`, `m=audio`, `a=rtpmap`, `a=ptime`,
//! `a=rtcp-mux`.

use std::net::IpAddr;

/// What one SIP message says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipMessage {
    /// Request method (`INVITE`, `BYE`, ...) or `None` for a response.
    pub method: Option<String>,
    /// Response status code.
    pub status: Option<u16>,
    pub call_id: Option<String>,
    /// CSeq number and method.
    pub cseq: Option<(u32, String)>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub media: Vec<Media>,
}

/// One `m=audio` section of an SDP body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub addr: IpAddr,
    pub port: u16,
    pub payload_types: Vec<u8>,
    /// `a=rtpmap` entries: payload type, encoding name, clock rate.
    pub rtpmap: Vec<(u8, String, u32)>,
    pub ptime_ms: Option<u32>,
    pub rtcp_mux: bool,
}

impl Media {
    /// Clock rate and encoding name of a payload type, from rtpmap.
    pub fn rtpmap_of(&self, pt: u8) -> Option<(&str, u32)> {
        self.rtpmap
            .iter()
            .find(|(p, _, _)| *p == pt)
            .map(|(_, n, r)| (n.as_str(), *r))
    }
}

const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "PRACK",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// Whether a payload starts like a SIP message: a status line
/// (`SIP/2.0 NNN`) or a request line (a known method, a space, and the
/// line ending in `SIP/2.0`). SIP on ports no one configured (a B2BUA on
/// 5062 and 15060, a phone called on 10270) is found by this, as
/// Wireshark's heuristic finds it. Cheap on media: an RTP packet's first
/// byte (0x80 and up) is no letter.
pub fn looks_like_sip(b: &[u8]) -> bool {
    sip_start_line(b).is_some()
}

/// The start line of a SIP message, in pieces (what the signatures'
/// `sip.*` buffers hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartLine<'a> {
    /// The whole line, without its line end.
    pub line: &'a [u8],
    /// `SIP/2.0`.
    pub protocol: &'a [u8],
    /// A request's method and URI.
    pub request: Option<(&'a [u8], &'a [u8])>,
    /// A response's status code (three digits) and reason phrase.
    pub response: Option<(&'a [u8], &'a [u8])>,
}

/// The start line of the SIP message `b` starts with, if it starts like
/// one ([`looks_like_sip`]); the line ends at the first line end or after
/// 1,024 bytes.
pub fn sip_start_line(b: &[u8]) -> Option<StartLine<'_>> {
    if !b.first().is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    let head = &b[..b.len().min(1024)];
    let line_end = head.iter().position(|&c| c == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit))?;
        let reason = rest[3..].strip_prefix(b" ").unwrap_or(&rest[3..]);
        return Some(StartLine {
            line,
            protocol: &line[..7],
            request: None,
            response: Some((code, reason)),
        });
    }
    let space = line.iter().take(10).position(|&c| c == b' ')?;
    if !METHODS.iter().any(|m| m.as_bytes() == &line[..space]) {
        return None;
    }
    let trimmed = line.trim_ascii_end();
    let uri_end = trimmed.strip_suffix(b"SIP/2.0")?.len();
    let uri = line
        .get(space + 1..uri_end)
        .unwrap_or_default()
        .trim_ascii();
    if uri.is_empty() {
        return None;
    }
    Some(StartLine {
        line,
        protocol: &trimmed[uri_end..],
        request: Some((&line[..space], uri)),
        response: None,
    })
}

/// Parses a SIP message from a UDP payload or TCP segment; `None` if it
/// does not start like one.
pub fn parse_sip(b: &[u8]) -> Option<SipMessage> {
    let start = sip_start_line(b)?;
    let mut msg = SipMessage::default();
    if let Some((code, _)) = start.response {
        msg.status = std::str::from_utf8(code).ok()?.parse().ok();
    }
    if let Some((method, _)) = start.request {
        msg.method = Some(String::from_utf8_lossy(method).into_owned());
    }
    let text = String::from_utf8_lossy(b);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    lines.next();
    // Headers, with folded continuation lines joined.
    let mut headers: Vec<String> = Vec::new();
    let mut body_lines = Vec::new();
    let mut in_body = false;
    for line in lines {
        if in_body {
            body_lines.push(line);
        } else if line.is_empty() {
            in_body = true;
        } else if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            headers.push(line.to_string());
        }
    }
    for h in &headers {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "call-id" | "i" => msg.call_id = Some(value),
            "from" | "f" => msg.from = Some(value),
            "to" | "t" => msg.to = Some(value),
            "cseq" => {
                let mut it = value.split_whitespace();
                if let (Some(n), Some(m)) = (it.next().and_then(|n| n.parse().ok()), it.next()) {
                    msg.cseq = Some((n, m.to_string()));
                }
            }
            _ => {}
        }
    }
    msg.media = parse_sdp(&body_lines);
    Some(msg)
}

/// Reads the audio media sections of an SDP body.
pub fn parse_sdp(lines: &[&str]) -> Vec<Media> {
    let mut session_addr: Option<IpAddr> = None;
    let mut media: Vec<Media> = Vec::new();
    let mut current: Option<Media> = None;
    let mut in_audio = false;
    for line in lines {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("c=") {
            let addr = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok());
            match (&mut current, addr) {
                (Some(m), Some(a)) if in_audio => m.addr = a,
                (None, Some(a)) => session_addr = Some(a),
                _ => {}
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            if let Some(done) = current.take() {
                media.push(done);
            }
            let mut it = m.split_whitespace();
            in_audio = it.next() == Some("audio");
            let port = it
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse::<u16>().ok());
            let _proto = it.next();
            let pts = it.filter_map(|p| p.parse::<u8>().ok()).collect();
            if let (true, Some(port)) = (in_audio, port) {
                current = Some(Media {
                    addr: session_addr.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                    port,
                    payload_types: pts,
                    rtpmap: Vec::new(),
                    ptime_ms: None,
                    rtcp_mux: false,
                });
            }
        } else if let (Some(m), Some(a)) = (current.as_mut(), line.strip_prefix("a=")) {
            if let Some(map) = a.strip_prefix("rtpmap:") {
                let mut it = map.split_whitespace();
                let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                let enc = it.next().map(|e| e.split('/').collect::<Vec<_>>());
                if let (Some(pt), Some(enc)) = (pt, enc) {
                    if let (Some(name), Some(rate)) =
                        (enc.first(), enc.get(1).and_then(|r| r.parse::<u32>().ok()))
                    {
                        // Encoding names are case-insensitive (RFC 4566):
                        // a static codec's is written as RFC 3551 does, so
                        // one call's two directions do not read `PCMA` and
                        // `pcma`.
                        let name = (0..=34)
                            .filter_map(crate::voip::rtp::static_codec_name)
                            .find(|n| n.eq_ignore_ascii_case(name))
                            .unwrap_or(name);
                        m.rtpmap.push((pt, name.to_string(), rate));
                    }
                }
            } else if let Some(p) = a.strip_prefix("ptime:") {
                m.ptime_ms = p.trim().parse().ok();
            } else if a == "rtcp-mux" {
                m.rtcp_mux = true;
            }
        }
    }
    if let Some(done) = current {
        media.push(done);
    }
    // A session-level c= after m= lines is invalid SDP; keep what we have.
    media.retain(|m| m.port != 0 && !m.addr.is_unspecified());
    media
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
i: abc@10.0.0.1\r\n\
CSeq: 1\r\n INVITE\r\n\
c: application/sdp\r\n\
\r\n\
v=0\r\n\
o=- 1 1 IN IP4 10.0.0.1\r\n\
c=IN IP4 10.0.0.1\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 pcmu/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n\
m=video 40002 RTP/AVP 96\r\n";

    #[test]
    fn sip_is_told_from_other_payloads_by_its_first_line() {
        assert!(looks_like_sip(
            b"INVITE sip:bob@example.com SIP/2.0\r\nVia: x\r\n"
        ));
        assert!(looks_like_sip(b"SIP/2.0 180 Ringing\r\n"));
        assert!(looks_like_sip(b"BYE sip:a@[fd17::1]:5062 SIP/2.0\n"));
        for not in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n"[..],
            b"INVITE someone to lunch\r\n",
            b"SIP/2.0 abc",
            b"\x80\x00\x01\x02rtp",
            b"",
            b"INVITEsip:x SIP/2.0",
        ] {
            assert!(!looks_like_sip(not), "{not:?}");
        }
    }

    #[test]
    fn reads_compact_and_folded_headers_and_the_audio_media() {
        let m = parse_sip(INVITE.as_bytes()).expect("sip");
        assert_eq!(m.method.as_deref(), Some("INVITE"));
        assert_eq!(m.call_id.as_deref(), Some("abc@10.0.0.1"));
        assert_eq!(m.cseq, Some((1, "INVITE".to_string())));
        assert!(m.from.as_deref().is_some_and(|f| f.contains("tag=1")));
        assert_eq!(m.media.len(), 1);
        let a = &m.media[0];
        assert_eq!(a.addr.to_string(), "10.0.0.1");
        assert_eq!((a.port, a.ptime_ms), (40000, Some(20)));
        assert_eq!(a.payload_types, vec![0, 8, 101]);
        assert_eq!(a.rtpmap_of(101), Some(("telephone-event", 8000)));
        // A static codec's name as RFC 3551 writes it, whatever the case.
        assert_eq!(a.rtpmap_of(0), Some(("PCMU", 8000)));
    }

    #[test]
    fn responses_and_garbage() {
        let r = parse_sip(b"SIP/2.0 180 Ringing\nCall-ID: x\n\n").expect("response");
        assert_eq!(r.status, Some(180));
        assert!(r.media.is_empty());
        assert!(parse_sip(b"GET / HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_sip(b"SIP/2.0 abc\r\n").is_none());
        assert!(parse_sip(&[0xff, 0xfe, 0x00]).is_none());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_sip(&b);
        }

        #[test]
        fn any_truncation_of_an_invite_never_panics(cut in 0usize..400) {
            let b = INVITE.as_bytes();
            let _ = parse_sip(&b[..cut.min(b.len())]);
        }
    }
}
