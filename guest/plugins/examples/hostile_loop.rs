//! Hostile: never returns (must be stopped by fuel).
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct Spin;

impl Gate for Spin {
    const NAME: &'static str = "hostile-loop";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        let mut x = p.payload.len() as u64;
        loop {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            if x == 0 && p.kind == u16::MAX {
                return Ok(());
            }
        }
    }
}

export_gate!(Spin);
