//! Scratch directories, removed when the test ends however it ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory, removed when dropped: `<base>/walwatch-<test binary>-<pid>-<name>-<n>`,
/// so that what a failed run leaves behind (when the drop did not run) says what left it.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// In the temporary directory.
    pub fn new(name: &str) -> Self {
        Self::under(&std::env::temp_dir(), name)
    }

    /// On `/dev/shm` when there is one, else like [`TempDir::new`]: for many small files, and
    /// for tests whose writers run flat out: on a VM's disk, writeback of what earlier tests
    /// wrote can stall syscalls for seconds, and such a test would measure the disk.
    pub fn on_tmpfs(name: &str) -> Self {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Self::under(shm, name)
        } else {
            Self::new(name)
        }
    }

    fn under(base: &Path, name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let test = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| stem.split('-').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let dir = base.join(format!(
            "walwatch-{test}-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
