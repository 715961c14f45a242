//! `moni-gen wrap` refuses an id its encapsulation cannot carry: it used
//! to cut it to the header's bits (ERSPAN session 5000 became 904), so the
//! twin never matched the `--vnet-map` entry of the id given.

use std::path::Path;
use std::process::Command;

#[test]
fn an_id_too_large_for_its_header_is_refused() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcap/background.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("twin.pcap");
    let wrap = |encap: &str, id: &str| {
        Command::new(env!("CARGO_BIN_EXE_moni-gen"))
            .args(["wrap", "--in"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(["--encap", encap, "--id", id, "--frames", "10"])
            .output()
            .expect("moni-gen")
    };
    for (encap, too_big, max) in [
        ("erspan", "1024", "1023"),
        ("vxlan", "16777216", "16777215"),
        ("geneve", "16777216", "16777215"),
        ("mpls", "1048576", "1048575"),
    ] {
        let o = wrap(encap, too_big);
        assert!(!o.status.success(), "{encap} {too_big}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("at most {max}")), "{encap}: {err}");
        let o = wrap(encap, max);
        assert!(
            o.status.success(),
            "{encap} {max}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
