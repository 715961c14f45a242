//! moni-node: the probe that runs in each Moni VNode.
//!
//! One pipeline for `replay` and `run` (`ARCHITECTURE.md` walks a packet
//! through it): a [`capture::PacketSource`] (capture file or mirrored
//! interface) is read by the one capture loop ([`capture::driver`]), which
//! runs the cross-flow IDS detectors and shards packets to the analysis
//! [`worker`]s; each runs a [`pipeline::Engine`] (the `analyzers` on packet
//! time); finished records leave as one [`sink::Records`] value through
//! the [`sink`] stages into the Parquet datasets and `eve.json` of
//! [`export`]. [`replay`] and [`run`] only choose the sources, the pacing
//! and the overload policy; [`config`] is the node's
//! configuration (reference: `samples/config/reference.toml`); [`cli`] is the
//! command line.

pub mod capture;
pub mod cli;
pub mod config;
pub mod export;
pub mod health;
pub mod http;
pub mod isolation;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod run;
pub mod shard;
pub mod sink;
pub mod summary;
pub mod sys;
pub mod telemetry;
pub mod worker;
