//! The native gate pipeline: propose, evaluate, commit — or bypass with a
//! named, justified reason.

use crate::guard::{Denial, GateSet, Receipt};
use serde::{Deserialize, Serialize};

pub use crate::guard::Proposal;

/// A committed value with where the store put it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed<T> {
    /// The value.
    pub payload: T,
    /// The event id.
    pub event_id: u128,
    /// The global sequence.
    pub sequence: u64,
    /// The event hash.
    pub hash: [u8; 32],
}

pub mod bypass;
pub use bypass::{bypass, BypassReason, BypassReceipt};

/// Gates, then commit.
pub struct Pipeline<Ctx> {
    gates: GateSet<Ctx>,
}

impl<Ctx> Pipeline<Ctx> {
    /// A pipeline over `gates`.
    pub fn new(gates: GateSet<Ctx>) -> Self {
        Self { gates }
    }

    /// Runs the gates.
    pub fn evaluate<T>(&self, ctx: &Ctx, proposal: Proposal<T>) -> Result<Receipt<T>, Denial> {
        self.gates.evaluate(ctx, proposal)
    }

    /// Commits an approved payload with `f` (typically a store append).
    pub fn commit<T, E>(
        &self,
        receipt: Receipt<T>,
        f: impl FnOnce(T) -> Result<Committed<T>, E>,
    ) -> Result<Committed<T>, E> {
        let (payload, _) = receipt.into_parts();
        f(payload)
    }

    /// Skips the gates for a named reason (the same as [`bypass()`]).
    pub fn bypass<T>(proposal: Proposal<T>, reason: &'static dyn BypassReason) -> BypassReceipt<T> {
        bypass(proposal, reason)
    }

    /// Commits a bypassed payload with `f`.
    pub fn commit_bypass<T, E>(
        receipt: BypassReceipt<T>,
        f: impl FnOnce(T) -> Result<Committed<T>, E>,
    ) -> Result<Committed<T>, E> {
        f(receipt.into_payload())
    }
}
