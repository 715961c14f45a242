//! Bidirectional flow metering.
//!
//! - [`key`]: the canonical (VNet, protocol, endpoints) key, equal for both
//!   directions of a conversation.
//! - [`fragments`]: gives later IP fragments the ports of their first one.
//! - [`table`]: the capped flow table (indexed by [`crate::slot_index`])
//!   with LRU order, expiry (idle, active, TCP end) and eviction, all on
//!   packet time.

pub mod fragments;
pub mod key;
pub mod table;

pub use key::FlowKey;
pub use table::{FlowConfig, FlowPacket, FlowStats, FlowTable, PacketFlow};
