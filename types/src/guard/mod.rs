//! Native policy gates: pure predicates over a context the application
//! defines. (WebAssembly gates, run by the store on every append, are in
//! `batpak::plugin`.)

pub mod denial;
mod proposal;
pub mod receipt;

pub use denial::Denial;
pub use receipt::Receipt;

pub use proposal::Proposal;

/// A policy check over a context `Ctx`.
pub trait Gate<Ctx>: Send + Sync {
    /// The gate's name (used in denials and receipts).
    fn name(&self) -> &'static str;
    /// Allows (`Ok`) or refuses the context.
    fn evaluate(&self, ctx: &Ctx) -> Result<(), Denial>;
    /// A sentence about what the gate checks.
    fn description(&self) -> &'static str {
        ""
    }
}

/// An ordered set of gates evaluated fail-fast.
pub struct GateSet<Ctx> {
    gates: Vec<Box<dyn Gate<Ctx>>>,
}

impl<Ctx> Default for GateSet<Ctx> {
    fn default() -> Self {
        Self { gates: Vec::new() }
    }
}

impl<Ctx> GateSet<Ctx> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a gate.
    pub fn push(&mut self, gate: impl Gate<Ctx> + 'static) {
        self.gates.push(Box::new(gate));
    }

    /// Runs the gates in order; the first denial stops evaluation.
    pub fn evaluate<T>(&self, ctx: &Ctx, proposal: Proposal<T>) -> Result<Receipt<T>, Denial> {
        let mut passed = Vec::with_capacity(self.gates.len());
        for gate in &self.gates {
            gate.evaluate(ctx)?;
            passed.push(gate.name());
        }
        Ok(Receipt::issue(proposal.into_inner(), passed))
    }

    /// Runs every gate and returns every denial; a gate that panics is
    /// reported as a denial with code `GATE_DEFECT`.
    pub fn evaluate_all(&self, ctx: &Ctx) -> Vec<Denial> {
        let mut denials = Vec::new();
        for gate in &self.gates {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.evaluate(ctx)));
            match run {
                Ok(Ok(())) => {}
                Ok(Err(d)) => denials.push(d),
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "gate panicked".into());
                    denials.push(Denial::new(gate.name(), msg).with_code("GATE_DEFECT"));
                }
            }
        }
        denials
    }

    /// Number of gates.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// Gate names in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.gates.iter().map(|g| g.name()).collect()
    }
}
