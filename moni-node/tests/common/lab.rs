//! A network-namespace lab for the live tests, the paper's setup in small:
//!
//! ```text
//!  prod-src-ID                         prod-dst-ID
//!   p0 10.77.0.1 ───── veth ───── p1 10.77.0.2      (production path)
//!   │ tc u32 match-all, ingress and egress:
//!   │ action mirred egress mirror dev m0
//!   m0 ───── veth ───── m1   moni-ID                (mirror port)
//! ```
//!
//! IPv6 is off and ARP entries are static, so the production veth carries
//! exactly the test's traffic and its counters are the truth. Everything is
//! created under names unique to the test and deleted on drop, even when
//! the test fails. Tests skip without root or `ip`, unless
//! `MONI_REQUIRE_NETNS=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Lab {
    pub src: String,
    pub dst: String,
    pub moni: String,
    sink: Option<Child>,
}

fn sh(script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh")
}

fn require() -> bool {
    std::env::var("MONI_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

pub fn traffic_py() -> PathBuf {
    super::root().join("tests/lab/traffic.py")
}

impl Lab {
    /// Builds the lab, or `None` (skip) where namespaces cannot be made.
    pub fn create(tag: &str) -> Option<Lab> {
        let can =
            sh("[ \"$(id -u)\" = 0 ] && command -v ip >/dev/null && command -v tc >/dev/null");
        if !can.status.success() {
            assert!(!require(), "MONI_REQUIRE_NETNS=1 but not root or no ip/tc");
            eprintln!("skipping: network namespaces need root, ip and tc");
            return None;
        }
        let id = format!("{}{tag}", std::process::id());
        let lab = Lab {
            src: format!("prod-src-{id}"),
            dst: format!("prod-dst-{id}"),
            moni: format!("moni-{id}"),
            sink: None,
        };
        let (s, d, m) = (&lab.src, &lab.dst, &lab.moni);
        let script = format!(
            r#"set -e
ip netns add {s}; ip netns add {d}; ip netns add {m}
for n in {s} {d} {m}; do
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n $n link set lo up
done
ip link add p0 netns {s} type veth peer name p1 netns {d}
ip link add m0 netns {s} type veth peer name m1 netns {m}
ip -n {s} addr add 10.77.0.1/24 dev p0
ip -n {d} addr add 10.77.0.2/24 dev p1
ip -n {s} link set p0 up; ip -n {s} link set m0 up
ip -n {d} link set p1 up; ip -n {m} link set m1 up
mac() {{ ip -n $1 -o link show $2 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }}
ip -n {s} neigh replace 10.77.0.2 lladdr $(mac {d} p1) dev p0 nud permanent
ip -n {d} neigh replace 10.77.0.1 lladdr $(mac {s} p0) dev p1 nud permanent
ip netns exec {s} tc qdisc add dev p0 clsact
ip netns exec {s} tc filter add dev p0 egress protocol all u32 match u32 0 0 action mirred egress mirror dev m0
ip netns exec {s} tc filter add dev p0 ingress protocol all u32 match u32 0 0 action mirred egress mirror dev m0
"#
        );
        let out = sh(&script);
        assert!(
            out.status.success(),
            "lab setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(lab)
    }

    /// A command inside namespace `ns`.
    pub fn cmd(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Starts the UDP/TCP sinks in the destination namespace.
    pub fn start_sink(&mut self) {
        let mut c = self
            .cmd(&self.dst, "python3")
            .arg(traffic_py())
            .arg("sink")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sink");
        let mut line = String::new();
        use std::io::BufRead;
        let stdout = c.stdout.take().expect("sink stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("sink ready");
        assert_eq!(line.trim(), "ready");
        self.sink = Some(c);
    }

    /// Runs traffic.py in the source namespace and returns its stdout.
    pub fn traffic(&self, args: &[&str]) -> String {
        let out = self
            .cmd(&self.src, "python3")
            .arg(traffic_py())
            .args(args)
            .output()
            .expect("run traffic.py");
        assert!(
            out.status.success(),
            "traffic.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Packets that crossed the production veth p0 (both directions): what
    /// the mirror copied.
    pub fn production_packets(&self) -> u64 {
        let (rx, tx, _, _) = self.link_counters(&self.src, "p0");
        rx + tx
    }

    /// Counters of interface `dev` in namespace `ns` from /proc/net/dev:
    /// (rx packets, tx packets, rx dropped, tx dropped).
    pub fn link_counters(&self, ns: &str, dev: &str) -> (u64, u64, u64, u64) {
        let out = self
            .cmd(ns, "cat")
            .arg("/proc/net/dev")
            .output()
            .expect("read /proc/net/dev");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{dev}:")))
            .unwrap_or_else(|| panic!("{dev} not in /proc/net/dev of {ns}"));
        let f: Vec<u64> = line
            .split(':')
            .nth(1)
            .expect("counters")
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        (f[1], f[9], f[3], f[11])
    }

    /// GET `url` from inside namespace `ns` (where the node's loopback is).
    pub fn http_get(&self, ns: &str, url: &str) -> Option<String> {
        let out = self
            .cmd(ns, "python3")
            .args([
                "-c",
                "import sys,urllib.request;sys.stdout.write(urllib.request.urlopen(sys.argv[1],timeout=3).read().decode())",
                url,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls `url` until it answers, up to `limit`.
    pub fn wait_http(&self, ns: &str, url: &str, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Some(body) = self.http_get(ns, url) {
                return body;
            }
            assert!(
                t0.elapsed() < limit,
                "{url} did not answer within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.sink.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.src, &self.dst, &self.moni] {
            let _ = sh(&format!(
                "for p in $(ip netns pids {ns} 2>/dev/null); do kill -9 $p; done; ip netns del {ns} 2>/dev/null; true"
            ));
        }
    }
}

/// A metric's value in a Prometheus text exposition (sum over series that
/// carry every label given).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// The node binary cargo built for the integration tests.
pub fn node_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_moni-node"))
}
