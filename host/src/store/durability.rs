//! The seam every fsync and every change of the data directory's names
//! goes through. In production it performs the sync and nothing else; with
//! the `dangerous-test-hooks` feature it also reports each step to the
//! configured [`FaultInjector`](crate::store::fault::FaultInjector)
//! (`observe_io`), so a test can model what a power loss would keep
//! (host/tests/power_loss.rs).

use crate::store::config::SyncMode;
use std::fs::File;

/// A handle on the seam, cheap to clone (shared by the writer, its I/O
/// helper and compaction).
#[derive(Clone, Default)]
pub(crate) struct Durability {
    #[cfg(feature = "dangerous-test-hooks")]
    observer:
        Option<(std::sync::Arc<dyn crate::store::fault::FaultInjector>, std::sync::Arc<std::path::Path>)>,
}

impl Durability {
    /// A seam that reports to `config`'s fault injector, if it has one.
    #[cfg_attr(not(feature = "dangerous-test-hooks"), allow(unused_variables))]
    pub(crate) fn for_config(config: &crate::store::StoreConfig) -> Self {
        #[cfg(feature = "dangerous-test-hooks")]
        {
            let observer = config
                .fault_injector
                .as_ref()
                .map(|f| (std::sync::Arc::clone(f), std::sync::Arc::from(config.data_dir.as_path())));
            Self { observer }
        }
        #[cfg(not(feature = "dangerous-test-hooks"))]
        Self::default()
    }

    /// fsyncs (or fdatasyncs) `file`, the directory entry `name`.
    pub(crate) fn sync_file(&self, file: &File, name: &str, mode: SyncMode) -> std::io::Result<()> {
        self.report(|dir| IoStep::FileSyncing { dir, name });
        self.injected_failure(name)?;
        match mode {
            SyncMode::SyncAll => file.sync_all()?,
            SyncMode::SyncData => file.sync_data()?,
        }
        self.report(|dir| IoStep::FileSynced { dir, name });
        Ok(())
    }

    /// fsyncs the directory itself (`dir_file` is it, opened for reading).
    pub(crate) fn sync_dir(&self, dir_file: &File) -> std::io::Result<()> {
        self.report(|dir| IoStep::DirSyncing { dir });
        dir_file.sync_all()?;
        self.report(|dir| IoStep::DirSynced { dir });
        Ok(())
    }

    /// A name in the directory was created, linked, renamed or removed.
    pub(crate) fn names_changed(&self) {
        self.report(|dir| IoStep::NamesChanged { dir });
    }

    /// The failure a test's injector asks this fsync of `name` to have.
    #[cfg(feature = "dangerous-test-hooks")]
    fn injected_failure(&self, name: &str) -> std::io::Result<()> {
        match &self.observer {
            Some((injector, dir)) => injector.fail_fsync(dir, name).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    #[cfg(not(feature = "dangerous-test-hooks"))]
    #[inline(always)]
    fn injected_failure(&self, _: &str) -> std::io::Result<()> {
        Ok(())
    }

    #[cfg(feature = "dangerous-test-hooks")]
    fn report<'a>(&'a self, step: impl FnOnce(&'a std::path::Path) -> IoStep<'a>) {
        if let Some((observer, dir)) = &self.observer {
            observer.observe_io(step(dir));
        }
    }

    #[cfg(not(feature = "dangerous-test-hooks"))]
    #[inline(always)]
    fn report<'a>(&'a self, _: impl FnOnce(&'a std::path::Path) -> IoStep<'a>) {}
}

#[cfg(feature = "dangerous-test-hooks")]
pub use crate::store::fault::IoStep;

/// Without the feature nothing is reported, and nothing is built.
#[cfg(not(feature = "dangerous-test-hooks"))]
#[allow(dead_code)] // only named in the closures `report` drops unused
pub(crate) enum IoStep<'a> {
    FileSyncing { dir: &'a std::path::Path, name: &'a str },
    FileSynced { dir: &'a std::path::Path, name: &'a str },
    DirSyncing { dir: &'a std::path::Path },
    DirSynced { dir: &'a std::path::Path },
    NamesChanged { dir: &'a std::path::Path },
}

/// A file, its name and the seam: what another thread needs to fsync it
/// (the writer's I/O helper).
pub(crate) struct SyncHandle {
    pub file: std::sync::Arc<File>,
    pub name: String,
    pub durability: Durability,
}

impl SyncHandle {
    /// fsyncs the file through the seam.
    pub(crate) fn sync(&self, mode: SyncMode) -> std::io::Result<()> {
        self.durability.sync_file(&self.file, &self.name, mode)
    }
}
