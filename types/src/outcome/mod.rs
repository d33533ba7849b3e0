//! [`Outcome`]: a result that can also be "retry later", "pending", "cancelled"
//! or a batch of outcomes, with combinators that distribute over batches.

pub mod combine;
pub mod error;
pub mod wait;

pub use combine::{join_all, join_any, zip};
pub use error::{ErrorKind, OutcomeError};
pub use wait::{CompensationAction, WaitCondition};

use serde::{Deserialize, Serialize};

/// The outcome of a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
#[non_exhaustive]
pub enum Outcome<T> {
    /// Done.
    Ok(T),
    /// Failed.
    Err(OutcomeError),
    /// Try again later.
    Retry {
        /// Delay.
        after_ms: u64,
        /// This attempt.
        attempt: u32,
        /// Attempts allowed.
        max_attempts: u32,
        /// Why.
        reason: String,
    },
    /// Waiting for something.
    Pending {
        /// For what.
        condition: WaitCondition,
        /// Token to resume with.
        resume_token: u128,
    },
    /// Stopped on purpose.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Several outcomes.
    Batch(Vec<Outcome<T>>),
}

impl<T> Outcome<T> {
    /// `Ok(value)`.
    pub fn ok(value: T) -> Self {
        Self::Ok(value)
    }
    /// `Err(error)`.
    pub fn err(error: OutcomeError) -> Self {
        Self::Err(error)
    }
    /// `Cancelled`.
    pub fn cancelled(reason: impl Into<String>) -> Self {
        Self::Cancelled { reason: reason.into() }
    }
    /// `Retry`.
    pub fn retry(after_ms: u64, attempt: u32, max_attempts: u32, reason: impl Into<String>) -> Self {
        Self::Retry { after_ms, attempt, max_attempts, reason: reason.into() }
    }
    /// `Pending`.
    pub fn pending(condition: WaitCondition, resume_token: u128) -> Self {
        Self::Pending { condition, resume_token }
    }
    /// Is `Ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }
    /// Is `Err`.
    pub fn is_err(&self) -> bool {
        matches!(self, Self::Err(_))
    }
    /// Is `Retry`.
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry { .. })
    }
    /// Is `Pending`.
    pub fn is_pending(&self) -> bool {
        matches!(self, Self::Pending { .. })
    }
    /// Is `Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }
    /// Is `Batch`.
    pub fn is_batch(&self) -> bool {
        matches!(self, Self::Batch(_))
    }
    /// Ok, Err or Cancelled: nothing more will happen.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Ok(_) | Self::Err(_) | Self::Cancelled { .. })
    }

    /// Transforms `Ok` values (element-wise in batches).
    pub fn map<U>(self, f: impl Fn(T) -> U + Clone) -> Outcome<U> {
        self.and_then(move |t| Outcome::Ok(f(t)))
    }

    /// Monadic bind (element-wise in batches).
    pub fn and_then<U>(self, f: impl Fn(T) -> Outcome<U> + Clone) -> Outcome<U> {
        match self {
            Self::Ok(t) => f(t),
            Self::Batch(items) => Outcome::Batch(items.into_iter().map(|o| o.and_then(f.clone())).collect()),
            other => other.cast(),
        }
    }

    /// Transforms errors (element-wise in batches).
    pub fn map_err(self, f: impl Fn(OutcomeError) -> OutcomeError + Clone) -> Self {
        self.or_else(move |e| Outcome::Err(f(e)))
    }

    /// Recovers from errors (element-wise in batches).
    pub fn or_else(self, f: impl Fn(OutcomeError) -> Outcome<T> + Clone) -> Self {
        match self {
            Self::Err(e) => f(e),
            Self::Batch(items) => Self::Batch(items.into_iter().map(|o| o.or_else(f.clone())).collect()),
            other => other,
        }
    }

    /// Looks at `Ok` values.
    pub fn inspect(self, f: impl Fn(&T) + Clone) -> Self {
        match self {
            Self::Ok(t) => {
                f(&t);
                Self::Ok(t)
            }
            Self::Batch(items) => Self::Batch(items.into_iter().map(|o| o.inspect(f.clone())).collect()),
            other => other,
        }
    }

    /// Looks at errors.
    pub fn inspect_err(self, f: impl Fn(&OutcomeError) + Clone) -> Self {
        match self {
            Self::Err(e) => {
                f(&e);
                Self::Err(e)
            }
            Self::Batch(items) => Self::Batch(items.into_iter().map(|o| o.inspect_err(f.clone())).collect()),
            other => other,
        }
    }

    /// Binds only `Ok` values passing `pred`; others stay `Ok`.
    pub fn and_then_if(self, pred: impl Fn(&T) -> bool + Clone, f: impl Fn(T) -> Outcome<T> + Clone) -> Self {
        self.and_then(move |t| if pred(&t) { f(t) } else { Outcome::Ok(t) })
    }

    /// `Ok` → `Ok`, `Err` → `Err`; anything else is an internal error.
    pub fn into_result(self) -> Result<T, OutcomeError> {
        match self {
            Self::Ok(t) => Ok(t),
            Self::Err(e) => Err(e),
            Self::Cancelled { reason } => {
                Err(OutcomeError::new(ErrorKind::Internal, format!("cancelled: {reason}")))
            }
            _ => Err(OutcomeError::new(ErrorKind::Internal, "outcome is not terminal")),
        }
    }

    /// The `Ok` value or `default`.
    pub fn unwrap_or(self, default: T) -> T {
        match self {
            Self::Ok(t) => t,
            _ => default,
        }
    }

    /// The `Ok` value or `f()`.
    pub fn unwrap_or_else(self, f: impl FnOnce() -> T) -> T {
        match self {
            Self::Ok(t) => t,
            _ => f(),
        }
    }

    /// Re-types a non-`Ok`, non-`Batch` outcome.
    fn cast<U>(self) -> Outcome<U> {
        match self {
            Self::Err(e) => Outcome::Err(e),
            Self::Retry { after_ms, attempt, max_attempts, reason } => {
                Outcome::Retry { after_ms, attempt, max_attempts, reason }
            }
            Self::Pending { condition, resume_token } => Outcome::Pending { condition, resume_token },
            Self::Cancelled { reason } => Outcome::Cancelled { reason },
            Self::Ok(_) | Self::Batch(_) => {
                Outcome::Err(OutcomeError::new(ErrorKind::Internal, "cast of an Ok or Batch outcome"))
            }
        }
    }
}

impl<T> Outcome<Outcome<T>> {
    /// Removes one level of nesting.
    pub fn flatten(self) -> Outcome<T> {
        self.and_then(|inner| inner)
    }
}
