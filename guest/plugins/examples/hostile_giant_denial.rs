//! Hostile: denies with a 1 MiB message and 10 000 context pairs.
extern crate alloc;
use alloc::string::String;
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct Giant;

impl Gate for Giant {
    const NAME: &'static str = "hostile-giant-denial";
    fn evaluate(_: &Proposal) -> Result<(), Denial> {
        let mut d = Denial::new("GIANT", "x".repeat(1 << 20));
        for i in 0..10_000 {
            d.context.push((alloc::format!("k{i}"), String::from("v")));
        }
        Err(d)
    }
}

export_gate!(Giant);
