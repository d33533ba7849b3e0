//! Panics when the payload has "explode": true, allows otherwise (shows
//! that the host re-instantiates after a trap).
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct Flaky;

impl Gate for Flaky {
    const NAME: &'static str = "flaky-panic";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        if p.field("explode").and_then(|v| v.as_bool()) == Some(true) {
            panic!("asked to explode");
        }
        Ok(())
    }
}

export_gate!(Flaky);
