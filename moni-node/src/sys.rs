//! Operating-system calls the crates do not wrap: niceness, the idle
//! scheduling class and CPU pinning (keeping the probe out of
//! production's way), an interface's MTU, waiting on a capture
//! descriptor and attaching its kernel filter, huge pages for the process's heaps, and cache prefetch.
//!
//! The only unsafe code of the node: libc calls whose arguments are plain
//! integers or a pointer to a local that outlives the call, and the
//! prefetch hint, which reads nothing.
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

/// Lowers the calling thread's priority by `by` nice steps (0 leaves it
/// unchanged); the process's other threads keep theirs (Linux keeps a
/// nice value per thread). Lowering never needs a privilege; a failure
/// leaves the thread as it was, which costs speed, never a result.
pub fn lower_thread_priority(by: i32) {
    if by <= 0 {
        return;
    }
    // SAFETY: getpriority and setpriority take integers only;
    // PRIO_PROCESS with who = 0 means the calling thread on Linux.
    unsafe {
        // -1 is also a valid niceness: errno tells an error apart.
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        if now == -1 && *libc::__errno_location() != 0 {
            return;
        }
        let _ = libc::setpriority(libc::PRIO_PROCESS, 0, (now + by).min(19));
    }
}

/// Puts the calling thread, and every thread it starts afterwards, in the
/// `SCHED_IDLE` class: it runs only on a CPU nothing else wants, and a
/// production thread that wakes takes its CPU at once, without waiting
/// out the probe's time slice. A low cgroup weight alone bounds the
/// probe's share but lets it keep the CPU for a slice, and a TCP stream's
/// sender and receiver wait on each other at a finer grain than that.
pub fn set_sched_idle() -> anyhow::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 means the calling thread; `param` is a local that
    // outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        anyhow::bail!(
            "node.sched_idle: cannot enter SCHED_IDLE: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The MTU of `interface` in this process's network namespace (an
/// ioctl, not `/sys/class/net`, which shows the namespace `/sys` was
/// mounted in), or `None` where there is no such interface.
pub fn interface_mtu(interface: &str) -> Option<u32> {
    let name = interface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return None;
    }
    // SAFETY: a datagram socket; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name (NUL-terminated: the name is
    // shorter than IFNAMSIZ and the rest is zero) and writes ifru_mtu of
    // `req`, a local that outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) };
    // SAFETY: fd is the socket opened above, closed once.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    // SAFETY: the ioctl succeeded, so it wrote the MTU member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).ok().filter(|m| *m > 0)
}

/// Starts `f` on a scoped thread named `name` (what `top -H`, `ps -L`,
/// perf and /proc show: at most 15 bytes on Linux), so that an operator
/// or a profile can tell the capture, the workers and the writer apart.
/// A thread that cannot be started is a panic, as with `Scope::spawn`.
pub fn spawn_named<'scope, 'env, F, T>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: String,
    f: F,
) -> std::thread::ScopedJoinHandle<'scope, T>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    match std::thread::Builder::new()
        .name(name.clone())
        .spawn_scoped(scope, f)
    {
        Ok(h) => h,
        Err(e) => panic!("cannot start thread {name}: {e}"),
    }
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

/// Asks the CPU to bring the two cache lines at `bytes`' start into its
/// cache without waiting for them. A worker reads each packet of a batch
/// (its capture-side decode, its first payload bytes) once, moments after
/// the capture thread wrote them on another core; prefetching a few
/// packets ahead overlaps those cross-core transfers with the analysis of
/// the packets before instead of stalling on each in turn.
#[inline(always)]
pub fn prefetch(bytes: &[u8]) {
    prefetch_ptr(bytes.as_ptr());
}

/// [`prefetch`] for a value's first two cache lines.
#[inline(always)]
pub fn prefetch_value<T>(value: &T) {
    prefetch_ptr(std::ptr::from_ref(value).cast::<u8>());
}

/// [`prefetch`] for every cache line that `len` bytes from `p` touch: what
/// an analyzer says a packet will update (a flow's 128-byte slot; an RTP
/// stream's 1,440-byte entry, all of whose 23 or 24 lines a packet of the
/// stream reads or writes).
#[inline(always)]
pub fn prefetch_lines(p: *const u8, len: usize) {
    let skew = p as usize % 64;
    let first = p.wrapping_sub(skew);
    let mut off = 0;
    while off < len + skew {
        prefetch_line(first.wrapping_add(off));
        off += 64;
    }
}

/// The line at `p` and the next.
#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    prefetch_line(p);
    prefetch_line(p.wrapping_add(64));
}

/// The one cache line at `p`: for an 8-byte index entry (the flow table's
/// [`lookahead`](analyzers::flow::FlowTable::lookahead)), where a second
/// line would only take one of the few loads the core keeps in flight.
#[inline(always)]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it never faults and reads nothing
        // into the program, whatever the address (callers may name a line
        // past a value; `wrapping_add` forms that address without
        // claiming it is in bounds). SSE is part of x86_64's baseline.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The calling thread's CPU time so far (user and system), in seconds; 0
/// if the clock cannot be read. What tells which thread limits a
/// pipeline: the busiest one's CPU time is close to the run's wall time.
pub fn thread_cpu_seconds() -> f64 {
    cpu_clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (every thread, user and system), to the
/// nanosecond (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_seconds() -> f64 {
    cpu_clock_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// A CPU-time clock in seconds (0 if the clock cannot be read).
fn cpu_clock_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec on this stack frame for the whole
    // call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
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

/// Attaches a classic BPF program to socket `fd` in place of the one it
/// has (`SO_ATTACH_FILTER`): the capture's filter and cut
/// ([`crate::capture::cut`]).
pub fn attach_filter(
    fd: std::os::fd::RawFd,
    program: &[crate::capture::cut::Insn],
) -> std::io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `Insn` has `struct sock_filter`'s layout (`repr(C)`, the same
    // four fields); `prog` and the instructions it points to outlive the
    // call, and the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs a classic BPF program over `frame` with libpcap's interpreter
/// (`pcap_offline_filter`, as `tcpdump -r` filters): its return value,
/// the length it keeps (0: rejected, or a load past the frame's end).
#[cfg(test)]
pub fn run_filter(program: &[crate::capture::cut::Insn], frame: &[u8]) -> u32 {
    #[repr(C)]
    struct BpfProgram {
        len: u32,
        insns: *const crate::capture::cut::Insn,
    }
    #[repr(C)]
    struct PktHdr {
        ts: libc::timeval,
        caplen: u32,
        len: u32,
    }
    #[link(name = "pcap")]
    extern "C" {
        fn pcap_offline_filter(p: *const BpfProgram, h: *const PktHdr, d: *const u8) -> i32;
    }
    let p = BpfProgram {
        len: program.len() as u32,
        insns: program.as_ptr(),
    };
    let h = PktHdr {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: frame.len() as u32,
        len: frame.len() as u32,
    };
    // SAFETY: `Insn` is `struct bpf_insn`'s layout; the program, the
    // header and the frame outlive the call, which only reads them.
    unsafe { pcap_offline_filter(&p, &h, frame.as_ptr()) as u32 }
}

/// glibc's tunable that backs malloc's heaps and large blocks with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`, which the common THP
/// mode `madvise` honours; `always` does it anyway, `never` ignores it).
const HUGE_PAGES_TUNABLE: &str = "glibc.malloc.hugetlb";

/// Set in the environment of the started-over node (and so of the
/// processes it starts): never start over twice.
const REEXEC_MARK: &str = "MONI_REEXECUTED";

/// Keeps memory the process freed for its next allocations instead of
/// handing it back to the kernel at once. By default glibc's malloc maps
/// each block above a threshold that moves with the frees (from 128 KiB)
/// and returns the top of a heap once twice that much is free there; the
/// writer's page and column buffers (128 KiB to a few MiB, built and
/// freed for every row group) then took fresh pages again and again, and
/// with huge pages (below) each fresh page is 2 MiB that the kernel
/// zeroes: 5% of all the CPU of a flow-heavy replay at `--max-flows 1000`
/// (`perf`: `clear_page_erms` under `sysmalloc`), 0.1% with blocks of up
/// to 4 MiB from the heap and up to 64 MiB free at a heap's top kept.
/// Peak RSS of 1 M SYN sources at the default cap: 180 -> 185 MiB.
/// Call before any thread starts.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets two of malloc's parameters, integers; no
    // other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Starts the node again with [`HUGE_PAGES_TUNABLE`]`=1` added to
/// `GLIBC_TUNABLES` (glibc reads tunables only at start-up, hence the
/// `exec`: same process id, arguments and descriptors), at most once
/// (the new process has `MONI_REEXECUTED=1`). It does not when
/// `MONI_HUGE_PAGES=0`, when `GLIBC_TUNABLES` sets the tunable already,
/// in glibc's secure mode (a binary with file capabilities or setuid:
/// glibc drops the tunable there, so starting over would gain nothing),
/// when the node was started through the dynamic loader (`ld.so
/// moni-node ...`, whose own path is the executable's), or when its
/// binary was deleted (replaced by an upgrade). When the `exec` fails
/// the node runs on as it was: the SIGPIPE disposition and the signal
/// mask, which `exec` resets first, are put back.
///
/// Why: the flow table, the IDS tables and sketches and the RTP tables
/// are read at random, once per packet, and every 4 KiB page costs a TLB
/// miss. Measured on the benchmark captures (1 worker, interleaved): 7-10%
/// less wall time on the flow-heavy and the IMIX capture; peak RSS of 1 M
/// SYN sources 200 -> 203 MiB. The tunable exists from glibc 2.35 on.
pub fn reexec_with_huge_pages() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    if cfg!(not(all(target_os = "linux", target_env = "gnu")))
        || std::env::var_os("MONI_HUGE_PAGES").is_some_and(|v| v == "0")
        || std::env::var_os(REEXEC_MARK).is_some()
    {
        return;
    }
    // SAFETY: getauxval reads the process's auxiliary vector; it takes
    // and returns integers.
    let (secure, interpreter) = unsafe {
        (
            libc::getauxval(libc::AT_SECURE),
            libc::getauxval(libc::AT_BASE),
        )
    };
    // AT_BASE is where the dynamic loader was mapped as the program's
    // interpreter: 0 when the loader itself was run as the program.
    if secure != 0 || interpreter == 0 {
        return;
    }
    let current = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
    if current
        .as_bytes()
        .windows(HUGE_PAGES_TUNABLE.len())
        .any(|w| w == HUGE_PAGES_TUNABLE.as_bytes())
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    if exe.as_os_str().as_bytes().ends_with(b" (deleted)") || !exe.is_file() {
        return;
    }
    let mut tunables = current;
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(HUGE_PAGES_TUNABLE);
    tunables.push("=1");
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    // SAFETY: zeroed sigset_t and sigaction are valid values of these
    // plain C structs; both calls only read the current settings into
    // locals that outlive them.
    let (mask, pipe) = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        let mut pipe: libc::sigaction = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut pipe);
        (mask, pipe)
    };
    // Returns only on failure.
    let _ = cmd
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(REEXEC_MARK, "1")
        .exec();
    // SAFETY: puts back the settings read above, from locals.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        libc::sigaction(libc::SIGPIPE, &pipe, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    /// The thread carries its name (what `top -H` and /proc show).
    #[test]
    fn spawned_threads_carry_their_names() {
        std::thread::scope(|scope| {
            let h = super::spawn_named(scope, "moni-worker-7".into(), || {
                let name = std::thread::current().name().map(str::to_string);
                let comm = std::fs::read_to_string("/proc/thread-self/comm").ok();
                (name, comm)
            });
            let (name, comm) = h.join().expect("the thread ran");
            assert_eq!(name.as_deref(), Some("moni-worker-7"));
            if let Some(comm) = comm {
                assert_eq!(comm.trim_end(), "moni-worker-7");
            }
        });
    }

    /// A worker's lower priority is its own: the thread that started it
    /// keeps its niceness (Linux keeps one per thread), and the value is
    /// read back from /proc as `top -H` would show it.
    #[test]
    fn lowering_a_thread_priority_leaves_the_others_alone() {
        fn nice_of(tid: i32) -> i64 {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
                .expect("thread stat");
            // Field 19 is the niceness; fields after the ")" of the name.
            let rest = &stat[stat.rfind(')').expect("comm") + 2..];
            rest.split(' ')
                .nth(16)
                .expect("nice")
                .parse()
                .expect("number")
        }
        // SAFETY: gettid takes nothing and cannot fail.
        let me = unsafe { libc::gettid() };
        let before = nice_of(me);
        let (tid, after) = std::thread::spawn(|| {
            super::lower_thread_priority(3);
            // SAFETY: as above.
            let tid = unsafe { libc::gettid() };
            (tid, nice_of(tid))
        })
        .join()
        .expect("thread");
        assert_ne!(tid, me);
        assert_eq!(after, (before + 3).min(19));
        assert_eq!(nice_of(me), before, "the calling thread keeps its niceness");
        // Never above 19, and 0 changes nothing.
        let capped = std::thread::spawn(|| {
            super::lower_thread_priority(0);
            super::lower_thread_priority(40);
            // SAFETY: as above.
            nice_of(unsafe { libc::gettid() })
        })
        .join()
        .expect("thread");
        assert_eq!(capped, 19);
    }
}
