//! A destination in a local directory.
//!
//! Objects are written to a hidden temp file beside their final name
//! (`.<name>.tmp-<16 hex>`), fsynced, then renamed (or hard-linked, to refuse replacing) into
//! place and the directory fsynced, so a reader sees either nothing or the whole object, also
//! after a crash.

use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{ObjectInfo, ObjectReader, UploadReceipt};
use crate::error::StoreError;

const TMP_MARK: &str = ".tmp-";
const PROBE_PREFIX: &str = ".nightdump-probe-";

#[derive(Clone, Debug)]
pub(crate) struct LocalStore {
    root: PathBuf,
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T, F>(path: &Path, f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?
}

fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process; the counter and clock make each
    // name distinct within it. `create_new` below catches the remaining collisions.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:016x}", h.finish())
}

fn is_temp_name(name: &str) -> bool {
    if name.starts_with(PROBE_PREFIX) {
        return true;
    }
    name.starts_with('.')
        && name.rfind(TMP_MARK).is_some_and(|i| {
            let suffix = &name[i + TMP_MARK.len()..];
            i > 1 && suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Creates `.<name>.tmp-<random>` beside `target`, creating parent directories as needed.
fn create_temp(root: &Path, target: &Path) -> Result<(PathBuf, fs::File), StoreError> {
    let dir = target.parent().unwrap_or(root);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tmp = dir.join(format!(".{name}{TMP_MARK}{}", random_suffix()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 5 => continue,
            // The directory may be missing, or pruned by a concurrent delete: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                fs::create_dir_all(dir).map_err(|e| StoreError::from_io(dir, e))?;
            }
            Err(e) => return Err(StoreError::from_io(dir, e)),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::from_io(dir, e))
}

/// Moves a complete, synced temp file to `target`. With `if_absent` a hard link is used, which
/// fails instead of replacing an existing file.
fn publish(tmp: &Path, target: &Path, key: &str, if_absent: bool) -> Result<(), StoreError> {
    if if_absent {
        match fs::hard_link(tmp, target) {
            Ok(()) => {
                let _ = fs::remove_file(tmp);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(tmp);
                return Err(StoreError::AlreadyExists { key: key.into() });
            }
            Err(e) => {
                let _ = fs::remove_file(tmp);
                return Err(StoreError::from_io(target, e));
            }
        }
    } else if let Err(e) = fs::rename(tmp, target) {
        let _ = fs::remove_file(tmp);
        return Err(StoreError::from_io(target, e));
    }
    if let Some(dir) = target.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn file_info(key: String, meta: &fs::Metadata) -> ObjectInfo {
    let mut info = ObjectInfo::new(key, meta.len());
    info.last_modified = meta.modified().ok().map(time::OffsetDateTime::from);
    info
}

/// Whether an error means "there is no such object" rather than a failure.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
}

/// Drops the directories that removing `path` emptied, up to the root; a non-empty or
/// concurrently refilled directory simply stops the climb.
fn remove_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// A failure while walking, with the exact path it happened at.
type WalkError = (PathBuf, io::Error);

/// Files under `dir` (recursively), as ("/"-joined key relative to `root`, metadata, is_temp).
/// A directory right under the root that nightdump did not make (no backup id for a name,
/// e.g. an ext4 mount point's `lost+found`) is skipped when it cannot be read: it holds no
/// backup. Anything else that cannot be read fails, naming its own path.
fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, fs::Metadata, bool)>,
) -> Result<(), WalkError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) if dir != root && is_foreign_top_level(root, dir) => {
            tracing::debug!(path = %dir.display(), error = %e, "skipping an unreadable directory that holds no backup");
            return Ok(());
        }
        Err(e) => return Err((dir.to_path_buf(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| (path.clone(), e))?;
        if file_type.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        // Symlinks count as the file they point to; links to directories are not followed,
        // which rules out loops.
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err((path, e)),
        };
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let mut parts = Vec::new();
        for c in rel.components() {
            match c.as_os_str().to_str() {
                Some(s) => parts.push(s),
                None => {
                    tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
                    parts.clear();
                    break;
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        let is_temp = entry.file_name().to_str().is_some_and(is_temp_name);
        out.push((parts.join("/"), meta, is_temp));
    }
    Ok(())
}

/// A directory directly under the root whose name is not a backup id.
fn is_foreign_top_level(root: &Path, dir: &Path) -> bool {
    dir.parent() == Some(root)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.parse::<crate::layout::BackupId>().is_err())
}

impl LocalStore {
    pub(crate) async fn open(root: PathBuf) -> Result<LocalStore, StoreError> {
        let probe_root = root.clone();
        blocking(&root, move || {
            let meta =
                fs::metadata(&probe_root).map_err(|e| StoreError::from_io(&probe_root, e))?;
            if !meta.is_dir() {
                return Err(StoreError::NotADirectory { path: probe_root });
            }
            // Permission bits do not tell the whole story (read-only mounts, ACLs, root):
            // creating a file does.
            let probe = probe_root.join(format!("{PROBE_PREFIX}{}", random_suffix()));
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map_err(|e| StoreError::from_io(&probe_root, e))?;
            fs::remove_file(&probe).map_err(|e| StoreError::from_io(&probe, e))?;
            Ok(())
        })
        .await?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub(crate) async fn start_upload(&self, key: &str) -> Result<LocalUpload, StoreError> {
        let target = self.path(key);
        let (root, t) = (self.root.clone(), target.clone());
        let (tmp, file) = blocking(&target, move || create_temp(&root, &t)).await?;
        Ok(LocalUpload {
            key: key.to_string(),
            target,
            tmp,
            file: Some(file),
            size: 0,
            failed: None,
            done: false,
        })
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        if_absent: bool,
    ) -> Result<(), StoreError> {
        let target = self.path(key);
        let (root, key) = (self.root.clone(), key.to_string());
        let t = target.clone();
        blocking(&target, move || {
            let (tmp, mut file) = create_temp(&root, &t)?;
            let written = file.write_all(&bytes).and_then(|()| file.sync_all());
            drop(file);
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::from_io(&t, e));
            }
            publish(&tmp, &t, &key, if_absent)
        })
        .await
    }

    /// Read-decide-write of a small object under an exclusive lock on the destination
    /// directory (flock: released by the kernel if the process dies), so concurrent writers on
    /// this machine take turns; the write itself is the usual temp file and rename.
    pub(crate) async fn update<F>(&self, key: &str, decide: F) -> Result<bool, StoreError>
    where
        F: FnOnce(Option<&[u8]>) -> Option<Bytes> + Send + 'static,
    {
        let target = self.path(key);
        let (root, key) = (self.root.clone(), key.to_string());
        let t = target.clone();
        blocking(&target, move || {
            let dir = fs::File::open(&root).map_err(|e| StoreError::from_io(&root, e))?;
            rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| StoreError::from_io(&root, e.into()))?;
            let current = match fs::read(&t) {
                Ok(v) => Some(v),
                Err(e) if is_absent(&e) => None,
                Err(e) => return Err(StoreError::from_io(&t, e)),
            };
            let Some(next) = decide(current.as_deref()) else {
                return Ok(false);
            };
            let (tmp, mut file) = create_temp(&root, &t)?;
            let written = file.write_all(&next).and_then(|()| file.sync_all());
            drop(file);
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::from_io(&t, e));
            }
            publish(&tmp, &t, &key, false)?;
            // Unlocked when `dir` is dropped, after the rename is durable.
            drop(dir);
            Ok(true)
        })
        .await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key);
        match tokio::fs::read(&path).await {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StoreError::from_io(path, e)),
        }
    }

    pub(crate) async fn open_read(&self, key: &str) -> Result<Option<ObjectReader>, StoreError> {
        let path = self.path(key);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(StoreError::from_io(path, e)),
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| StoreError::from_io(&path, e))?;
        if meta.is_dir() {
            return Ok(None);
        }
        Ok(Some(ObjectReader::new(file, Some(meta.len()))))
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(file_info(key.to_string(), &m))),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StoreError::from_io(path, e)),
        }
    }

    /// All files under the directory part of `prefix`, filtered by the full prefix.
    async fn scan(&self, prefix: &str) -> Result<Vec<(String, fs::Metadata, bool)>, StoreError> {
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        let s = start.clone();
        blocking(&start, move || {
            let mut out = Vec::new();
            walk(&root, &s, &mut out).map_err(|(path, e)| StoreError::from_read_io(&path, e))?;
            out.retain(|(k, _, _)| k.starts_with(&prefix));
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
        .await
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Ok(self
            .scan(prefix)
            .await?
            .into_iter()
            .filter(|(_, _, is_temp)| !is_temp)
            .map(|(k, m, _)| file_info(k, &m))
            .collect())
    }

    pub(crate) async fn list_incomplete_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .scan(prefix)
            .await?
            .into_iter()
            .filter(|(_, _, is_temp)| *is_temp)
            .map(|(k, _, _)| k)
            .collect())
    }

    pub(crate) async fn abort_incomplete_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let stale: Vec<PathBuf> = self
            .scan(prefix)
            .await?
            .into_iter()
            .filter(|(_, m, is_temp)| {
                *is_temp
                    && m.modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|age| age >= older_than)
            })
            .map(|(k, _, _)| self.path(&k))
            .collect();
        let root = self.root.clone();
        blocking(&self.root, move || {
            let mut removed = 0;
            for p in stale {
                match fs::remove_file(&p) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::from_io(&p, e)),
                }
                remove_empty_parents(&root, &p);
            }
            Ok(removed)
        })
        .await
    }

    pub(crate) async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        let paths: Vec<PathBuf> = keys.iter().map(|k| self.path(k)).collect();
        let root = self.root.clone();
        blocking(&self.root, move || {
            for p in &paths {
                match fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if is_absent(&e) => {}
                    Err(e) => return Err(StoreError::from_io(p, e)),
                }
                remove_empty_parents(&root, p);
            }
            Ok(())
        })
        .await
    }
}

pub(crate) struct LocalUpload {
    key: String,
    target: PathBuf,
    tmp: PathBuf,
    file: Option<fs::File>,
    size: u64,
    failed: Option<String>,
    done: bool,
}

impl LocalUpload {
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn bytes_written(&self) -> u64 {
        self.size
    }

    fn failed_error(&self) -> Option<StoreError> {
        self.failed.as_ref().map(|cause| StoreError::UploadFailed {
            key: self.key.clone(),
            cause: cause.clone(),
        })
    }

    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        let Some(mut file) = self.file.take() else {
            return Err(StoreError::UploadFailed {
                key: self.key.clone(),
                cause: "a previous write was interrupted".into(),
            });
        };
        let len = chunk.len() as u64;
        let (tmp, target) = (self.tmp.clone(), self.target.clone());
        let result = blocking(&self.target, move || match file.write_all(&chunk) {
            Ok(()) => Ok(file),
            Err(e) => {
                // Nothing of a failed upload may stay behind, above all on a full disk.
                drop(file);
                let _ = fs::remove_file(&tmp);
                Err(StoreError::from_io(&target, e))
            }
        })
        .await;
        match result {
            Ok(file) => {
                self.file = Some(file);
                self.size += len;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    pub(crate) async fn finish(mut self, if_absent: bool) -> Result<UploadReceipt, StoreError> {
        self.done = true;
        if let Some(e) = self.failed_error() {
            remove_quietly(&self.tmp).await;
            return Err(e);
        }
        let Some(file) = self.file.take() else {
            remove_quietly(&self.tmp).await;
            return Err(StoreError::UploadFailed {
                key: self.key.clone(),
                cause: "a previous write was interrupted".into(),
            });
        };
        let (tmp, target, key) = (self.tmp.clone(), self.target.clone(), self.key.clone());
        blocking(&self.target, move || {
            let synced = file.sync_all();
            drop(file);
            if let Err(e) = synced {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::from_io(&target, e));
            }
            publish(&tmp, &target, &key, if_absent)
        })
        .await?;
        Ok(UploadReceipt {
            key: self.key.clone(),
            size: self.size,
            etag: None,
            version_id: None,
            parts: 0,
        })
    }

    pub(crate) async fn abort(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.file = None;
        match tokio::fs::remove_file(&self.tmp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::from_io(&self.tmp, e)),
        }
    }
}

async fn remove_quietly(path: &Path) {
    let _ = tokio::fs::remove_file(path).await;
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.file = None;
        match fs::remove_file(&self.tmp) {
            Ok(()) => {
                tracing::warn!(key = %self.key, "upload dropped before finish; removed its temp file")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                key = %self.key,
                tmp = %self.tmp.display(),
                error = %e,
                "upload dropped before finish and its temp file could not be removed"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        let name = format!(".dump.archive.gz{TMP_MARK}{}", random_suffix());
        assert!(is_temp_name(&name), "{name}");
        assert!(is_temp_name(".nightdump-probe-0123"));
        assert!(!is_temp_name("dump.archive.gz"));
        assert!(!is_temp_name(".hidden"));
        assert!(!is_temp_name(".x.tmp-notahexsuffix!!"));
        assert_ne!(random_suffix(), random_suffix());
    }
}
