//! The public methods of [`super::Store`], one file per concern.

mod maintenance;
mod native_projection;
mod plugins;
mod read;
#[cfg(feature = "replication")]
mod replication;
mod write;

#[cfg(feature = "replication")]
pub(crate) use write::PendingImport;
