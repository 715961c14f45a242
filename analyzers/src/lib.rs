//! moni's analysis library: pure, deterministic, no I/O and no wall clock.
//!
//! The data path reads top to bottom:
//!
//! 1. [`decode`](mod@decode) turns one captured frame (any byte sequence) into a
//!    [`decode::Decoded`] view: VLAN tags, IP addresses, transport ports and
//!    flags, the tunnels crossed (VXLAN, Geneve, GRE, ERSPAN, MPLS, GTP-U,
//!    IP-in-IP: the view is the innermost packet), plus at most one counted
//!    [`decode::DecodeError`] naming the layer that stopped decoding. It
//!    never panics. Fragmented tunnel packets are put back together by
//!    [`decode::Reassembler`], the one stateful, capped part of decoding.
//! 2. [`vnet`] tags the packet with the VNet and role it belongs to (from a
//!    tunnel id, its VLAN ids or the capture source).
//! 3. [`flow`] aggregates packets into bidirectional flows with idle, active,
//!    TCP-end and capacity expiry, emitting [`record::FlowRecord`]s.
//! 4. [`bins`] counts packets and bytes per VNet in fixed time bins, emitting
//!    [`record::BinRecord`]s (the paper's Fig. 5 forwarding-rate view).
//! 5. [`voip`] follows SIP calls and RTP streams and scores them (E-model
//!    MOS per window and per jitter-buffer model), emitting calls, streams,
//!    windows and shadow-versus-production comparisons.
//! 6. [`ids`] runs the behavioural detectors and the signature engine
//!    ([`ids::rules`]), emitting [`record::AlertRecord`]s.
//! 7. [`schema`] is the table of datasets ([`schema::TABLE`]): each record
//!    type's Arrow schema, partition columns and conversion into record
//!    batches, so the node writes Parquet and every reader agrees on
//!    columns.
//!
//! [`slot_index`] is the hash index the hot tables (flows, RTP streams,
//! the IDS tables of `ids::state`) look their entries up in, built so
//! that a lookup can be prefetched.
//!
//! Time always comes from the packets ([`time::Timestamp`]), so replaying a
//! capture twice gives the same records. Every table that packets create
//! state in is capped, and what a cap drops is counted.

pub mod bins;
pub mod decode;
pub mod flow;
pub mod ids;
pub mod record;
pub mod schema;
pub mod slot_index;
pub mod time;
pub mod vnet;
pub mod voip;

pub use decode::{decode, decode_into, decode_with, DecodeConfig, DecodeError, Decoded, LinkType};
pub use time::Timestamp;
