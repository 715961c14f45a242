//! Voice quality (work in progress towards the VoIP issue): SIP/SDP media
//! announcements, RTP/RTCP wire views, RFC 3550 receiver statistics per
//! stream, windowed E-model scoring, and the ITU-T G.107 E-model itself.
//! Call records and the shadow/production comparison will join them here.

pub mod codec;
pub mod compare;
pub mod emodel;
pub mod jitter_buffer;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod stream;
pub mod tracker;

pub use tracker::{RtpConfig, RtpStats, RtpTracker};
