//! Process self-measurement.

/// Peak resident set size of this process in bytes (`VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size in bytes (`VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `process_*` metrics of the prometheus crate's collector, with
/// `process_cpu_seconds_total` to the nanosecond: the crate counts it in
/// whole seconds (an integer counter), which makes `rate()` of an idle
/// probe's CPU a staircase of 0 and 1.
#[cfg(target_os = "linux")]
pub struct ProcessMetrics(prometheus::process_collector::ProcessCollector);

#[cfg(target_os = "linux")]
impl ProcessMetrics {
    pub fn for_self() -> ProcessMetrics {
        ProcessMetrics(prometheus::process_collector::ProcessCollector::for_self())
    }
}

#[cfg(target_os = "linux")]
impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.0.collect();
        for f in &mut families {
            if f.name() == "process_cpu_seconds_total" {
                for m in f.mut_metric().iter_mut() {
                    let mut c = prometheus::proto::Counter::default();
                    c.set_value(crate::sys::process_cpu_seconds());
                    m.set_counter(c);
                }
            }
        }
        families
    }
}
