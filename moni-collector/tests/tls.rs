//! HTTPS between nodes and the collector, with a throwaway PKI (rcgen) on
//! loopback: a verified upload is stored; a certificate of another CA, an
//! expired one, or one the node's default (system) roots do not know is
//! refused by the node and nothing is stored; with mutual TLS an upload
//! whose client certificate names another node is 403; SIGHUP loads new
//! certificates and keeps the old ones when the new files are bad.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn tls_section(dir: &Path, server: &Leaf, client_ca: Option<&Ca>) -> String {
    let cert = secret(dir, "collector.crt", &server.cert);
    let key = secret(dir, "collector.key", &server.key);
    let mut s = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        let p = secret(dir, "clients-ca.crt", &ca.pem);
        s += &format!("client_ca_file = \"{}\"\n", p.display());
    }
    s
}

fn server_leaf(ca: &Ca, expired: bool) -> Leaf {
    ca.leaf("collector", &["127.0.0.1", "localhost"], false, expired)
}

fn ship(run: &NodeRun, key: &str) -> u64 {
    run.summary["ship"][key].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn tls_uploads_are_stored_and_a_wrong_ca_or_expired_certificate_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = Ca::new("moni test CA");
    let other_ca = Ca::new("someone else's CA");
    let ca_file = secret(dir, "ca.crt", &ca.pem);
    let other_ca_file = secret(dir, "other-ca.crt", &other_ca.pem);

    let good_dir = dir.join("good");
    std::fs::create_dir_all(&good_dir).expect("mkdir");
    let port = free_port();
    let data = dir.join("data");
    let _good = Collector::start(
        &good_dir,
        port,
        &config(
            port,
            &data,
            "",
            &tls_section(&good_dir, &server_leaf(&ca, false), None),
        ),
        None,
    );
    let expired_dir = dir.join("expired");
    std::fs::create_dir_all(&expired_dir).expect("mkdir");
    let port_expired = free_port();
    let data_expired = dir.join("data-expired");
    let _expired = Collector::start(
        &expired_dir,
        port_expired,
        &config(
            port_expired,
            &data_expired,
            "",
            &tls_section(&expired_dir, &server_leaf(&ca, true), None),
        ),
        None,
    );
    // Plain HTTP to the TLS port gets no answer.
    assert_eq!(
        raw_request(
            port,
            "GET /healthz HTTP/1.0\r\n\r\n",
            Duration::from_secs(3)
        )
        .map(|r| r.0),
        None
    );

    let url = format!("https://127.0.0.1:{port}");
    let url_expired = format!("https://127.0.0.1:{port_expired}");
    let ca_line = format!("ca_file = \"{}\"", ca_file.display());
    let other_line = format!("ca_file = \"{}\"", other_ca_file.display());
    let (good, wrong_ca, system_roots, expired) = std::thread::scope(|s| {
        let good = s.spawn(|| run_node(dir, "node-1", &url, TOKEN, &ca_line));
        let wrong = s.spawn(|| run_node(dir, "wrong-ca", &url, TOKEN_2, &other_line));
        let system = s.spawn(|| run_node(dir, "system-roots", &url, TOKEN_2, ""));
        let expired = s.spawn(|| run_node(dir, "expired", &url_expired, TOKEN, &ca_line));
        (
            good.join().expect("good"),
            wrong.join().expect("wrong"),
            system.join().expect("system"),
            expired.join().expect("expired"),
        )
    });
    // Over TLS with the right CA: everything shipped, every file stored.
    assert!(ship(&good, "files_shipped") > 0, "{}", good.summary);
    assert_eq!(ship(&good, "failures"), 0, "{}", good.stderr);
    assert_eq!(ship(&good, "files_left"), 0);
    let shipped = parquet_files(&dir.join("node-1-out/shipped"));
    assert_eq!(shipped.len() as u64, ship(&good, "files_shipped"));
    let stored = parquet_files(&data.join("flows/node=node-1"));
    assert!(!stored.is_empty());
    // Another CA, the system roots (no ca_file) and an expired certificate
    // are refused: nothing shipped, the files stay spooled for later.
    for (run, what) in [
        (&wrong_ca, "wrong CA"),
        (&system_roots, "system roots"),
        (&expired, "expired"),
    ] {
        assert_eq!(ship(run, "files_shipped"), 0, "{what}: {}", run.summary);
        assert!(ship(run, "failures") > 0, "{what}: {}", run.summary);
        assert!(ship(run, "files_left") > 0, "{what}: {}", run.summary);
        assert_eq!(ship(run, "files_rejected"), 0, "{what}");
    }
    assert!(parquet_files(&data.join("flows/node=node-2")).is_empty());
    assert!(parquet_files(&data_expired).is_empty());
    // A client of the right CA sees the expired one refused too, and the
    // good one answer.
    assert!(https_client(&ca.pem, None)
        .get(format!("{url_expired}/healthz"))
        .send()
        .is_err());
    let r = https_client(&ca.pem, None)
        .get(format!("{url}/healthz"))
        .send()
        .expect("healthz over TLS");
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn mutual_tls_refuses_an_upload_whose_certificate_names_another_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = Ca::new("moni test CA");
    let other_ca = Ca::new("someone else's CA");
    let port = free_port();
    let data = dir.join("data");
    let _c = Collector::start(
        dir,
        port,
        &config(
            port,
            &data,
            "",
            &tls_section(dir, &server_leaf(&ca, false), Some(&ca)),
        ),
        None,
    );
    let url = format!("https://127.0.0.1:{port}");
    let upload_body = |client: &reqwest::blocking::Client, token: &str, body: Vec<u8>| {
        client
            .post(format!("{url}/v1/ingest/flows"))
            .bearer_auth(token)
            .body(body)
            .send()
            .map(|r| {
                let status = r.status().as_u16();
                (status, r.text().unwrap_or_default())
            })
    };
    let upload = |client: &reqwest::blocking::Client, token: &str| {
        upload_body(client, token, b"PAR1 not really parquet".to_vec())
    };
    let node1 = ca.leaf("node-1", &[], true, false);
    let node2 = ca.leaf("other", &["node-2"], true, false);
    // node-1's token with node-2's certificate (SAN), or with none: 403.
    let (status, body) = upload(&https_client(&ca.pem, Some(&node2)), TOKEN).expect("answer");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("does not name node node-1"), "{body}");
    let (status, _) = upload(&https_client(&ca.pem, None), TOKEN).expect("answer");
    assert_eq!(status, 403);
    // A body larger than the sockets' buffers: the 403 still arrives (the
    // body is read and dropped), not a reset that the node would log as a
    // network failure.
    let (status, body) = upload_body(
        &https_client(&ca.pem, Some(&node2)),
        TOKEN,
        vec![0u8; 32 << 20],
    )
    .expect("an answer, not a reset");
    assert_eq!(status, 403, "{body}");
    // The matching certificate (CN, or SAN) gets past: to the content
    // check (422), not 403.
    assert_eq!(
        upload(&https_client(&ca.pem, Some(&node1)), TOKEN)
            .expect("answer")
            .0,
        422
    );
    assert_eq!(
        upload(&https_client(&ca.pem, Some(&node2)), TOKEN_2)
            .expect("answer")
            .0,
        422
    );
    // An unknown token is still 401, whatever the certificate.
    assert_eq!(
        upload(
            &https_client(&ca.pem, Some(&node1)),
            "unknown-token-0123456789"
        )
        .expect("answer")
        .0,
        401
    );
    // A certificate of another CA or an expired one fails the handshake.
    let stranger = other_ca.leaf("node-1", &[], true, false);
    assert!(upload(&https_client(&ca.pem, Some(&stranger)), TOKEN).is_err());
    let expired = ca.leaf("node-1", &[], true, true);
    assert!(upload(&https_client(&ca.pem, Some(&expired)), TOKEN).is_err());
    // Health checks need no client certificate.
    let r = https_client(&ca.pem, None)
        .get(format!("{url}/healthz"))
        .send()
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);

    // Real nodes: the right certificate ships, the mismatched one ships
    // nothing (403 is retried, the files stay spooled).
    let ca_file = secret(dir, "ca.crt", &ca.pem);
    let ids = |name: &str, leaf: &Leaf| {
        let c = secret(dir, &format!("{name}.crt"), &leaf.cert);
        let k = secret(dir, &format!("{name}.key"), &leaf.key);
        format!(
            "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
            ca_file.display(),
            c.display(),
            k.display()
        )
    };
    let good_cfg = ids("node-1", &node1);
    let bad_cfg = ids("mismatch", &node2);
    let (good, bad) = std::thread::scope(|s| {
        let g = s.spawn(|| run_node(dir, "node-1", &url, TOKEN, &good_cfg));
        let b = s.spawn(|| run_node(dir, "mismatch", &url, TOKEN, &bad_cfg));
        (g.join().expect("good"), b.join().expect("bad"))
    });
    assert!(ship(&good, "files_shipped") > 0, "{}", good.stderr);
    assert_eq!(ship(&good, "failures"), 0, "{}", good.stderr);
    assert_eq!(ship(&bad, "files_shipped"), 0, "{}", bad.summary);
    assert!(ship(&bad, "failures") > 0);
    assert!(ship(&bad, "files_left") > 0);
    assert!(bad.stderr.contains("403"), "{}", bad.stderr);
    let stored = parquet_files(&data.join("flows/node=node-1")).len();
    let shipped = parquet_files(&dir.join("node-1-out/shipped/flows")).len();
    assert!(stored > 0);
    assert!(stored >= shipped.min(1));
}

#[test]
fn sighup_loads_new_certificates_and_keeps_the_old_ones_when_the_new_are_bad() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let port = free_port();
    let c = Collector::start(
        dir,
        port,
        &config(
            port,
            &dir.join("data"),
            "",
            &tls_section(dir, &server_leaf(&old_ca, false), None),
        ),
        None,
    );
    let url = format!("https://127.0.0.1:{port}/healthz");
    let ok = |ca: &Ca| {
        https_client(&ca.pem, None)
            .get(&url)
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    };
    assert!(ok(&old_ca));
    assert!(!ok(&new_ca));
    tls_section(dir, &server_leaf(&new_ca, false), None);
    c.signal("HUP");
    let t0 = Instant::now();
    while !ok(&new_ca) {
        assert!(t0.elapsed() < Duration::from_secs(10), "not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ok(&old_ca));
    // A broken key file: the reload fails, the certificates in use stay.
    secret(dir, "collector.key", "not a key");
    c.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(ok(&new_ca));
}

#[test]
fn node_check_config_names_the_tls_key_at_fault() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = Ca::new("moni test CA");
    let ca_file = secret(dir, "ca.crt", &ca.pem);
    let junk = secret(dir, "junk.pem", "not a certificate\n");
    let leaf = ca.leaf("node-1", &[], true, false);
    let cert = secret(dir, "node.crt", &leaf.cert);
    for (ship, key) in [
        ("ca_file = \"/nonexistent/ca.crt\"", Some("ship.ca_file")),
        (
            &format!("ca_file = \"{}\"", junk.display()),
            Some("ship.ca_file"),
        ),
        (
            &format!("cert_file = \"{}\"", cert.display()),
            Some("ship.key_file"),
        ),
        (
            &format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"",
                cert.display(),
                junk.display()
            ),
            Some("ship.key_file"),
        ),
        (&format!("ca_file = \"{}\"", ca_file.display()), None),
    ] {
        let cfg = dir.join("node.toml");
        std::fs::write(
            &cfg,
            format!(
                "[ship]\ncollectors = [\"https://127.0.0.1:1\"]\ntoken = \"{TOKEN}\"\n{ship}\n"
            ),
        )
        .expect("write");
        let o = std::process::Command::new(node_bin())
            .arg("check-config")
            .arg(&cfg)
            .output()
            .expect("moni-node check-config");
        let err = String::from_utf8_lossy(&o.stderr);
        match key {
            Some(key) => {
                assert_eq!(o.status.code(), Some(2), "{ship}: {err}");
                assert!(err.contains(key), "{ship}: {err}");
            }
            None => assert!(o.status.success(), "{ship}: {err}"),
        }
    }
}
