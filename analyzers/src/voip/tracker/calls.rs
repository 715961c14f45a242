//! Calls: the SIP call table (INVITE opens a call, 18x gives the post-dial
//! delay, 2xx the answer, BYE/CANCEL/final errors end it) and the media
//! endpoints SDP announces, by which a stream is tracked from its first
//! packet with the rtpmap's codec and clock. Both tables are capped
//! (`max_calls`, `max_announced`), the oldest evicted and counted.

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::flow::key::Endpoint;
use crate::record::CallRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;
use crate::voip::sdp;

use super::{RtpConfig, RtpStats};

/// Media endpoints an SDP body announced: its rtpmap and call.
#[derive(Clone, Debug)]
pub(super) struct Announced {
    pub(super) rtpmap: Vec<(u8, String, u32)>,
    pub(super) call_id: Option<String>,
}

/// Open calls, finished call records and announced endpoints.
#[derive(Debug, Default)]
pub(super) struct Calls {
    calls: HashMap<(VnetId, String), CallRecord, foldhash::fast::RandomState>,
    call_order: VecDeque<(VnetId, String)>,
    finished: Vec<CallRecord>,
    announced: HashMap<(VnetId, Endpoint), Announced, foldhash::fast::RandomState>,
    announced_order: VecDeque<(VnetId, Endpoint)>,
}

impl Calls {
    /// The announcement of a stream's destination, else of its source.
    pub(super) fn announced(
        &self,
        vnet: VnetId,
        src: Endpoint,
        dst: Endpoint,
    ) -> Option<Announced> {
        self.announced
            .get(&(vnet, dst))
            .or_else(|| self.announced.get(&(vnet, src)))
            .cloned()
    }

    /// Calls open now.
    pub(super) fn active(&self) -> usize {
        self.calls.len()
    }

    /// VNets of the open calls.
    pub(super) fn vnets(&self) -> impl Iterator<Item = VnetId> + '_ {
        self.calls.keys().map(|(v, _)| *v)
    }

    /// Takes the finished call records.
    pub(super) fn take(&mut self) -> Vec<CallRecord> {
        std::mem::take(&mut self.finished)
    }

    /// Ends every open call (end of input).
    pub(super) fn flush(&mut self) {
        for key in std::mem::take(&mut self.call_order) {
            if let Some(mut c) = self.calls.remove(&key) {
                c.end_reason = "end_of_input".into();
                self.finished.push(c);
            }
        }
    }

    /// Follows a call's signalling: INVITE opens it, 18x gives the
    /// post-dial delay, 200 the answer, BYE/CANCEL/final errors end it.
    pub(super) fn signalling(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        msg: sdp::SipMessage,
        config: &RtpConfig,
        stats: &mut RtpStats,
    ) {
        stats.sip_messages += 1;
        for m in &msg.media {
            self.announce(vnet, m.clone(), msg.call_id.clone(), config, stats);
        }
        let Some(call_id) = msg.call_id.clone() else {
            return;
        };
        let key = (vnet, call_id);
        let method = msg.method.as_deref();
        let cseq_method = msg.cseq.as_ref().map(|(_, m)| m.as_str());
        if method == Some("INVITE") && !self.calls.contains_key(&key) {
            if self.calls.len() >= config.max_calls.max(1) {
                self.evict_call(stats);
            }
            stats.calls_started += 1;
            if self.call_order.len() > 2 * self.calls.len() + 1024 {
                let calls = &self.calls;
                self.call_order.retain(|k| calls.contains_key(k));
            }
            self.call_order.push_back(key.clone());
            self.calls.insert(
                key.clone(),
                CallRecord {
                    vnet,
                    call_id: key.1.clone(),
                    caller: msg.from.clone().unwrap_or_default(),
                    callee: msg.to.clone().unwrap_or_default(),
                    invite_time: ts,
                    answer_time: None,
                    end_time: None,
                    end_reason: String::new(),
                    post_dial_delay_ms: None,
                    media: String::new(),
                    sip_messages: 0,
                },
            );
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.sip_messages += 1;
        for m in &msg.media {
            let ep = format!("{}:{}", m.addr, m.port);
            if !call.media.split(',').any(|e| e == ep) {
                if !call.media.is_empty() {
                    call.media.push(',');
                }
                call.media.push_str(&ep);
            }
        }
        let since_invite = ts.micros_since(call.invite_time) as f64 / 1000.0;
        let end = match (method, msg.status, cseq_method) {
            (_, Some(180 | 183), Some("INVITE")) => {
                call.post_dial_delay_ms.get_or_insert(since_invite);
                None
            }
            (_, Some(200..=299), Some("INVITE")) => {
                call.answer_time.get_or_insert(ts);
                None
            }
            // 401/407 challenge the INVITE; the caller retries in the
            // same call with credentials.
            (_, Some(401 | 407), Some("INVITE")) => None,
            (_, Some(code @ 300..=699), Some("INVITE")) if call.answer_time.is_none() => {
                Some(if code == 487 {
                    "cancel".to_string()
                } else {
                    format!("rejected_{code}")
                })
            }
            (Some("BYE"), _, _) => Some("bye".to_string()),
            (Some("CANCEL"), _, _) => Some("cancel".to_string()),
            _ => None,
        };
        if let Some(reason) = end {
            if let Some(mut c) = self.calls.remove(&key) {
                c.end_time = Some(ts);
                c.end_reason = reason;
                self.finished.push(c);
            }
        }
    }

    fn evict_call(&mut self, stats: &mut RtpStats) {
        while let Some(old) = self.call_order.pop_front() {
            if let Some(mut c) = self.calls.remove(&old) {
                c.end_reason = "evicted".into();
                self.finished.push(c);
                stats.calls_evicted += 1;
                return;
            }
        }
    }

    pub(super) fn announce(
        &mut self,
        vnet: VnetId,
        m: sdp::Media,
        call_id: Option<String>,
        config: &RtpConfig,
        stats: &mut RtpStats,
    ) {
        let key = (vnet, Endpoint::new(m.addr, m.port));
        if !self.announced.contains_key(&key) {
            if self.announced.len() >= config.max_announced {
                if let Some(old) = self.announced_order.pop_front() {
                    self.announced.remove(&old);
                    stats.announced_evicted += 1;
                }
            }
            self.announced_order.push_back(key);
        }
        self.announced.insert(
            key,
            Announced {
                rtpmap: m.rtpmap,
                call_id,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(text: &str) -> sdp::SipMessage {
        sdp::parse_sip(text.replace('\n', "\r\n").as_bytes()).expect("SIP")
    }

    fn request(method: &str, call: &str, cseq: &str) -> sdp::SipMessage {
        sip(&format!(
            "{method} sip:bob@example.com SIP/2.0\nCall-ID: {call}\nCSeq: {cseq}\n\
             From: <sip:alice@example.com>\nTo: <sip:bob@example.com>\n\n"
        ))
    }

    fn response(code: u16, call: &str, cseq: &str) -> sdp::SipMessage {
        sip(&format!(
            "SIP/2.0 {code} X\nCall-ID: {call}\nCSeq: {cseq}\n\
             From: <sip:alice@example.com>\nTo: <sip:bob@example.com>\n\n"
        ))
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp(1_700_000_000_000_000 + ms * 1000)
    }

    #[test]
    fn a_call_from_invite_to_bye() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        c.signalling(at(0), v, request("INVITE", "c1", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(150), v, response(180, "c1", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(2000), v, response(200, "c1", "1 INVITE"), &cfg, &mut st);
        assert_eq!(c.active(), 1);
        c.signalling(at(9000), v, request("BYE", "c1", "2 BYE"), &cfg, &mut st);
        assert_eq!(c.active(), 0);
        let done = c.take();
        assert_eq!(done.len(), 1);
        let r = &done[0];
        assert_eq!(r.post_dial_delay_ms, Some(150.0));
        assert_eq!(r.answer_time, Some(at(2000)));
        assert_eq!(r.end_time, Some(at(9000)));
        assert_eq!(r.end_reason, "bye");
        assert_eq!(r.sip_messages, 4);
        assert_eq!((st.sip_messages, st.calls_started), (4, 1));
    }

    #[test]
    fn rejections_challenges_and_cancels() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        c.signalling(at(0), v, request("INVITE", "a", "1 INVITE"), &cfg, &mut st);
        // A challenge keeps the call open.
        c.signalling(at(10), v, response(407, "a", "1 INVITE"), &cfg, &mut st);
        assert_eq!(c.active(), 1);
        c.signalling(at(20), v, response(486, "a", "2 INVITE"), &cfg, &mut st);
        c.signalling(at(30), v, request("INVITE", "b", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(40), v, response(487, "b", "1 INVITE"), &cfg, &mut st);
        let reasons: Vec<_> = c.take().into_iter().map(|r| r.end_reason).collect();
        assert_eq!(reasons, ["rejected_486", "cancel"]);
    }

    #[test]
    fn the_tables_are_capped() {
        let cfg = RtpConfig {
            max_calls: 2,
            max_announced: 2,
            ..RtpConfig::default()
        };
        let (mut c, mut st) = (Calls::default(), RtpStats::default());
        let v = VnetId(0);
        for i in 0..5 {
            let call = format!("call-{i}");
            c.signalling(
                at(i),
                v,
                request("INVITE", &call, "1 INVITE"),
                &cfg,
                &mut st,
            );
        }
        assert_eq!(c.active(), 2);
        assert_eq!(st.calls_evicted, 3);
        assert!(c.take().iter().all(|r| r.end_reason == "evicted"));
        let media = |port| sdp::Media {
            addr: std::net::IpAddr::from([10, 0, 0, 1]),
            port,
            payload_types: vec![0],
            rtpmap: vec![(0, "PCMU".into(), 8000)],
            ptime_ms: None,
            rtcp_mux: false,
        };
        for port in [4000, 4002, 4004] {
            c.announce(v, media(port), Some("x".into()), &cfg, &mut st);
        }
        assert_eq!(st.announced_evicted, 1);
        let ep = |port| Endpoint::new(std::net::IpAddr::from([10, 0, 0, 1]), port);
        let other = Endpoint::new(std::net::IpAddr::from([10, 0, 0, 9]), 9);
        assert!(c.announced(v, other, ep(4000)).is_none());
        let a = c.announced(v, ep(4004), other).expect("source announced");
        assert_eq!(a.call_id.as_deref(), Some("x"));
        c.flush();
        assert!(c.take().iter().all(|r| r.end_reason == "end_of_input"));
    }
}
