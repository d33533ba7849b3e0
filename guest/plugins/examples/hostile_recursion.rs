//! Hostile: recurses without bound (must hit the wasm stack limit).
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct Deep;

#[inline(never)]
#[allow(unconditional_recursion)] // deliberate: this guest must hit the wasm stack limit
fn descend(n: u64, pad: [u64; 16]) -> u64 {
    let next = core::hint::black_box(pad);
    descend(n.wrapping_add(1), next).wrapping_add(next[0])
}

impl Gate for Deep {
    const NAME: &'static str = "hostile-recursion";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        let r = descend(p.payload.len() as u64, [1; 16]);
        if r == 7 {
            return Err(Denial::new("NEVER", "unreachable"));
        }
        Ok(())
    }
}

export_gate!(Deep);
