//! The file-descriptor limit and the connection cap that follows from it.
//!
//! The only unsafe code of the collector: `getrlimit`/`setrlimit` with a
//! pointer to a local that outlives the call.
#![allow(unsafe_code)]

/// Descriptors kept free of connections: stored files, `.incoming` temp
/// files, S3 sockets, the listener, the runtime.
pub const FD_RESERVE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit in force afterwards (`None` if it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            r.rlim_cur = r.rlim_max;
        } else {
            tracing::warn!(
                soft = r.rlim_cur,
                hard = r.rlim_max,
                error = %std::io::Error::last_os_error(),
                "Cannot raise the file-descriptor limit."
            );
        }
    }
    Some(r.rlim_cur)
}

/// The connection cap: the configured one, lowered so that connections
/// plus the probe slots' descriptors (`probe_fds`: their sockets and
/// the duplicates they may keep) plus [`FD_RESERVE`] fit under the fd
/// limit.
pub fn connection_cap(configured: usize, probe_fds: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return configured;
    };
    let room = limit.saturating_sub(FD_RESERVE + probe_fds as u64);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_under_the_fd_limit() {
        assert_eq!(connection_cap(1024, 32, Some(1024)), 1024 - 128 - 32);
        assert_eq!(connection_cap(1024, 32, Some(65536)), 1024);
        assert_eq!(connection_cap(1024, 32, Some(100)), 0);
        assert_eq!(connection_cap(1024, 32, None), 1024);
        let soft = raise_fd_limit().expect("getrlimit");
        assert!(soft >= 64, "{soft}");
    }
}
