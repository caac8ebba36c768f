//! A tmpfs mounted for one test: a full or read-only disk on demand.

use std::path::{Path, PathBuf};

/// Unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts at `at` with mount `options` (e.g. `size=1m`); `None` where mounting is not
    /// allowed (it needs root with CAP_SYS_ADMIN), so the caller can say it skipped.
    pub fn mount(at: &Path, options: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
