//! [`OutcomeError`] and [`ErrorKind`].

use super::wait::CompensationAction;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A classification of failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something asked for does not exist.
    NotFound,
    /// Concurrent change.
    Conflict,
    /// Bad input.
    Validation,
    /// A policy refused.
    PolicyRejection,
    /// Storage failed.
    StorageError,
    /// Took too long.
    Timeout,
    /// Encoding or decoding failed.
    Serialization,
    /// A bug.
    Internal,
    /// Application-defined.
    Custom(u16),
}

impl ErrorKind {
    /// Worth retrying as is (storage errors and timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::StorageError | Self::Timeout)
    }
    /// A domain outcome (not found, conflict, validation, policy).
    pub fn is_domain(&self) -> bool {
        matches!(self, Self::NotFound | Self::Conflict | Self::Validation | Self::PolicyRejection)
    }
    /// An operational failure (storage, timeout, serialization, internal).
    pub fn is_operational(&self) -> bool {
        matches!(self, Self::StorageError | Self::Timeout | Self::Serialization | Self::Internal)
    }
}

/// A failure with its kind, a message, an optional compensation, and whether a retry may help.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeError {
    /// Classification.
    pub kind: ErrorKind,
    /// For people.
    pub message: String,
    /// What to undo, if anything.
    pub compensation: Option<CompensationAction>,
    /// Whether a retry may succeed.
    pub retryable: bool,
}

impl OutcomeError {
    /// An error of `kind`; retryable as the kind says.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), compensation: None, retryable: kind.is_retryable() }
    }

    /// This error with a compensation.
    pub fn with_compensation(mut self, c: CompensationAction) -> Self {
        self.compensation = Some(c);
        self
    }
}

impl fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.kind, self.message)
    }
}

impl std::error::Error for OutcomeError {}
