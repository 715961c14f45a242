//! `moni-collector` as an operator runs it: help for every argument, one
//! clear line when a VNet asked for is not in the data, counts in words,
//! and a start line in the log that says where it listens and stores.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
#[path = "../../moni-node/tests/common/help.rs"]
mod help;
use common::{free_port, replay_miniature};
use help::undocumented_arguments;

const BIN: &str = env!("CARGO_BIN_EXE_moni-collector");

/// A collector configuration with one node.
fn one_node(port: u16, data: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
         [[nodes]]\nid = \"node-1\"\ntoken = \"token-node-1-0123456789\"\n",
        data.display()
    )
}

#[test]
fn every_argument_has_help() {
    let missing = undocumented_arguments(BIN, &["serve", "compare", "check-config"]);
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn compare_with_an_unknown_vnet_names_the_vnets_present() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    replay_miniature(&out);
    let o = Command::new(BIN)
        .args(["compare", "--production", "A", "--shadow", "Z", "--data"])
        .arg(&out)
        .output()
        .expect("compare");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("VNet Z"), "{err}");
    assert!(err.contains("VNets present: A, B, rx"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn check_config_counts_in_words() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("collector.toml");
    std::fs::write(&file, one_node(free_port(), &tmp.path().join("data"))).expect("write");
    let o = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("check-config");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(1 node,"), "{text}");
}

/// The first stderr line of `serve` started with `env`, within a deadline.
fn first_log_line(env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = tmp.path().join("collector.toml");
    std::fs::write(&file, one_node(port, &tmp.path().join("data"))).expect("write");
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .envs(env.iter().copied())
        .env_remove("MONI_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("serve logged nothing within 20 s");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    line
}

#[test]
fn serve_logs_where_it_listens_and_stores_without_colour_off_a_terminal() {
    let line = first_log_line(&[]);
    assert!(
        !line.contains('\u{1b}'),
        "ANSI escape in a log file: {line:?}"
    );
    assert!(line.contains("nodes=1"), "{line}");
    assert!(line.contains("store="), "{line}");
    let json = first_log_line(&[("MONI_LOG_FORMAT", "json")]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(v["fields"]["nodes"], 1, "{v}");
    assert_eq!(v["level"], "INFO");
}
