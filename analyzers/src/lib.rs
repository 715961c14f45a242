//! moni's analysis library: pure, deterministic, no I/O and no wall clock.
//!
//! The data path reads top to bottom:
//!
//! 1. [`decode`] turns one captured frame (any byte sequence) into a
//!    [`decode::Decoded`] view: VLAN tags, IP addresses, transport ports and
//!    flags, plus at most one counted [`decode::DecodeError`] naming the layer
//!    that stopped decoding. It never panics.
//! 2. [`vnet`] tags the packet with the VNet and role it belongs to (from its
//!    VLAN id or from the capture source).
//! 3. [`flow`] aggregates packets into bidirectional flows with idle, active,
//!    TCP-end and capacity expiry, emitting [`record::FlowRecord`]s.
//! 4. [`bins`] counts packets and bytes per VNet in fixed time bins, emitting
//!    [`record::BinRecord`]s (the paper's Fig. 5 forwarding-rate view).
//! 5. [`schema`] defines the Arrow schema of every record and converts record
//!    batches, so the node writes Parquet and every reader agrees on columns.
//!
//! Time always comes from the packets ([`time::Timestamp`]), so replaying a
//! capture twice gives the same records.

pub mod bins;
pub mod decode;
pub mod flow;
pub mod ids;
pub mod record;
pub mod schema;
pub mod time;
pub mod vnet;
pub mod voip;

pub use decode::{decode, decode_with, DecodeConfig, DecodeError, Decoded, LinkType};
pub use time::Timestamp;
