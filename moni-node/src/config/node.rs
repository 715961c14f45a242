//! `[node]`: the long-running probe (`moni-node run`): threads, queues,
//! clock and CPU pinning, validated with `[metrics]` into
//! [`NodeSettings`].

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, NodeConfig};

/// The CPUs this process may be pinned to: its affinity mask, or, where
/// that cannot be read, 0 up to the available parallelism.
pub(super) fn usable_cpus() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `[node]`: the long-running probe (`moni-node run` only).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Value of the `node` label. Default `moni`.
    pub name: String,
    /// Analyzer worker threads. Default 1.
    pub workers: usize,
    /// Batches queued per worker before the capture thread drops. Default 256.
    pub queue_batches: usize,
    /// A partly filled batch is sent after this many ms. Default 50.
    pub batch_flush_ms: u64,
    /// Clock tick in ms (idle expiry, metrics, rotation). Default 1000.
    pub tick_ms: u64,
    /// Niceness of the process (-20 to 19): the probe yields the CPU to
    /// production, and where cgroups cannot be used this is all the
    /// isolation there is. 0 leaves it unchanged. Default 10.
    pub nice: i32,
    /// `cpu.weight` (1-10000; every other cgroup's default is 100) of the
    /// cgroup `moni-node run` puts itself in, and its `io.weight`: on a
    /// contended CPU the probe gets cpu_weight / (cpu_weight + 100) of it
    /// and drops its own packets (counted) rather than slow production;
    /// on an idle host it may use everything. Under systemd the unit's
    /// `CPUWeight=`/`IOWeight=` set it instead; on a cgroup v1 host it
    /// becomes `cpu.shares` (weight x 10.24). 0 leaves cgroups alone.
    /// Default 1, the lowest: the lab's Fig. 5 (docs/lab.md) kept 100 %
    /// of production's forwarding with it, 84 % with 10.
    pub cpu_weight: u32,
    /// Run every thread of the probe in the `SCHED_IDLE` scheduling class:
    /// a production thread that wakes takes the probe's CPU at once, where
    /// a low `cpu_weight` alone lets the probe finish its time slice first.
    /// The lab's TCP at full speed (docs/lab.md) lost 4-15 % to the probe
    /// without it. Under systemd `CPUSchedulingPolicy=idle` does the same.
    /// Default true.
    pub sched_idle: bool,
    /// `cpu.max` of that cgroup in CPUs (0.5 = half of one CPU, 1.5 = one
    /// and a half): a hard cap that holds even on an idle host. 0: no
    /// cap. Default 0.
    pub cpu_max: f64,
    /// CPUs to pin capture threads to (round robin) and worker threads to;
    /// each must be in the process's affinity mask. Default none (no
    /// pinning).
    pub capture_cpus: Vec<usize>,
    pub worker_cpus: Vec<usize>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: "moni".into(),
            workers: 1,
            queue_batches: 256,
            batch_flush_ms: 50,
            tick_ms: 1000,
            nice: 10,
            cpu_weight: 1,
            sched_idle: true,
            cpu_max: 0.0,
            capture_cpus: Vec::new(),
            worker_cpus: Vec::new(),
        }
    }
}

/// Validated `[node]` and `[metrics]` settings.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub name: String,
    pub workers: usize,
    pub queue_batches: usize,
    pub batch_flush: std::time::Duration,
    pub tick: std::time::Duration,
    pub nice: i32,
    /// `node.cpu_weight`; 0: cgroups left alone.
    pub cpu_weight: u32,
    /// `node.sched_idle`.
    pub sched_idle: bool,
    /// `node.cpu_max` in CPUs; 0: no cap.
    pub cpu_max: f64,
    pub capture_cpus: Vec<usize>,
    pub worker_cpus: Vec<usize>,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl NodeConfig {
    pub(super) fn node_settings(&self) -> Result<NodeSettings, ConfigError> {
        let n = &self.node;
        if n.name.is_empty()
            || n.name.len() > 64
            || !n
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "node.name",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        if n.workers == 0 || n.workers > 256 {
            return Err(invalid("node.workers", "must be between 1 and 256"));
        }
        if n.queue_batches == 0 || n.queue_batches > 65_536 {
            return Err(invalid("node.queue_batches", "must be between 1 and 65536"));
        }
        if n.batch_flush_ms == 0 || n.batch_flush_ms > 10_000 {
            return Err(invalid(
                "node.batch_flush_ms",
                "must be between 1 and 10000",
            ));
        }
        if n.tick_ms < 10 || n.tick_ms > 60_000 {
            return Err(invalid("node.tick_ms", "must be between 10 and 60000"));
        }
        if !(-20..=19).contains(&n.nice) {
            return Err(invalid("node.nice", "must be between -20 and 19"));
        }
        if n.cpu_weight > 10_000 {
            return Err(invalid(
                "node.cpu_weight",
                "must be between 1 and 10000 (0: leave cgroups alone)",
            ));
        }
        if !n.cpu_max.is_finite() || n.cpu_max < 0.0 || (n.cpu_max > 0.0 && n.cpu_max < 0.01) {
            return Err(invalid(
                "node.cpu_max",
                "must be 0 (no cap) or a number of CPUs of at least 0.01",
            ));
        }
        if !n.capture_cpus.is_empty() || !n.worker_cpus.is_empty() {
            let usable = usable_cpus();
            for (key, list) in [
                ("node.capture_cpus", &n.capture_cpus),
                ("node.worker_cpus", &n.worker_cpus),
            ] {
                if let Some(c) = list.iter().find(|c| !usable.contains(c)) {
                    return Err(invalid(
                        key,
                        format!(
                            "CPU {c} is not one this process may run on (usable: {})",
                            usable
                                .iter()
                                .map(usize::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        let listen = self.metrics.listen.trim();
        let metrics_listen = if listen.is_empty() {
            None
        } else {
            Some(listen.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{listen:?} is not an address:port like 127.0.0.1:9464"),
                )
            })?)
        };
        Ok(NodeSettings {
            name: n.name.clone(),
            workers: n.workers,
            queue_batches: n.queue_batches,
            batch_flush: std::time::Duration::from_millis(n.batch_flush_ms),
            tick: std::time::Duration::from_millis(n.tick_ms),
            nice: n.nice,
            cpu_weight: n.cpu_weight,
            sched_idle: n.sched_idle,
            cpu_max: n.cpu_max,
            capture_cpus: n.capture_cpus.clone(),
            worker_cpus: n.worker_cpus.clone(),
            metrics_listen,
        })
    }
}
