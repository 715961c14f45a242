//! Voice quality: SIP/SDP media announcements and call records, RTP/RTCP
//! wire views, RFC 3550 receiver statistics per stream (at the capture's
//! time precision), emulated receiver jitter buffers, windowed E-model
//! scoring (G.107, wideband G.107.1) with the G.113 codec table, and the
//! shadow/production comparison.
//!
//! - `sdp`, `rtp`, `rtcp`: wire parsing, no state.
//! - `stream`: one stream's RFC 3550 counters, jitter and loss runs.
//! - `jitter_buffer`: the fixed and adaptive playout models.
//! - `codec`, `emodel`: Ie/Bpl per codec and the E-model itself.
//! - `tracker`: routes packets to streams and calls, bounded (calls,
//!   detection, per-stream statistics, RTCP state, windows).
//! - `compare`: production vs shadow windows.

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
