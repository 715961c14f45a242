//! moni-node: the probe that runs in each Moni VNode.
//!
//! Data path: a [`capture::PacketSource`] (capture file now, mirrored
//! interface later) hands frames to the [`pipeline::Engine`], which runs the
//! `analyzers` (decode, VNet tagging, time bins, flows) on packet time; the
//! finished records go to the Parquet datasets in [`export`]. [`replay`]
//! wires these for `moni-node replay`; [`cli`] is the command line.

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
