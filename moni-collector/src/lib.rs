//! moni-collector: the central service of the Monitoring VNets.
//!
//! Nodes upload their reduced Parquet files ([`server`]); each upload is
//! validated and stored durably in a Hive-partitioned dataset ([`store`])
//! that DuckDB, Spark or Trino read directly; [`compare`] answers whether a
//! shadow VNet is ready to replace production, from the collected windows.

pub mod backend;
pub mod compare;
pub mod config;
pub mod figure;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod store;
pub mod tls;
