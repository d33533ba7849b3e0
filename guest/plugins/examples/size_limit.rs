//! Denies payloads larger than 4 KiB.
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct SizeLimit;

impl Gate for SizeLimit {
    const NAME: &'static str = "size-limit";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        const MAX: usize = 4096;
        if p.payload.len() > MAX {
            return Err(
                Denial::new("PAYLOAD_TOO_LARGE", "payload over 4096 bytes").with("size", p.payload.len())
            );
        }
        Ok(())
    }
}

export_gate!(SizeLimit);
