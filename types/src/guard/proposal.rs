//! [`Proposal`]: a value put to the gates (re-exported as
//! `pipeline::Proposal`, its 0.3.0 path).

/// A value proposed for commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal<T>(T);

impl<T> Proposal<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The value.
    pub fn payload(&self) -> &T {
        &self.0
    }
    /// The proposal with its value transformed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Proposal<U> {
        Proposal(f(self.0))
    }
    pub(crate) fn into_inner(self) -> T {
        self.0
    }
}
