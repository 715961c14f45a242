//! `[metrics]`: the Prometheus endpoint (validated with `[node]`).

use serde::{Deserialize, Serialize};

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address of `/metrics` and `/healthz`; empty disables. Default
    /// `127.0.0.1:9464`.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: "127.0.0.1:9464".into(),
        }
    }
}
