//! Skipping the gates, on the record: a [`BypassReceipt`] names the
//! [`BypassReason`] and its justification, so the caller can persist both.

use super::Proposal;

/// Why a proposal may skip the gates.
pub trait BypassReason: Send + Sync {
    /// Short name.
    fn name(&self) -> &'static str;
    /// Why skipping the gates is right here.
    fn justification(&self) -> &'static str;
}

/// Proof that a proposal skipped the gates, and why.
pub struct BypassReceipt<T> {
    payload: T,
    reason: &'static dyn BypassReason,
}

impl<T> BypassReceipt<T> {
    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }
    /// The reason's name.
    pub fn reason(&self) -> &'static str {
        self.reason.name()
    }
    /// The reason's justification.
    pub fn justification(&self) -> &'static str {
        self.reason.justification()
    }
    /// The payload.
    pub fn into_payload(self) -> T {
        self.payload
    }
}

/// Skips the gates for `proposal`, for a named, justified `reason`.
pub fn bypass<T>(proposal: Proposal<T>, reason: &'static dyn BypassReason) -> BypassReceipt<T> {
    BypassReceipt { payload: proposal.into_inner(), reason }
}
