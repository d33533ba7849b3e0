//! Allows everything: the cheapest possible gate (for benchmarks).
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct AllowAll;

impl Gate for AllowAll {
    const NAME: &'static str = "allow-all";
    fn evaluate(_: &Proposal) -> Result<(), Denial> {
        Ok(())
    }
}

export_gate!(AllowAll);
