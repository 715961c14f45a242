//! moni-collector: the central service of the Monitoring VNets.
//!
//! Nodes upload their reduced Parquet files ([`server`], over [`http`]'s
//! capped connection layer, HTTPS and mutual TLS by [`tls`]); each upload
//! is validated against `analyzers::schema::TABLE` and stored durably in a
//! Hive-partitioned dataset ([`store`], after [`precheck`] has checked what
//! the Parquet decoder would trust) on local disk or S3 ([`backend`])
//! that DuckDB, Spark or Trino read directly; [`compare`] answers whether a
//! shadow VNet is ready to replace production, from the collected windows,
//! and [`figure`] draws its report. [`config`] is the TOML configuration,
//! [`metrics`] the Prometheus metrics, [`limits`] the fd limit behind the
//! connection cap.

pub mod backend;
pub mod compare;
pub mod config;
pub mod figure;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod precheck;
pub mod server;
pub mod store;
pub mod tls;
