//! A tmpfs mounted for a test, for filling a disk: shared by the storage
//! tests and the store's unit tests (`#[path]` there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs mounted on a directory, unmounted when dropped (also when the
/// test fails).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (the test skips) when mounting is not permitted, unless
    /// `MONI_REQUIRE_NETNS` says root tests must run (CI).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("MONI_REQUIRE_NETNS").is_none(),
                "cannot mount a tmpfs and MONI_REQUIRE_NETNS is set"
            );
            eprintln!("skipped: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills the filesystem of `filler` with it; returns its full length.
pub fn fill(filler: &Path) -> u64 {
    let mut f = std::fs::File::create(filler).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    let _ = f.sync_all();
    n
}
