//! Keeping the probe out of production's way (the paper's "no probe
//! effect"): `moni-node run` enters the `SCHED_IDLE` scheduling class
//! (`node.sched_idle`), lowers its niceness (`node.nice`) and puts
//! itself in a cgroup of its own with a low `cpu.weight` and `io.weight`
//! (`node.cpu_weight`) and, if asked, a hard `cpu.max` (`node.cpu_max`),
//! before it starts a thread, so every thread inherits both.
//!
//! Where the cgroup comes from, in order:
//! 1. Under systemd (its cgroup is a `.service`): the unit's own cgroup,
//!    which the unit's `CPUWeight=`/`IOWeight=` already set; the node
//!    writes its values there only if it may (a delegated unit) and
//!    otherwise reports what the unit set.
//! 2. cgroup v2 with the `cpu` controller: a new `moni-node-<pid>` under
//!    the root of the hierarchy (`cpu` and `io` enabled for it).
//! 3. A hybrid host whose `cpu` controller is still on cgroup v1: a new
//!    `moni-node-<pid>` in the v1 `cpu` hierarchy (`cpu.shares` = weight x
//!    10.24, `cpu.cfs_quota_us`) and, where the kernel offers a weight,
//!    in `blkio`.
//! 4. Otherwise it says so once (a warning naming why) and carries on with
//!    `nice` alone.
//!
//! The cgroups it created are left and removed when the node exits (what
//! a `kill -9` leaves is an empty directory named after the dead pid, which
//! the next node to start in that place removes).
//!
//! With a low weight the probe only loses CPU when production wants it;
//! its capture path then falls behind, and what it cannot read is dropped
//! by the kernel from the probe's own bounded ring (`kernel_drops`) or by
//! the capture thread at a full worker queue (`queue_drops`): the probe
//! drops its own packets, counted, instead of taking CPU from production.

use std::path::{Path, PathBuf};

use crate::config::NodeSettings;

/// The period `cpu.max` and `cpu.cfs_quota_us` are expressed in (µs).
const PERIOD_US: u64 = 100_000;

/// A mounted cgroup hierarchy and this process's cgroup in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// Mount point, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/cpu`.
    pub mount: PathBuf,
    /// This process's cgroup relative to the mount, e.g. `/` or
    /// `/system.slice/moni-node.service`.
    pub own: String,
}

impl Hierarchy {
    /// The directory of this process's cgroup.
    fn own_dir(&self) -> PathBuf {
        self.mount.join(self.own.trim_start_matches('/'))
    }
}

/// The hierarchies that matter for isolation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub v2: Option<Hierarchy>,
    pub v1_cpu: Option<Hierarchy>,
    pub v1_blkio: Option<Hierarchy>,
}

/// Reads the hierarchies from `/proc/self/mountinfo` and
/// `/proc/self/cgroup` text.
pub fn hierarchies(mountinfo: &str, proc_cgroup: &str) -> Hierarchies {
    // Mounts: (fstype, mount point, root inside the hierarchy, super options).
    let mut v2_mount = None;
    let mut v1 = Vec::new();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < dash + 4 || dash < 5 {
            continue;
        }
        let (root, point, fstype, sopts) = (f[3], f[4], f[dash + 1], f[dash + 3]);
        match fstype {
            "cgroup2" if v2_mount.is_none() => v2_mount = Some((point, root)),
            "cgroup" => v1.push((point, root, sopts)),
            _ => {}
        }
    }
    let mut h = Hierarchies::default();
    for line in proc_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        // A cgroup namespace shows paths relative to its root; a bind
        // mount of a sub-tree shows the sub-tree as its root.
        let rel = |root: &str| -> String {
            let p = path
                .strip_prefix(root.trim_end_matches('/'))
                .unwrap_or(path);
            if p.is_empty() {
                "/".into()
            } else {
                p.into()
            }
        };
        if ctrls.is_empty() {
            if let Some((point, root)) = v2_mount {
                h.v2 = Some(Hierarchy {
                    mount: point.into(),
                    own: rel(root),
                });
            }
            continue;
        }
        let names: Vec<&str> = ctrls.split(',').collect();
        for (point, root, sopts) in &v1 {
            let opts: Vec<&str> = sopts.split(',').collect();
            if !names.iter().all(|n| opts.contains(n)) {
                continue;
            }
            let hier = Hierarchy {
                mount: (*point).into(),
                own: rel(root),
            };
            if names.contains(&"cpu") && h.v1_cpu.is_none() {
                h.v1_cpu = Some(hier.clone());
            }
            if names.contains(&"blkio") && h.v1_blkio.is_none() {
                h.v1_blkio = Some(hier);
            }
        }
    }
    h
}

/// cgroup v1 `cpu.shares` for a v2 `cpu.weight` (systemd's mapping).
pub fn shares_for_weight(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).clamp(2, 262_144)
}

/// cgroup v1 `blkio.weight` (10-1000, default 500) for an `io.weight`
/// (1-10000, default 100).
pub fn blkio_for_weight(weight: u32) -> u64 {
    (u64::from(weight) * 5).clamp(10, 1000)
}

/// The quota in µs per [`PERIOD_US`] for `cpus` CPUs.
pub fn quota_us(cpus: f64) -> u64 {
    ((cpus * PERIOD_US as f64).round() as u64).max(1000)
}

/// The isolation in force; dropping it moves the process back to the
/// cgroups it came from and removes the ones it created.
#[derive(Debug, Default)]
pub struct Isolation {
    /// One line for the log and the operator: what was set where.
    pub description: String,
    /// The cgroup directories the process now runs in (empty: none).
    pub cgroups: Vec<PathBuf>,
    /// (created cgroup, `cgroup.procs` of the one left) to undo.
    undo: Vec<(PathBuf, PathBuf)>,
}

impl Drop for Isolation {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        for (created, back) in self.undo.drain(..) {
            let _ = std::fs::write(&back, &pid);
            // Fails (and is left) while something else still runs in it.
            let _ = std::fs::remove_dir(&created);
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value).map_err(|e| format!("{}: {e}", dir.join(file).display()))
}

/// A new `moni-node-<pid>` cgroup under `parent`, or why not. The empty
/// ones that nodes killed with SIGKILL left beside it go first.
fn create(parent: &Path) -> Result<PathBuf, String> {
    let swept = sweep_stale(parent, |pid| Path::new(&format!("/proc/{pid}")).exists());
    if swept > 0 {
        tracing::info!(parent = %parent.display(), swept, "Removed cgroups of nodes that are gone.");
    }
    let dir = parent.join(format!("moni-node-{}", std::process::id()));
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// Removes the `moni-node-<pid>` directories under `parent` whose process
/// is gone (`alive` says), as a node that was killed with SIGKILL could
/// not; returns how many. `rmdir` removes only an empty cgroup, so one
/// that still holds a process, whatever its name says, stays.
fn sweep_stale(parent: &Path, alive: impl Fn(u32) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut swept = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("moni-node-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) && std::fs::remove_dir(e.path()).is_ok() {
            swept += 1;
        }
    }
    swept
}

/// Moves this process into `dir`, remembering how to undo it.
fn enter(iso: &mut Isolation, dir: &Path, from: &Hierarchy) -> Result<(), String> {
    write(dir, "cgroup.procs", &std::process::id().to_string())?;
    iso.undo
        .push((dir.to_path_buf(), from.own_dir().join("cgroup.procs")));
    iso.cgroups.push(dir.to_path_buf());
    Ok(())
}

/// Sets `node.sched_idle`, `node.nice` and the cgroup; never fails: what could not be done
/// is logged once (a warning) and described in the result.
pub fn apply(node: &NodeSettings) -> Isolation {
    let mut iso = Isolation::default();
    let mut notes = Vec::new();
    let mut class = "";
    if node.sched_idle {
        match crate::sys::set_sched_idle() {
            Ok(()) => class = "SCHED_IDLE, ",
            Err(e) => {
                tracing::warn!(error = %e, "Could not enter the idle scheduling class.");
                notes.push(e.to_string());
            }
        }
    }
    if let Err(e) = crate::sys::set_nice(node.nice) {
        tracing::warn!(error = %e, "Could not lower the probe's priority.");
        notes.push(format!("nice not set: {e}"));
    }
    if node.cpu_weight == 0 && node.cpu_max == 0.0 {
        iso.description = format!(
            "nice {}; cgroups left alone (node.cpu_weight = 0)",
            node.nice
        );
    } else {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let h = hierarchies(&read("/proc/self/mountinfo"), &read("/proc/self/cgroup"));
        iso = place(iso, node, &h);
    }
    iso.description = format!("{class}{}", iso.description);
    if !notes.is_empty() {
        iso.description = format!("{} ({})", iso.description, notes.join("; "));
    }
    iso
}

/// Puts the process in a cgroup of `h` (see the module doc).
fn place(mut iso: Isolation, node: &NodeSettings, h: &Hierarchies) -> Isolation {
    let weight = node.cpu_weight.max(1);
    let cpu_max = (node.cpu_max > 0.0).then(|| format!("{} {PERIOD_US}", quota_us(node.cpu_max)));
    let mut why = Vec::new();
    match try_v2(&mut iso, h, weight, cpu_max.as_deref()) {
        Ok(d) => iso.description = d,
        Err(e) => {
            why.push(e);
            match try_v1(&mut iso, h, weight, node.cpu_max) {
                Ok(d) => iso.description = d,
                Err(e) => why.push(e),
            }
        }
    }
    if iso.description.is_empty() {
        let reason = why.join("; ");
        tracing::warn!(
            reason = %reason,
            nice = node.nice,
            "cgroups are not writable here; the probe carries on with its niceness and scheduling class alone."
        );
        iso.description = format!("nice {} only (cgroups not writable: {reason})", node.nice);
    } else {
        iso.description = format!("nice {}; {}", node.nice, iso.description);
        tracing::info!(isolation = %iso.description, "Probe isolated from production.");
    }
    iso
}

fn try_v2(
    iso: &mut Isolation,
    h: &Hierarchies,
    weight: u32,
    cpu_max: Option<&str>,
) -> Result<String, String> {
    let Some(v2) = &h.v2 else {
        return Err("no cgroup v2 hierarchy".into());
    };
    let own = v2.own_dir();
    if v2.own.ends_with(".service") && own.join("cpu.weight").exists() {
        // The service manager made this cgroup for us: its unit says what
        // the weights are; write ours only where delegated.
        let set = write(&own, "cpu.weight", &weight.to_string()).is_ok();
        if set {
            let _ = write(&own, "io.weight", &format!("default {weight}"));
            if let Some(m) = cpu_max {
                let _ = write(&own, "cpu.max", m);
            }
        }
        let get = |f: &str| {
            std::fs::read_to_string(own.join(f))
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "-".into())
        };
        iso.cgroups.push(own.clone());
        return Ok(format!(
            "cgroup v2 {} ({}): cpu.weight {}, io.weight {}, cpu.max {}",
            own.display(),
            if set {
                "set by the node"
            } else {
                "set by the service unit"
            },
            get("cpu.weight"),
            get("io.weight"),
            get("cpu.max")
        ));
    }
    let mount = &v2.mount;
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "cpu") {
        return Err(format!(
            "the cgroup v2 hierarchy at {} has no cpu controller",
            mount.display()
        ));
    }
    for c in ["+cpu", "+io"] {
        let _ = write(mount, "cgroup.subtree_control", c);
    }
    let dir = create(mount)?;
    let setup = (|| {
        write(&dir, "cpu.weight", &weight.to_string())?;
        if let Some(m) = cpu_max {
            write(&dir, "cpu.max", m)?;
        }
        enter(iso, &dir, v2)
    })();
    if let Err(e) = setup {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    // io.weight needs a scheduler that honours it (BFQ); best effort.
    let io = write(&dir, "io.weight", &format!("default {weight}")).is_ok();
    Ok(format!(
        "cgroup v2 {}: cpu.weight {weight}, io.weight {}, cpu.max {}",
        dir.display(),
        if io { weight.to_string() } else { "-".into() },
        cpu_max.unwrap_or("max")
    ))
}

fn try_v1(
    iso: &mut Isolation,
    h: &Hierarchies,
    weight: u32,
    cpu_max: f64,
) -> Result<String, String> {
    let Some(cpu) = &h.v1_cpu else {
        return Err("no cgroup v1 cpu hierarchy".into());
    };
    let dir = create(&cpu.own_dir())?;
    let shares = shares_for_weight(weight);
    let setup = (|| {
        write(&dir, "cpu.shares", &shares.to_string())?;
        if cpu_max > 0.0 {
            write(&dir, "cpu.cfs_period_us", &PERIOD_US.to_string())?;
            write(&dir, "cpu.cfs_quota_us", &quota_us(cpu_max).to_string())?;
        }
        enter(iso, &dir, cpu)
    })();
    if let Err(e) = setup {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    let mut io = "-".to_string();
    if let Some(blkio) = &h.v1_blkio {
        if let Ok(bdir) = create(&blkio.own_dir()) {
            let w = blkio_for_weight(weight).to_string();
            let ok = ["blkio.weight", "blkio.bfq.weight"]
                .iter()
                .any(|f| bdir.join(f).exists() && write(&bdir, f, &w).is_ok());
            if ok && enter(iso, &bdir, blkio).is_ok() {
                io = format!("blkio.weight {w}");
            } else {
                let _ = std::fs::remove_dir(&bdir);
            }
        }
    }
    Ok(format!(
        "cgroup v1 {}: cpu.shares {shares}, cpu.cfs_quota_us {}, {io}",
        dir.display(),
        if cpu_max > 0.0 {
            quota_us(cpu_max).to_string()
        } else {
            "-1".into()
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
38 35 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
39 35 0:34 / /sys/fs/cgroup/blkio rw,nosuid shared:15 - cgroup cgroup rw,blkio
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw";

    #[test]
    fn a_hybrid_host_has_v1_cpu_and_blkio_beside_v2() {
        let h = hierarchies(
            HYBRID_MOUNTS,
            "4:blkio:/user.slice\n3:cpu,cpuacct:/user.slice\n0::/user.slice/session-2.scope\n",
        );
        assert_eq!(
            h.v2,
            Some(Hierarchy {
                mount: "/sys/fs/cgroup/unified".into(),
                own: "/user.slice/session-2.scope".into()
            })
        );
        let cpu = h.v1_cpu.expect("v1 cpu");
        assert_eq!(cpu.mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            cpu.own_dir(),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice")
        );
        assert_eq!(h.v1_blkio.expect("blkio").own, "/user.slice");
    }

    #[test]
    fn a_unified_host_under_systemd_names_the_service_cgroup() {
        let h = hierarchies(
            "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/system.slice/moni-node.service\n",
        );
        let v2 = h.v2.expect("v2");
        assert_eq!(
            v2.own_dir(),
            PathBuf::from("/sys/fs/cgroup/system.slice/moni-node.service")
        );
        assert_eq!(h.v1_cpu, None);
    }

    #[test]
    fn a_container_root_is_the_mount_itself() {
        let h = hierarchies(
            "500 400 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/docker/abc\n",
        );
        assert_eq!(h.v2.expect("v2").own, "/");
        // Garbage never panics and finds nothing.
        let h = hierarchies("- - -\n1 2\n\u{0}", "::\nx\n1:cpu\n");
        assert_eq!(h, Hierarchies::default());
    }

    #[test]
    fn without_writable_cgroups_it_says_why_and_keeps_nice() {
        let node = crate::config::NodeConfig::default()
            .resolve(None)
            .expect("defaults resolve")
            .node;
        assert_eq!(
            (node.nice, node.cpu_weight),
            (10, 1),
            "the service defaults"
        );
        let gone = tempfile::tempdir().expect("tempdir");
        let missing = gone.path().join("no-such-cgroup-fs");
        let h = Hierarchies {
            v2: Some(Hierarchy {
                mount: missing.clone(),
                own: "/".into(),
            }),
            v1_cpu: Some(Hierarchy {
                mount: missing,
                own: "/".into(),
            }),
            v1_blkio: None,
        };
        let iso = place(Isolation::default(), &node, &h);
        assert!(
            iso.description
                .starts_with("nice 10 only (cgroups not writable: the cgroup v2 hierarchy at "),
            "{}",
            iso.description
        );
        assert!(iso.description.contains("has no cpu controller"));
        assert!(iso.cgroups.is_empty());
        let none = place(Isolation::default(), &node, &Hierarchies::default());
        assert_eq!(
            none.description,
            "nice 10 only (cgroups not writable: no cgroup v2 hierarchy; no cgroup v1 cpu hierarchy)"
        );
    }

    #[test]
    fn cgroups_of_nodes_that_are_gone_are_swept_and_no_others() {
        let root = tempfile::tempdir().expect("tempdir");
        let p = root.path();
        let own = format!("moni-node-{}", std::process::id());
        for d in [
            "moni-node-41",
            "moni-node-42",
            "moni-node-43",
            own.as_str(),
            "moni-node-x",
            "moni-lab-41",
        ] {
            std::fs::create_dir(p.join(d)).expect("mkdir");
        }
        // 43 is gone but not empty: a cgroup with a process in it.
        std::fs::write(p.join("moni-node-43/cgroup.procs"), "1").expect("write");
        let swept = sweep_stale(p, |pid| pid == 42);
        assert_eq!(swept, 1);
        let mut left: Vec<String> = std::fs::read_dir(p)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            "moni-lab-41".to_string(),
            "moni-node-42".into(),
            "moni-node-43".into(),
            own,
            "moni-node-x".into(),
        ];
        want.sort();
        assert_eq!(left, want);
        // A missing parent sweeps nothing.
        assert_eq!(sweep_stale(&p.join("none"), |_| false), 0);
    }

    #[test]
    fn weights_and_quotas_map_as_systemd_maps_them() {
        assert_eq!(shares_for_weight(100), 1024);
        assert_eq!(shares_for_weight(10), 102);
        assert_eq!(shares_for_weight(1), 10);
        assert_eq!(shares_for_weight(10_000), 102_400);
        assert_eq!(blkio_for_weight(100), 500);
        assert_eq!(blkio_for_weight(1), 10);
        assert_eq!(blkio_for_weight(10_000), 1000);
        assert_eq!(quota_us(0.5), 50_000);
        assert_eq!(quota_us(1.5), 150_000);
        assert_eq!(quota_us(0.001), 1000);
    }
}
