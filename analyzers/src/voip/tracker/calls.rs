//! Calls: the SIP call table (INVITE opens a call, 18x gives the post-dial
//! delay, 2xx the answer, BYE/CANCEL/final errors end it) and the media
//! endpoints SDP announces, by which a stream is tracked from its first
//! packet with the rtpmap's codec and clock. Both tables are capped
//! (`max_calls`, `max_announced`), the oldest evicted and counted.
//!
//! A call that ended keeps counting its messages until none has come for
//! [`CLOSING_SECS`]: the 200 OK to a BYE, the ACK of a rejection and the
//! retransmissions of a CANCEL come after the message that ended it, and
//! belong to it (tshark counts them by Call-ID too).

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

/// How long an ended call still takes its messages after the last one, in
/// packet time: twice SIP's T2 (4 s), the longest interval between the
/// retransmissions of a request or of a final response (RFC 3261 17.1.2.2,
/// 17.2.1).
pub const CLOSING_SECS: i64 = 8;

type CallKey = (VnetId, String);

/// An open call.
#[derive(Debug)]
struct Open {
    record: CallRecord,
    /// The CSeq number of the INVITE that opened it.
    invite_cseq: Option<u32>,
    /// The latest INVITE with a new CSeq (the one with credentials after a
    /// 401/407): a 180/183 answering it times the post-dial delay.
    last_invite: (Option<u32>, Timestamp),
}

/// A call that ended, waiting for its last messages.
#[derive(Debug)]
struct Closing {
    record: CallRecord,
    /// The CSeq numbers of the INVITE that opened the call and of its
    /// latest one (with credentials after a challenge): either again is a
    /// retransmission; another INVITE opens a new call.
    invite_cseqs: [Option<u32>; 2],
    last_invite_at: Timestamp,
    last: Timestamp,
}

impl Closing {
    /// Whether a queue entry of time `queued` is this call's: one queued
    /// before it ended belongs to an earlier call of the same Call-ID.
    fn queued_by(&self, queued: Timestamp) -> bool {
        self.record.end_time.is_none_or(|end| queued >= end)
    }
}

/// Open calls, finished call records and announced endpoints.
#[derive(Debug, Default)]
pub(super) struct Calls {
    calls: HashMap<CallKey, Open, foldhash::fast::RandomState>,
    call_order: VecDeque<CallKey>,
    closing: HashMap<CallKey, Closing, foldhash::fast::RandomState>,
    /// Closing calls by the time of their last message when queued (a
    /// later message re-queues the call when it reaches the front).
    closing_order: VecDeque<(Timestamp, CallKey)>,
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

    /// Calls open now (not those that ended and only wait for their last
    /// messages).
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

    /// Ends every open call (end of input) and finishes the closing ones.
    pub(super) fn flush(&mut self) {
        self.expire(Timestamp(i64::MAX));
        for key in std::mem::take(&mut self.call_order) {
            if let Some(mut c) = self.calls.remove(&key) {
                c.record.end_reason = "end_of_input".into();
                self.finished.push(c.record);
            }
        }
    }

    /// Finishes the ended calls whose last message is [`CLOSING_SECS`]
    /// old at `now`. Cheap per packet: it looks at the queue's front.
    pub(super) fn expire(&mut self, now: Timestamp) {
        while let Some((queued, _)) = self.closing_order.front() {
            if now.micros_since(*queued) < CLOSING_SECS * 1_000_000 {
                break;
            }
            let Some((queued, key)) = self.closing_order.pop_front() else {
                break;
            };
            match self
                .closing
                .get(&key)
                .filter(|c| c.queued_by(queued))
                .map(|c| c.last)
            {
                Some(last) if last > queued => self.closing_order.push_back((last, key)),
                Some(_) => self.finish_closing(&key),
                // Finished, or the Call-ID's earlier call (a stale entry).
                None => {}
            }
        }
    }

    fn finish_closing(&mut self, key: &CallKey) {
        if let Some(c) = self.closing.remove(key) {
            self.finished.push(c.record);
        }
    }

    /// Moves an ended call to the closing table, which holds at most
    /// `cap` (`max_calls`) calls: a full one finishes its oldest first (a
    /// record complete but for late messages).
    fn close(&mut self, key: CallKey, c: Closing, cap: usize) {
        while self.closing.len() >= cap.max(1) {
            let Some((queued, old)) = self.closing_order.pop_front() else {
                break;
            };
            if self.closing.get(&old).is_some_and(|c| c.queued_by(queued)) {
                self.finish_closing(&old);
            }
        }
        self.closing_order.push_back((c.last, key.clone()));
        self.closing.insert(key, c);
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
        let cseq = msg.cseq.as_ref().map(|(n, _)| *n);
        if let Some(c) = self.closing.get_mut(&key) {
            let answered_after_cancel = c.record.end_reason == "cancel"
                && matches!(msg.status, Some(200..=299))
                && cseq_method == Some("INVITE");
            if answered_after_cancel {
                // The CANCEL crossed the answer: the call goes on (RFC
                // 3261 9.1: the caller must now end it with a BYE).
                if let Some(c) = self.closing.remove(&key) {
                    let mut record = c.record;
                    record.sip_messages += 1;
                    record.end_time = None;
                    record.end_reason.clear();
                    record.answer_time.get_or_insert(ts);
                    self.call_order.push_back(key.clone());
                    let open = Open {
                        record,
                        invite_cseq: c.invite_cseqs[0],
                        last_invite: (c.invite_cseqs[1], c.last_invite_at),
                    };
                    self.calls.insert(key, open);
                }
                return;
            }
            if method == Some("INVITE") && !c.invite_cseqs.contains(&cseq) {
                // The Call-ID again for a new call.
                self.finish_closing(&key);
            } else {
                c.record.sip_messages += 1;
                c.last = c.last.max(ts);
                return;
            }
        }
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
            let record = CallRecord {
                vnet,
                call_id: key.1.clone(),
                caller: party(msg.from.as_deref()),
                callee: party(msg.to.as_deref()),
                invite_time: ts,
                answer_time: None,
                end_time: None,
                end_reason: String::new(),
                post_dial_delay_ms: None,
                media: String::new(),
                sip_messages: 0,
            };
            let open = Open {
                record,
                invite_cseq: cseq,
                last_invite: (cseq, ts),
            };
            self.calls.insert(key.clone(), open);
        }
        let Some(open) = self.calls.get_mut(&key) else {
            return;
        };
        if method == Some("INVITE") && cseq != open.last_invite.0 {
            open.last_invite = (cseq, ts);
        }
        let last_invite = open.last_invite;
        let call = &mut open.record;
        call.sip_messages += 1;
        for m in &msg.media {
            // `[v6]:port` for IPv6, as a socket address is written.
            let ep = std::net::SocketAddr::new(m.addr, m.port).to_string();
            if !call.media.split(',').any(|e| e == ep) {
                if !call.media.is_empty() {
                    call.media.push(',');
                }
                call.media.push_str(&ep);
            }
        }
        let end = match (method, msg.status, cseq_method) {
            (_, Some(180 | 183), Some("INVITE")) => {
                // From the INVITE it answers (after a 401/407 challenge,
                // the one with credentials: the network's delay, not the
                // time the caller took to authenticate), else the first.
                let from = match last_invite {
                    (Some(n), at) if cseq == Some(n) => at,
                    _ => call.invite_time,
                };
                let pdd = ts.micros_since(from) as f64 / 1000.0;
                call.post_dial_delay_ms.get_or_insert(pdd);
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
            // A CANCEL ends only a call not yet answered (RFC 3261 9.2:
            // one that crosses the 2xx changes nothing).
            (Some("CANCEL"), _, _) if call.answer_time.is_none() => Some("cancel".to_string()),
            _ => None,
        };
        if let Some(reason) = end {
            if let Some(Open {
                mut record,
                invite_cseq,
                last_invite,
            }) = self.calls.remove(&key)
            {
                record.end_time = Some(ts);
                record.end_reason = reason;
                let c = Closing {
                    record,
                    invite_cseqs: [invite_cseq, last_invite.0],
                    last_invite_at: last_invite.1,
                    last: ts,
                };
                self.close(key, c, config.max_calls);
            }
        }
    }

    fn evict_call(&mut self, stats: &mut RtpStats) {
        while let Some(old) = self.call_order.pop_front() {
            if let Some(mut c) = self.calls.remove(&old) {
                c.record.end_reason = "evicted".into();
                self.finished.push(c.record);
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

/// A From or To header without its parameters (the tag differs per
/// dialog, so one caller would read as many): the name-addr up to its
/// `>`, or an addr-spec up to its first `;`.
fn party(header: Option<&str>) -> String {
    let h = header.unwrap_or_default();
    let kept = match h.find('>') {
        Some(i) => &h[..=i],
        None => h.split(';').next().unwrap_or_default(),
    };
    kept.trim().to_string()
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
        // The BYE's 200 OK still belongs to the call, which is finished
        // CLOSING_SECS after its last message.
        c.signalling(at(9040), v, response(200, "c1", "2 BYE"), &cfg, &mut st);
        c.expire(at(9040 + CLOSING_SECS * 1000 - 1));
        assert!(c.take().is_empty());
        c.expire(at(9040 + CLOSING_SECS * 1000));
        let done = c.take();
        assert_eq!(done.len(), 1);
        let r = &done[0];
        assert_eq!(r.post_dial_delay_ms, Some(150.0));
        assert_eq!(r.answer_time, Some(at(2000)));
        assert_eq!(r.end_time, Some(at(9000)));
        assert_eq!(r.end_reason, "bye");
        assert_eq!(r.sip_messages, 5);
        assert_eq!((st.sip_messages, st.calls_started), (5, 1));
        // Later messages of the Call-ID belong to no call.
        c.signalling(at(30_000), v, response(200, "c1", "2 BYE"), &cfg, &mut st);
        c.flush();
        assert!(c.take().is_empty());
    }

    #[test]
    fn a_closing_call_takes_retransmissions_until_it_is_quiet() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        // aaa.pcap's shape: a CANCEL retransmitted every 4 s for 32 s.
        c.signalling(at(0), v, request("INVITE", "k", "1 INVITE"), &cfg, &mut st);
        for i in 0..8 {
            c.signalling(
                at(1000 + i * 4000),
                v,
                request("CANCEL", "k", "1 CANCEL"),
                &cfg,
                &mut st,
            );
            c.expire(at(1000 + i * 4000 + 3999));
        }
        assert!(
            c.take().is_empty(),
            "4 s apart, each keeps the call closing"
        );
        c.expire(at(29_000 + CLOSING_SECS * 1000));
        let done = c.take();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].end_reason.as_str(), done[0].end_time),
            ("cancel", Some(at(1000)))
        );
        assert_eq!(done[0].sip_messages, 9);
        // The opening INVITE again is a retransmission; another INVITE with
        // the same Call-ID opens a new call (and finishes the old one).
        c.signalling(
            at(40_000),
            v,
            request("INVITE", "r", "1 INVITE"),
            &cfg,
            &mut st,
        );
        c.signalling(at(40_010), v, response(486, "r", "1 INVITE"), &cfg, &mut st);
        c.signalling(
            at(40_020),
            v,
            request("INVITE", "r", "1 INVITE"),
            &cfg,
            &mut st,
        );
        assert_eq!(c.active(), 0);
        c.signalling(
            at(40_030),
            v,
            request("INVITE", "r", "2 INVITE"),
            &cfg,
            &mut st,
        );
        assert_eq!(c.active(), 1);
        let done = c.take();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].end_reason.as_str(), done[0].sip_messages),
            ("rejected_486", 3)
        );
        assert_eq!(st.calls_started, 3);
    }

    #[test]
    fn post_dial_delay_runs_from_the_invite_the_ringing_answers() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        // aaa.pcap's shape: challenged, the caller takes 17 s to send its
        // credentials, the network rings 426 ms after them.
        c.signalling(at(0), v, request("INVITE", "p", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(20), v, response(407, "p", "1 INVITE"), &cfg, &mut st);
        c.signalling(
            at(17_420),
            v,
            request("INVITE", "p", "2 INVITE"),
            &cfg,
            &mut st,
        );
        c.signalling(at(17_846), v, response(183, "p", "2 INVITE"), &cfg, &mut st);
        c.flush();
        let r = c.take();
        assert_eq!(r[0].post_dial_delay_ms, Some(426.0));
        assert_eq!(r[0].invite_time, at(0));
    }

    #[test]
    fn caller_and_callee_are_read_without_their_tags() {
        assert_eq!(
            party(Some("\"arik\" <sip:35104723@sip.cybercity.dk>;tag=175a1dd")),
            "\"arik\" <sip:35104723@sip.cybercity.dk>"
        );
        assert_eq!(
            party(Some("sip:bob@example.com;tag=9 ")),
            "sip:bob@example.com"
        );
        assert_eq!(
            party(Some("<sip:a@b;transport=udp>")),
            "<sip:a@b;transport=udp>"
        );
        assert_eq!(party(None), "");
    }

    #[test]
    fn a_challenged_invite_retransmitted_after_its_rejection_stays_in_its_call() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        c.signalling(at(0), v, request("INVITE", "a", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(10), v, response(407, "a", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(20), v, request("ACK", "a", "1 ACK"), &cfg, &mut st);
        c.signalling(at(30), v, request("INVITE", "a", "2 INVITE"), &cfg, &mut st);
        c.signalling(at(40), v, response(486, "a", "2 INVITE"), &cfg, &mut st);
        c.signalling(
            at(530),
            v,
            request("INVITE", "a", "2 INVITE"),
            &cfg,
            &mut st,
        );
        c.signalling(at(540), v, response(486, "a", "2 INVITE"), &cfg, &mut st);
        c.signalling(at(550), v, request("ACK", "a", "2 ACK"), &cfg, &mut st);
        c.flush();
        let done = c.take();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(
            (done[0].end_reason.as_str(), done[0].sip_messages),
            ("rejected_486", 8)
        );
        assert_eq!(st.calls_started, 1);
    }

    #[test]
    fn a_cancel_seen_before_the_answer_it_crossed_leaves_the_call_up() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        c.signalling(at(0), v, request("INVITE", "y", "1 INVITE"), &cfg, &mut st);
        c.signalling(
            at(100),
            v,
            request("CANCEL", "y", "1 CANCEL"),
            &cfg,
            &mut st,
        );
        c.signalling(at(105), v, response(200, "y", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(110), v, response(200, "y", "1 CANCEL"), &cfg, &mut st);
        c.signalling(at(120), v, request("ACK", "y", "1 ACK"), &cfg, &mut st);
        assert_eq!(c.active(), 1);
        c.signalling(at(30_000), v, request("BYE", "y", "2 BYE"), &cfg, &mut st);
        c.signalling(at(30_010), v, response(200, "y", "2 BYE"), &cfg, &mut st);
        c.flush();
        let done = c.take();
        assert_eq!(done.len(), 1, "{done:?}");
        let r = &done[0];
        assert_eq!((r.end_reason.as_str(), r.sip_messages), ("bye", 7));
        assert_eq!(
            (r.answer_time, r.end_time),
            (Some(at(105)), Some(at(30_000)))
        );
    }

    #[test]
    fn a_cancel_that_crosses_the_answer_leaves_the_call_up() {
        let (mut c, cfg, mut st) = (Calls::default(), RtpConfig::default(), RtpStats::default());
        let v = VnetId(0);
        c.signalling(at(0), v, request("INVITE", "x", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(90), v, response(200, "x", "1 INVITE"), &cfg, &mut st);
        c.signalling(
            at(130),
            v,
            request("CANCEL", "x", "1 CANCEL"),
            &cfg,
            &mut st,
        );
        c.signalling(at(140), v, response(200, "x", "1 CANCEL"), &cfg, &mut st);
        assert_eq!(c.active(), 1);
        c.signalling(at(60_000), v, request("BYE", "x", "2 BYE"), &cfg, &mut st);
        c.flush();
        let done = c.take();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].end_reason.as_str(), done[0].sip_messages),
            ("bye", 5)
        );
    }

    #[test]
    fn an_earlier_call_of_the_call_id_does_not_end_the_next_one_early() {
        let cfg = RtpConfig {
            max_calls: 2,
            ..RtpConfig::default()
        };
        let (mut c, mut st) = (Calls::default(), RtpStats::default());
        let v = VnetId(0);
        // Call-ID "r" ends, "t" ends, a new call reuses "r" and ends: the
        // first r's queue entry is stale, before t's.
        c.signalling(at(0), v, request("INVITE", "r", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(10), v, response(486, "r", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(12), v, request("INVITE", "t", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(15), v, response(486, "t", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(20), v, request("INVITE", "r", "2 INVITE"), &cfg, &mut st);
        c.signalling(at(30), v, response(603, "r", "2 INVITE"), &cfg, &mut st);
        assert_eq!(c.take().len(), 1, "the first r, finished by the second");
        // A third ended call fills the closing table (cap 2): its oldest,
        // t, is finished early, not the second r.
        c.signalling(at(40), v, request("INVITE", "s", "1 INVITE"), &cfg, &mut st);
        c.signalling(at(50), v, response(486, "s", "1 INVITE"), &cfg, &mut st);
        let early: Vec<_> = c.take().into_iter().map(|r| r.call_id).collect();
        assert_eq!(early, ["t"]);
        // The second r's late ACK still counts in it.
        c.signalling(at(60), v, request("ACK", "r", "2 ACK"), &cfg, &mut st);
        c.flush();
        let r2 = c.take().into_iter().find(|r| r.call_id == "r").expect("r");
        assert_eq!(
            (r2.end_reason.as_str(), r2.sip_messages),
            ("rejected_603", 3)
        );
    }

    #[test]
    fn the_closing_table_is_capped_and_finishes_its_oldest() {
        let cfg = RtpConfig {
            max_calls: 2,
            ..RtpConfig::default()
        };
        let (mut c, mut st) = (Calls::default(), RtpStats::default());
        let v = VnetId(0);
        for i in 0..3 {
            let call = format!("c{i}");
            c.signalling(
                at(i),
                v,
                request("INVITE", &call, "1 INVITE"),
                &cfg,
                &mut st,
            );
            c.signalling(at(i), v, response(603, &call, "1 INVITE"), &cfg, &mut st);
        }
        let early: Vec<_> = c.take().into_iter().map(|r| r.call_id).collect();
        assert_eq!(early, ["c0"]);
        assert_eq!(st.calls_evicted, 0, "finished, not lost");
        c.flush();
        assert_eq!(c.take().len(), 2);
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
        c.flush();
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
