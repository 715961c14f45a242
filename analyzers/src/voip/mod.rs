//! Voice quality (work in progress towards the VoIP issue): RTP/RTCP wire
//! views, RFC 3550 receiver statistics per stream, and the ITU-T G.107
//! E-model. SIP/SDP call tracking, windows and the shadow/production
//! comparison will join them here.

pub mod emodel;
pub mod rtp;
pub mod stream;
