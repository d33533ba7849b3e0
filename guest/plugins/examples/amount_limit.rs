//! Bank rule: no single movement over 10 000, and no negative amounts.
//!
//! The same rule exists in Python, JavaScript and C under `guest/foreign/`;
//! `guest/foreign/cases/amount-limit.jsonl` is the one set of cases every
//! language's build must pass. The rule, exactly:
//! - no `amount` field (or a payload that is not an object): allow;
//! - `amount` is a JSON number: below zero is `NEGATIVE_AMOUNT`, above
//!   10 000 is `AMOUNT_LIMIT` (integers and fractions alike), else allow;
//! - `amount` is anything else (string, bool, null, array, object): `BAD_AMOUNT`.
use batpak_guest::{export_gate, Denial, Gate, Proposal};
use serde_json::Value;

struct AmountLimit;

const LIMIT: i64 = 10_000;

/// Where `n` falls: below zero, above the limit, or fine.
fn classify(n: &serde_json::Number) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) if i < 0 => Less,
        (Some(i), _, _) if i > LIMIT => Greater,
        (Some(_), _, _) => Equal,
        (None, Some(_), _) => Greater,
        (None, None, Some(f)) if f < 0.0 => Less,
        (None, None, Some(f)) if f > LIMIT as f64 => Greater,
        _ => Equal,
    }
}

impl Gate for AmountLimit {
    const NAME: &'static str = "amount-limit";
    fn evaluate(p: &Proposal) -> Result<(), Denial> {
        let n = match p.field("amount") {
            None => return Ok(()),
            Some(Value::Number(n)) => n,
            Some(other) => {
                return Err(Denial::new("BAD_AMOUNT", "amount must be a number").with("amount", other))
            }
        };
        match classify(&n) {
            std::cmp::Ordering::Less => {
                Err(Denial::new("NEGATIVE_AMOUNT", "amounts must be positive").with("amount", n))
            }
            std::cmp::Ordering::Greater => Err(Denial::new("AMOUNT_LIMIT", "amount over the 10000 limit")
                .with("amount", n)
                .with("limit", LIMIT)),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }
}

export_gate!(AmountLimit);
