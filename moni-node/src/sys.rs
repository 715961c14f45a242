//! Operating-system calls the crates do not wrap: niceness and CPU pinning
//! (keeping the probe out of production's way) and waiting on a capture
//! descriptor.
//!
//! The only unsafe code of the node: libc calls whose arguments are plain
//! integers or a pointer to a local that outlives the call.
#![allow(unsafe_code)]

/// Sets the niceness of the whole process (0 leaves it unchanged).
pub fn set_nice(nice: i32) -> anyhow::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: setpriority takes integers only; PRIO_PROCESS with who = 0
    // means this process.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        anyhow::bail!(
            "node.nice {nice}: cannot set: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Pins the calling thread to `cpus[index % len]`; no-op for an empty list.
pub fn pin_current_thread(cpus: &[usize], index: usize, what: &str) {
    if cpus.is_empty() {
        return;
    }
    let cpu = cpus[index % cpus.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::warn!(cpu, thread = what, "Could not pin thread to CPU.");
    }
}

/// Waits until `fd` is readable or `timeout_ms` passed; true if readable.
pub fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd on this stack frame for the whole
    // call, and nfds is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    rc > 0
}
