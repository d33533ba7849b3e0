//! Hostile: calls `projection-state` without end, with a key (its payload's
//! "key_bytes", default 8 KiB) for projection "nope" (or its payload's
//! "projection"). Must be stopped by the fuel each host call costs.
use batpak_guest::{export_gate, projection_state, Denial, Gate, Proposal};

struct StateLoop;

impl Gate for StateLoop {
    const NAME: &'static str = "hostile-state-loop";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        let size = p.field("key_bytes").and_then(|v| v.as_u64()).unwrap_or(8192) as usize;
        let projection = p.field("projection").and_then(|v| v.as_str().map(String::from));
        let projection = projection.unwrap_or_else(|| "nope".into());
        let key = "k".repeat(size);
        let mut seen = 0u64;
        loop {
            seen += projection_state(&projection, &key).map_or(1, |v| v.len() as u64);
            if seen == u64::MAX {
                return Ok(());
            }
        }
    }
}

export_gate!(StateLoop);
