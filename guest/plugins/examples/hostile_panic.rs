//! Hostile: panics on every call.
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct Boom;

impl Gate for Boom {
    const NAME: &'static str = "hostile-panic";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        if core::hint::black_box(p.kind) != 0 {
            panic!("guest panics on purpose");
        }
        Ok(())
    }
}

export_gate!(Boom);
