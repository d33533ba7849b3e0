//! Hostile: allocates without bound (must be stopped by the memory limit).
extern crate alloc;
use alloc::vec::Vec;
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct Hog;

impl Gate for Hog {
    const NAME: &'static str = "hostile-alloc";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        let mut keep: Vec<Vec<u8>> = Vec::new();
        loop {
            keep.push(core::hint::black_box(alloc::vec![0u8; (8 << 20) + p.kind as usize]));
            if keep.len() == usize::MAX {
                return Ok(());
            }
        }
    }
}

export_gate!(Hog);
