//! Bank rule: no single movement over 10 000, and no negative amounts.
use batpak_guest::{export_gate, Denial, Gate, Proposal};

struct AmountLimit;

impl Gate for AmountLimit {
    const NAME: &'static str = "amount-limit";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        let Some(amount) = p.field("amount").and_then(|v| v.as_i64()) else {
            return Ok(());
        };
        if amount < 0 {
            return Err(Denial::new("NEGATIVE_AMOUNT", "amounts must be positive").with("amount", amount));
        }
        if amount > 10_000 {
            return Err(Denial::new("AMOUNT_LIMIT", "amount over the 10000 limit")
                .with("amount", amount)
                .with("limit", 10_000));
        }
        Ok(())
    }
}

export_gate!(AmountLimit);
