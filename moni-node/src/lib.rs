//! moni-node: the probe that runs in each Moni VNode.
//!
//! Data path: frames from capture files or live mirrored interfaces
//! ([`capture`]) go to the [`pipeline::Engine`], which runs the `analyzers`
//! (decode, VNet tagging, time bins, flows, VoIP, IDS) on packet time; the
//! finished records go to the Parquet datasets and `eve.json` in
//! [`export`]. [`replay`] wires these for `moni-node replay`, [`run`] for
//! the live probe; [`config`] is the node's configuration (reference:
//! `samples/config/reference.toml`); [`cli`] is the command line.

pub mod capture;
pub mod cli;
pub mod config;
pub mod export;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod run;
pub mod summary;
pub mod sys;
pub mod telemetry;
