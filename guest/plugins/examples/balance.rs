//! Projection: the balance of every account (deposits 0x1001 add, withdrawals 0x1002 subtract).
use batpak_guest::export_projection;
use batpak_guest::projection::{Event, Projection};
use std::collections::BTreeMap;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Balances(BTreeMap<String, i64>);

#[derive(serde::Deserialize)]
struct Movement {
    amount: i64,
}

impl Projection for Balances {
    const NAME: &'static str = "balance";
    const KINDS: &'static [u16] = &[0x1001, 0x1002];
    const ENTITY_PREFIX: &'static str = "account:";
    fn apply(&mut self, e: &Event) {
        let amount = e.parse::<Movement>().map_or(0, |m| m.amount);
        let balance = self.0.entry(e.entity.clone()).or_default();
        if e.kind == 0x1001 {
            *balance += amount;
        } else {
            *balance -= amount;
        }
    }
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key).map(|b| b.to_string().into_bytes())
    }
}

export_projection!(Balances);
