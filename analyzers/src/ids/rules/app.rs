//! The application-layer buffers a packet carries on its own: an HTTP/1.x
//! request whose request line (and, for the header buffers, whole header
//! block) is in this one TCP segment, and the questions of a DNS query.
//!
//! Suricata fills the same buffers from the reassembled stream; matching
//! one packet at a time, a request split over segments yields no header
//! buffers and its rules do not match (a miss, never a different match).
//! Where Suricata's HTTP library would normalise something we do not
//! reproduce (a URI with `%`-escapes, `\`, dot segments or `//`; an
//! absolute URI; folded header lines), the buffer is left absent, so the
//! rules that inspect it stay silent rather than match differently.

use super::Buffer;
pub use crate::voip::sdp::{sip_start_line, StartLine};

/// Most headers read from one request (a request with more has no header
/// buffers).
const MAX_HEADERS: usize = 128;

/// The buffers of one HTTP request.
#[derive(Debug, Default)]
pub struct HttpRequest<'a> {
    pub method: &'a [u8],
    pub uri_raw: &'a [u8],
    /// `None` where Suricata would normalise the URI.
    pub uri: Option<&'a [u8]>,
    pub protocol: &'a [u8],
    pub request_line: &'a [u8],
    /// The header block was complete in this packet.
    pub headers_done: bool,
    /// (name, combined value), in order of first appearance.
    headers: Vec<(&'a [u8], Vec<u8>)>,
    header: Vec<u8>,
    header_names: Vec<u8>,
    host: Option<Vec<u8>>,
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// A method token: what Suricata's HTTP probing accepts as the start of a
/// request (upper-case letters, `-` and `_`).
fn is_method(m: &[u8]) -> bool {
    !m.is_empty()
        && m.len() <= 24
        && m.iter()
            .all(|b| b.is_ascii_uppercase() || b"-_".contains(b))
}

/// Whether libhtp's URI normalisation would leave `uri` as it is.
fn plain_uri(uri: &[u8]) -> bool {
    let path_end = uri.iter().position(|&b| b == b'?').unwrap_or(uri.len());
    let path = &uri[..path_end];
    uri.first() == Some(&b'/')
        && !uri.contains(&b'%')
        && !uri.contains(&b'\\')
        && !path.windows(2).any(|w| w == b"//")
        && !path.windows(3).any(|w| w == b"/./")
        && !path.windows(4).any(|w| w == b"/../")
        && !path.ends_with(b"/.")
        && !path.ends_with(b"/..")
        && uri.iter().all(|&b| b > 0x20 && b < 0x7f)
}

impl<'a> HttpRequest<'a> {
    /// The request starting this payload, if it starts with one.
    pub fn parse(payload: &'a [u8]) -> Option<HttpRequest<'a>> {
        // The method first: most payloads are rejected in a few bytes.
        let sp = payload.iter().take(25).position(|&b| b == b' ')?;
        if !is_method(&payload[..sp]) {
            return None;
        }
        let line_end = payload.iter().position(|&b| b == b'\n')?;
        let line = payload[..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&payload[..line_end]);
        let mut parts = line.split(|&b| b == b' ');
        let method = parts.next()?;
        let uri_raw = parts.next()?;
        let protocol = parts.next()?;
        if parts.next().is_some()
            || !is_method(method)
            || uri_raw.is_empty()
            || !protocol.starts_with(b"HTTP/")
        {
            return None;
        }
        let mut req = HttpRequest {
            method,
            uri_raw,
            uri: plain_uri(uri_raw).then_some(uri_raw),
            protocol,
            request_line: line,
            ..HttpRequest::default()
        };
        let mut rest = &payload[line_end + 1..];
        let mut headers: Vec<(&[u8], Vec<u8>)> = Vec::new();
        loop {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return Some(req);
            };
            let raw = &rest[..end];
            let l = raw.strip_suffix(b"\r").unwrap_or(raw);
            rest = &rest[end + 1..];
            if l.is_empty() {
                break;
            }
            // Folded lines and lines without a colon: libhtp repairs
            // them; we leave the header buffers absent.
            if l[0] == b' ' || l[0] == b'\t' || headers.len() == MAX_HEADERS {
                return Some(req);
            }
            let colon = l.iter().position(|&b| b == b':')?;
            let name = trim(&l[..colon]);
            let value = trim(&l[colon + 1..]);
            if name.is_empty() {
                return Some(req);
            }
            match headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some((_, v)) => {
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(value);
                }
                None => headers.push((name, value.to_vec())),
            }
        }
        req.headers_done = true;
        req.header_names.extend_from_slice(b"\r\n");
        for (name, value) in &headers {
            req.header_names.extend_from_slice(name);
            req.header_names.extend_from_slice(b"\r\n");
            if name.eq_ignore_ascii_case(b"cookie") {
                continue;
            }
            req.header.extend_from_slice(name);
            req.header.extend_from_slice(b": ");
            req.header.extend_from_slice(value);
            req.header.extend_from_slice(b"\r\n");
        }
        req.header_names.extend_from_slice(b"\r\n");
        if req.uri.is_some() {
            req.host = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(b"host"))
                .map(|(_, v)| {
                    // Without the port, lower case (libhtp's hostname).
                    let cut = match v.iter().rposition(|&b| b == b':') {
                        Some(i) if !v.contains(&b']') || v[..i].ends_with(b"]") => i,
                        _ => v.len(),
                    };
                    v[..cut].to_ascii_lowercase()
                });
        }
        req.headers = headers;
        Some(req)
    }

    fn value(&self, name: &[u8]) -> Option<&[u8]> {
        if !self.headers_done {
            return None;
        }
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The buffer's bytes; `None` if this request does not provide it.
    pub fn buffer(&self, b: Buffer) -> Option<&[u8]> {
        match b {
            Buffer::HttpMethod => Some(self.method),
            Buffer::HttpUri => self.uri,
            Buffer::HttpUriRaw => Some(self.uri_raw),
            Buffer::HttpProtocol => Some(self.protocol),
            Buffer::HttpRequestLine => Some(self.request_line),
            Buffer::HttpHeader => self.headers_done.then_some(self.header.as_slice()),
            Buffer::HttpHeaderNames => self.headers_done.then_some(self.header_names.as_slice()),
            Buffer::HttpUserAgent => self.value(b"user-agent"),
            Buffer::HttpHost => self.host.as_deref(),
            Buffer::HttpCookie => self.value(b"cookie"),
            Buffer::HttpAcceptEnc => self.value(b"accept-encoding"),
            Buffer::HttpContentType => self.value(b"content-type"),
            _ => None,
        }
    }
}

/// Whether a TCP payload starts an HTTP response (`HTTP/1.x NNN`).
pub fn is_http_response(payload: &[u8]) -> bool {
    payload.starts_with(b"HTTP/1.") && payload.get(8) == Some(&b' ')
}

/// The status line of an HTTP/1.x response starting this payload:
/// `http.stat_code`, `http.stat_msg` and `http.response_line`.
#[derive(Debug)]
pub struct HttpResponse<'a> {
    pub line: &'a [u8],
    pub code: &'a [u8],
    pub message: &'a [u8],
}

impl<'a> HttpResponse<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<HttpResponse<'a>> {
        if !is_http_response(payload) {
            return None;
        }
        // `HTTP/1.x NNN[ message]`, the line ended within 8 KiB.
        let end = payload.iter().take(8192).position(|&b| b == b'\n')?;
        let line = payload[..end]
            .strip_suffix(b"\r")
            .unwrap_or(&payload[..end]);
        let code = line
            .get(9..12)
            .filter(|c| c.iter().all(u8::is_ascii_digit))?;
        let message = match line.get(12..) {
            Some([]) | None => &[][..],
            Some([b' ', rest @ ..]) => rest,
            Some(_) => return None,
        };
        Some(HttpResponse {
            line,
            code,
            message,
        })
    }

    pub fn buffer(&self, b: Buffer) -> Option<&[u8]> {
        match b {
            Buffer::HttpStatCode => Some(self.code),
            Buffer::HttpStatMsg => Some(self.message),
            Buffer::HttpResponseLine => Some(self.line),
            _ => None,
        }
    }
}

/// Buffer `b` of a SIP message's start line (the VoIP tracker's own
/// reading of it, [`sip_start_line`]), as Suricata's SIP parser fills the
/// `sip.*` buffers: `None` for a buffer the message does not have (a
/// request's `sip.stat_code`).
pub fn sip_buffer<'a>(s: &StartLine<'a>, b: Buffer) -> Option<&'a [u8]> {
    match (b, s.request, s.response) {
        (Buffer::SipProtocol, _, _) => Some(s.protocol),
        (Buffer::SipMethod, Some((m, _)), _) => Some(m),
        (Buffer::SipUri, Some((_, u)), _) => Some(u),
        (Buffer::SipRequestLine, Some(_), _) => Some(s.line),
        (Buffer::SipStatCode, _, Some((c, _))) => Some(c),
        (Buffer::SipStatMsg, _, Some((_, m))) => Some(m),
        (Buffer::SipResponseLine, _, Some(_)) => Some(s.line),
        _ => None,
    }
}

/// Most questions read from one DNS message.
const MAX_QUESTIONS: usize = 16;

/// The question names of a DNS query (QR clear), each as Suricata's
/// `dns.query` buffer holds it: the labels joined with `.`, bytes as
/// they are. `tcp` payloads carry the two-byte length prefix. `None` if
/// the payload is not a well-formed query.
pub fn dns_queries(payload: &[u8], tcp: bool) -> Option<Vec<Vec<u8>>> {
    let msg = if tcp { payload.get(2..)? } else { payload };
    let header = msg.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if qdcount == 0 {
        return None;
    }
    let mut at = 12;
    let mut out = Vec::new();
    for _ in 0..qdcount.min(MAX_QUESTIONS) {
        let mut name = Vec::new();
        loop {
            let len = usize::from(*msg.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // Compression pointers do not occur in a query's questions
            // from real resolvers; a label over 63 bytes is malformed.
            if len > 63 {
                return None;
            }
            if !name.is_empty() {
                name.push(b'.');
            }
            name.extend_from_slice(msg.get(at..at + len)?);
            at += len;
            if name.len() > 255 {
                return None;
            }
        }
        msg.get(at..at + 4)?;
        at += 4;
        out.push(name);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_buffers_as_suricata_builds_them() {
        let p = b"GET /a?b=c HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent:  sqlmap/1.0 \r\nCookie: x=1\r\nAccept: */*\r\nAccept: text/html\r\n\r\nbody";
        let r = HttpRequest::parse(p).expect("request");
        assert_eq!(r.buffer(Buffer::HttpMethod), Some(&b"GET"[..]));
        assert_eq!(r.buffer(Buffer::HttpUri), Some(&b"/a?b=c"[..]));
        assert_eq!(r.buffer(Buffer::HttpProtocol), Some(&b"HTTP/1.1"[..]));
        assert_eq!(
            r.buffer(Buffer::HttpRequestLine),
            Some(&b"GET /a?b=c HTTP/1.1"[..])
        );
        assert_eq!(r.buffer(Buffer::HttpUserAgent), Some(&b"sqlmap/1.0"[..]));
        assert_eq!(r.buffer(Buffer::HttpHost), Some(&b"example.com"[..]));
        assert_eq!(r.buffer(Buffer::HttpCookie), Some(&b"x=1"[..]));
        assert_eq!(
            r.buffer(Buffer::HttpHeader),
            Some(
                &b"Host: Example.COM:8080\r\nUser-Agent: sqlmap/1.0\r\nAccept: */*, text/html\r\n"
                    [..]
            )
        );
        assert_eq!(
            r.buffer(Buffer::HttpHeaderNames),
            Some(&b"\r\nHost\r\nUser-Agent\r\nCookie\r\nAccept\r\n\r\n"[..])
        );
    }

    #[test]
    fn what_would_be_normalised_or_is_incomplete_is_absent() {
        let r =
            HttpRequest::parse(b"GET /a%20b/../c HTTP/1.0\r\nUser-Agent: x\r\n").expect("request");
        assert_eq!(r.buffer(Buffer::HttpUri), None);
        assert_eq!(r.buffer(Buffer::HttpUriRaw), Some(&b"/a%20b/../c"[..]));
        // Headers not complete in this packet.
        assert_eq!(r.buffer(Buffer::HttpUserAgent), None);
        assert!(HttpRequest::parse(b"\x16\x03\x01 hello").is_none());
        assert!(HttpRequest::parse(b"get / HTTP/1.1\r\n").is_none());
    }

    #[test]
    fn dns_query_names() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x02su\x00\x00\x01\x00\x01");
        assert_eq!(
            dns_queries(&q, false),
            Some(vec![b"www.example.su".to_vec()])
        );
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert_eq!(dns_queries(&resp, false), None);
        assert_eq!(dns_queries(&q[..20], false), None);
    }
}
