//! The data directory, held as a cap-std capability: every file operation
//! of the store goes through it, so no path outside the directory can be
//! reached. Also holds the exclusive lock taken at open.

use crate::store::config::SyncMode;
use crate::store::durability::Durability;
use crate::store::segment::file::segment_filename;
use crate::store::StoreError;
use cap_std::fs::{Dir, OpenOptions};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The opened, locked data directory.
pub(crate) struct DataDir {
    dir: Dir,
    /// Every fsync and name change goes through it.
    durability: Durability,
    /// Held for the store's lifetime; the lock is released when it closes.
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed, opens it as a capability and takes its lock.
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let lock = dir.open_with(LOCK_FILE, OpenOptions::new().create(true).write(true))?.into_std();
        // An advisory whole-file lock (flock on Unix), held as long as the
        // file stays open: a second handle, here or in another process, fails.
        if let Err(err) = lock.try_lock() {
            return Err(StoreError::Locked(format!(
                "{} is open in another store handle or process ({err})",
                path.display()
            )));
        }
        Ok(Self { dir, durability, _lock: lock })
    }

    /// The seam for fsyncs of files opened through this directory.
    pub(crate) fn durability(&self) -> &Durability {
        &self.durability
    }

    /// fsyncs `file`, which is `name` in this directory.
    pub(crate) fn sync_file(&self, file: &File, name: &str, mode: SyncMode) -> Result<(), StoreError> {
        Ok(self.durability.sync_file(file, name, mode)?)
    }

    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Makes created, renamed and removed names durable.
    pub(crate) fn sync_dir(&self) -> Result<(), StoreError> {
        // The capability itself may be an O_PATH descriptor, which cannot be
        // fsynced; open the directory for reading through it instead.
        self.durability.sync_dir(&self.dir.open(".")?.into_std())?;
        Ok(())
    }

    /// Opens segment `id` for reading.
    pub(crate) fn open_segment(&self, id: u64) -> Result<File, StoreError> {
        Ok(self.dir.open(segment_filename(id))?.into_std())
    }

    /// Opens segment `id` for reading and writing.
    pub(crate) fn open_segment_rw(&self, id: u64) -> Result<File, StoreError> {
        let opts = OpenOptions::new().read(true).write(true).clone();
        Ok(self.dir.open_with(segment_filename(id), &opts)?.into_std())
    }

    /// Creates segment `id` holding exactly `header`, crash-atomically: the
    /// header is written and fsynced under a temporary name, the file is
    /// linked to its real name (which fails if anything has that name) and
    /// the directory fsynced. A crash at any point leaves either no segment
    /// `id` or one with a whole, durable header; a leftover temporary is
    /// removed at the next open. `before_link` runs between the staged
    /// fsync and the link (fault injection). Returns the file, open for
    /// reading and writing.
    pub(crate) fn create_segment(
        &self,
        id: u64,
        header: &[u8],
        before_link: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<File, StoreError> {
        let name = segment_filename(id);
        let tmp = format!("{name}.tmp");
        self.remove_optional(&tmp)?;
        let opts = OpenOptions::new().read(true).write(true).create_new(true).clone();
        let file = self.dir.open_with(&tmp, &opts)?.into_std();
        self.durability.names_changed();
        let staged = file
            .write_all_at(header, 0)
            .and_then(|()| self.durability.sync_file(&file, &tmp, SyncMode::SyncAll));
        let linked = staged.map_err(StoreError::from).and_then(|()| {
            before_link()?;
            self.dir.hard_link(&tmp, &self.dir, &name)?;
            self.durability.names_changed();
            Ok(())
        });
        // The temporary name goes in every case; the linked name stays.
        let removed = self.dir.remove_file(&tmp);
        self.durability.names_changed();
        linked?;
        removed?;
        self.sync_dir()?;
        Ok(file)
    }

    /// Creates file `name` for writing; fails if anything has that name.
    pub(crate) fn create_new(&self, name: &str) -> Result<File, StoreError> {
        let opts = OpenOptions::new().read(true).write(true).create_new(true).clone();
        let file = self.dir.open_with(name, &opts)?.into_std();
        self.durability.names_changed();
        Ok(file)
    }

    /// Renames `from` to `to` (replacing `to`); false if `from` does not exist.
    pub(crate) fn rename_if_present(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        match self.dir.rename(from, &self.dir, to) {
            Ok(()) => {
                self.durability.names_changed();
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the files in the directory that end with `suffix`.
    pub(crate) fn names_ending_with(&self, suffix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for entry in self.dir.entries()? {
            if let Some(name) = entry?.file_name().to_str() {
                if name.ends_with(suffix) {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Opens `name` for reading if it exists.
    pub(crate) fn open_optional(&self, name: &str) -> Result<Option<std::fs::File>, StoreError> {
        match self.dir.open(name) {
            Ok(file) => Ok(Some(file.into_std())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole file if it exists.
    pub(crate) fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.dir.read(name) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces `name` with `bytes` atomically and durably: write a fresh
    /// temporary file, fsync it, rename it over `name`, fsync the directory.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = format!("{name}.{}.{}.tmp", std::process::id(), crate::store::config::system_now_us());
        let opts = OpenOptions::new().write(true).create_new(true).clone();
        let mut file = self.dir.open_with(&tmp, &opts)?.into_std();
        self.durability.names_changed();
        let written =
            file.write_all(bytes).and_then(|()| self.durability.sync_file(&file, &tmp, SyncMode::SyncAll));
        if let Err(e) = written {
            let _ = self.dir.remove_file(&tmp);
            self.durability.names_changed();
            return Err(e.into());
        }
        drop(file);
        self.dir.rename(&tmp, &self.dir, name)?;
        self.durability.names_changed();
        self.sync_dir()
    }

    /// Removes `name` if present.
    pub(crate) fn remove_optional(&self, name: &str) -> Result<(), StoreError> {
        match self.dir.remove_file(name) {
            Ok(()) => {
                self.durability.names_changed();
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes temporary files a crash may have left behind.
    pub(crate) fn remove_stale_temporaries(&self) -> Result<(), StoreError> {
        for name in self.names_ending_with(".tmp")? {
            self.remove_optional(&name)?;
        }
        Ok(())
    }
}
