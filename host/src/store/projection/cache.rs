//! Caches for native projection states: [`ProjectionCache`], [`NoCache`]
//! and the file-per-key [`NativeCache`].

use crate::store::StoreError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a cache can do beyond get and put.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCapabilities {
    /// Whether `prefetch` does anything.
    pub supports_prefetch: bool,
}

impl CacheCapabilities {
    /// Nothing extra.
    pub fn none() -> Self {
        Self { supports_prefetch: false }
    }
    /// Accepts prefetch hints.
    pub fn prefetch_hints() -> Self {
        Self { supports_prefetch: true }
    }
}

/// What is stored next to a cached state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMeta {
    /// Global sequence of the last event folded into the state.
    pub watermark: u64,
    /// When the state was cached, µs since the epoch.
    pub cached_at_us: i64,
}

/// A store for projection states, keyed by bytes.
pub trait ProjectionCache: Send + Sync + 'static {
    /// What this cache supports.
    fn capabilities(&self) -> CacheCapabilities;
    /// The cached value and its metadata, if any.
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, CacheMeta)>, StoreError>;
    /// Stores a value.
    fn put(&self, key: &[u8], value: &[u8], meta: CacheMeta) -> Result<(), StoreError>;
    /// Removes every key starting with `prefix`; returns how many.
    fn delete_prefix(&self, prefix: &[u8]) -> Result<u64, StoreError>;
    /// Makes every put durable.
    fn sync(&self) -> Result<(), StoreError>;
    /// A hint that `key` is about to be read (only called when supported).
    fn prefetch(&self, _key: &[u8], _predicted: CacheMeta) {}
}

/// A cache that never hits.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

impl ProjectionCache for NoCache {
    fn capabilities(&self) -> CacheCapabilities {
        CacheCapabilities::none()
    }
    fn get(&self, _key: &[u8]) -> Result<Option<(Vec<u8>, CacheMeta)>, StoreError> {
        Ok(None)
    }
    fn put(&self, _key: &[u8], _value: &[u8], _meta: CacheMeta) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_prefix(&self, _prefix: &[u8]) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Bytes after the value in a cache file: watermark u64 LE, cached_at i64 LE.
const TRAILER: usize = 16;

/// A cache with one file per key under a directory:
/// `<root>/<first two hex digits>/<hex key>.bin` holding the value, then
/// the watermark (u64 LE) and the time it was cached (i64 LE). Every put is
/// atomic and durable (temporary file, fsync, rename, directory fsync); a
/// damaged file reads as a miss and is removed.
#[derive(Debug)]
pub struct NativeCache {
    root: PathBuf,
}

impl NativeCache {
    /// Opens (creating) a cache under `root`. Symlinked roots are refused.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        if std::fs::symlink_metadata(&root).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError::Configuration(format!("cache root {} is a symlink", root.display())));
        }
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path_of(&self, key: &[u8]) -> (PathBuf, PathBuf) {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let shard = self.root.join(hex.get(..2).unwrap_or("00"));
        let file = shard.join(format!("{hex}.bin"));
        (shard, file)
    }
}

impl ProjectionCache for NativeCache {
    fn capabilities(&self) -> CacheCapabilities {
        CacheCapabilities::none()
    }

    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, CacheMeta)>, StoreError> {
        let (_, file) = self.path_of(key);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::CacheFailed(Box::new(e))),
        };
        let Some(split) = bytes.len().checked_sub(TRAILER) else {
            let _ = std::fs::remove_file(&file);
            return Ok(None);
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[split..split + 8]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&bytes[split + 8..]);
        let meta = CacheMeta { watermark: u64::from_le_bytes(w), cached_at_us: i64::from_le_bytes(t) };
        Ok(Some((bytes[..split].to_vec(), meta)))
    }

    fn put(&self, key: &[u8], value: &[u8], meta: CacheMeta) -> Result<(), StoreError> {
        let (shard, file) = self.path_of(key);
        let fail = |e: std::io::Error| StoreError::CacheFailed(Box::new(e));
        std::fs::create_dir_all(&shard).map_err(fail)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&shard).map_err(fail)?;
        tmp.write_all(value).map_err(fail)?;
        tmp.write_all(&meta.watermark.to_le_bytes()).map_err(fail)?;
        tmp.write_all(&meta.cached_at_us.to_le_bytes()).map_err(fail)?;
        tmp.as_file().sync_all().map_err(fail)?;
        tmp.persist(&file).map_err(|e| fail(e.error))?;
        std::fs::File::open(&shard).and_then(|d| d.sync_all()).map_err(fail)?;
        Ok(())
    }

    fn delete_prefix(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        let hex: String = prefix.iter().map(|b| format!("{b:02x}")).collect();
        let mut removed = 0;
        for shard in std::fs::read_dir(&self.root)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let path = file?.path();
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                if stem.starts_with(&hex) && std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
