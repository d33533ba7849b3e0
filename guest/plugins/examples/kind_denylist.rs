//! Denies kinds of category 0xE ("admin") and the kind 0x1FFF.
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct KindDenylist;

impl Gate for KindDenylist {
    const NAME: &'static str = "kind-denylist";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        if p.category() == 0xE || p.kind == 0x1FFF {
            return Err(Denial::new("KIND_DENIED", "this kind may not be appended").with("kind", p.kind));
        }
        Ok(())
    }
}

export_gate!(KindDenylist);
