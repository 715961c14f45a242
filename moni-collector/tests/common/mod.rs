//! Helpers of the serving-layer tests: a collector process on loopback,
//! the moni-node binary, and a throwaway PKI made with rcgen.
#![allow(dead_code)]

pub mod batches;
pub mod tmpfs;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-node-1-0123456789";
pub const TOKEN_2: &str = "test-token-node-2-0123456789";
pub const READER: &str = "test-token-reader-0123456789";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

pub fn node_bin() -> PathBuf {
    std::env::var("MONI_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_BIN_EXE_moni-collector")).with_file_name("moni-node")
        })
}

/// A `[[readers]]` entry with [`READER`].
pub fn reader() -> String {
    format!("[[readers]]\nname = \"grafana\"\ntoken = \"{READER}\"\n")
}

/// A free TCP port on 127.0.0.1, never the same twice in one test
/// binary: the kernel may hand a port just released to the next
/// `bind(0)`, and two tests running at once would then start collectors on
/// one port; the second cannot bind and exits, and its test talks to the
/// other test's collector (the likely cause of a CI run in which the
/// stalled-upload test got no answer at all while the slowloris test's
/// collector was over capacity).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut g = given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.insert(port) {
            return port;
        }
    }
}

/// The `[server]` head of a config plus two nodes; `server_extra` adds
/// `[server]` keys, `extra` other sections.
pub fn config(port: u16, data: &Path, server_extra: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{server_extra}\n\
         [[nodes]]\nid = \"node-1\"\ntoken = \"{TOKEN}\"\n\
         [[nodes]]\nid = \"node-2\"\ntoken = \"{TOKEN_2}\"\n{extra}",
        data.display()
    )
}

pub struct Collector {
    pub child: Child,
    pub port: u16,
}

impl Collector {
    /// Starts `moni-collector serve` with `config`; `fd_limit` runs it
    /// under `ulimit -n` (soft and hard). Waits until the port accepts.
    pub fn start(dir: &Path, port: u16, config: &str, fd_limit: Option<u32>) -> Collector {
        let path = dir.join(format!("collector-{port}.toml"));
        std::fs::write(&path, config).expect("config");
        let bin = env!("CARGO_BIN_EXE_moni-collector");
        let mut cmd = match fd_limit {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["serve", "--config"])
            .arg(&path)
            .stderr(Stdio::null())
            .spawn()
            .expect("start collector");
        let mut c = Collector { child, port };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "collector did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever answers must be this collector, not another process
        // that holds the port while this one could not bind it.
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = c.child.try_wait() {
            panic!("collector on port {port} exited ({status}): the port was taken");
        }
        c
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain-HTTP/1.0 request on a fresh connection, everything bounded by
/// `limit`: (status, body), or None if no full answer came in time.
pub fn raw_request(port: u16, request: &str, limit: Duration) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    let left = limit.checked_sub(t0.elapsed())?;
    s.set_read_timeout(Some(left)).ok()?;
    s.set_write_timeout(Some(left)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `moni-node replay` of the Table 1 miniature into `out`.
pub fn replay_miniature(out: &Path) {
    let ok = Command::new(node_bin())
        .args([
            "replay",
            "--no-progress",
            "--vnet-map",
            "100=A:production,200=B:shadow,300=rx:monitor",
            "--out",
        ])
        .arg(out)
        .arg(root().join("samples/pcap/paper-miniature.pcap"))
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("moni-node replay: {e} (build moni-node first)"));
    assert!(ok.success());
}

/// Files under `dir` (not hidden, nor under a hidden directory such as
/// `.incoming`), recursively, sorted.
pub fn visible_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Parquet files under `dir` (not hidden), recursively, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    visible_files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect()
}

/// A throwaway certificate authority.
pub struct Ca {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// A certificate with subject CN `cn` and these SANs (DNS names or IP
    /// addresses), for a server or a client; `expired` puts its validity
    /// in 2020.
    pub fn leaf(&self, cn: &str, sans: &[&str], client: bool, expired: bool) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, cn.to_string());
        p.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `text` to `dir/name` with mode 0600; returns the path.
pub fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

/// A client trusting only `ca_pem`, optionally presenting `identity`.
pub fn https_client(ca_pem: &str, identity: Option<&Leaf>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"));
    if let Some(l) = identity {
        let pem = format!("{}\n{}", l.cert, l.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// What `moni-node run` printed at exit (its JSON summary).
pub struct NodeRun {
    pub summary: serde_json::Value,
    pub stderr: String,
}

/// Runs `moni-node run` on the Table 1 miniature (replayed fast) shipping
/// to `collector` with `ship_extra` in `[ship]`; returns its summary.
pub fn run_node(dir: &Path, name: &str, collector: &str, token: &str, ship_extra: &str) -> NodeRun {
    let out = dir.join(format!("{name}-out"));
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[node]\nname = \"{name}\"\ntick_ms = 100\n[metrics]\nlisten = \"\"\n\
             [[sources]]\nfile = \"{}\"\nspeed = 100.0\n\
             [vnets]\nmap = [\"100=A:production\", \"200=B:shadow\", \"300=rx:monitor\"]\n\
             [ship]\ncollectors = [\"{collector}\"]\ntoken = \"{token}\"\nretry_max_secs = 1\n\
             drain_secs = 3\nkeep_shipped = true\n{ship_extra}\n\
             [output]\ndir = \"{}\"\nrotate_secs = 1\n",
            root().join("samples/pcap/paper-miniature.pcap").display(),
            out.display()
        ),
    )
    .expect("node config");
    let o = Command::new(node_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap_or_else(|e| panic!("moni-node run: {e} (build moni-node first)"));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{name}: {stderr}");
    let summary = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{name}: summary: {e}: {stderr}"));
    NodeRun { summary, stderr }
}
