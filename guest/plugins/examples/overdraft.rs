//! Stateful gate: a withdrawal (kind 0x1002) may not exceed the account's
//! balance, read from the "balance" projection inside the writer.
use batpak_guest::{export_gate, projection_json, Denial, Gate, Proposal};

struct Overdraft;

impl Gate for Overdraft {
    const NAME: &'static str = "overdraft";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        if p.kind != 0x1002 {
            return Ok(());
        }
        let amount = p.field("amount").and_then(|v| v.as_i64()).unwrap_or(0);
        let balance = projection_json("balance", &p.entity).and_then(|v| v.as_i64()).unwrap_or(0);
        if amount > balance {
            return Err(Denial::new("OVERDRAFT", "withdrawal exceeds the balance")
                .with("balance", balance)
                .with("amount", amount));
        }
        Ok(())
    }
}

export_gate!(Overdraft);
