//! The help check both binaries' CLI tests share (included by path from
//! `moni-node/tests/cli.rs` and `moni-collector/tests/cli.rs`).

use std::process::Command;

/// Every argument of every subcommand has a help line: `NAME --help`
/// lists each option or positional with text after it.
pub fn undocumented_arguments(bin: &str, subcommands: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    for sub in subcommands {
        let o = Command::new(bin)
            .args([sub, "--help"])
            .output()
            .expect("help");
        assert!(o.status.success(), "{sub} --help");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut in_list = false;
        for line in text.lines() {
            if line.starts_with("Arguments:") || line.starts_with("Options:") {
                in_list = true;
                continue;
            }
            if !line.starts_with(' ') {
                in_list = false;
                continue;
            }
            let item = line.trim_start();
            if in_list && (item.starts_with('-') || item.starts_with('<')) {
                // "--name <VALUE>  Help text": the help follows two spaces.
                if !item.contains("  ") {
                    missing.push(format!("{sub}: {item}"));
                }
            }
        }
    }
    missing
}
