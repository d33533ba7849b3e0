//! [`PluginError`]: why a plugin could not be loaded or installed.

use std::fmt;

/// A plugin that cannot be installed. Raised at install, never later.
#[derive(Debug)]
#[non_exhaustive]
pub enum PluginError {
    /// The file could not be read.
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component (garbage, or a core module).
    NotAComponent(String),
    /// The component does not fit the expected world (wrong exports, or
    /// imports the host does not grant).
    WrongWorld(String),
    /// Instantiating the component trapped or failed.
    Instantiation(String),
    /// The engine could not be configured.
    Engine(String),
    /// A limit in `PluginLimits` is out of its allowed range.
    InvalidLimits(String),
    /// No installed plugin has this name.
    UnknownGate(String),
    /// Two plugins in one chain have the same name.
    DuplicateName(String),
    /// No installed projection has this name.
    UnknownProjection(String),
    /// A projection name must be 1..=64 of `[A-Za-z0-9_-]`.
    InvalidName(String),
    /// A projection stopped at an event it could not fold.
    ProjectionFailed {
        /// The projection.
        name: String,
        /// Why.
        error: String,
        /// The event's global sequence.
        sequence: u64,
    },
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "cannot read plugin {path}: {source}"),
            Self::NotAComponent(why) => write!(f, "not a WebAssembly component: {why}"),
            Self::WrongWorld(why) => write!(f, "component does not match the expected batpak world: {why}"),
            Self::Instantiation(why) => write!(f, "component failed to instantiate: {why}"),
            Self::Engine(why) => write!(f, "wasm engine error: {why}"),
            Self::InvalidLimits(why) => write!(f, "invalid plugin limits: {why}"),
            Self::UnknownGate(name) => write!(f, "no installed gate is named {name:?}"),
            Self::DuplicateName(name) => write!(f, "a gate named {name:?} is already installed"),
            Self::UnknownProjection(name) => write!(f, "no installed projection is named {name:?}"),
            Self::InvalidName(name) => write!(f, "projection name {name:?} must be 1-64 of [A-Za-z0-9_-]"),
            Self::ProjectionFailed { name, error, sequence } => {
                write!(f, "projection {name:?} failed at sequence {sequence}: {error}")
            }
        }
    }
}

impl std::error::Error for PluginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The error chain of an anyhow-style wasmtime error, on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}
