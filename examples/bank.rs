//! A bank: a WASM balance projection, and an overdraft gate that reads it
//! inside the writer, so concurrent withdrawals can never overdraw.
use batpak::prelude::*;
use batpak_test_artifacts as guests;
use serde_json::json;
use std::sync::Arc;

const DEPOSIT: EventKind = EventKind::custom(1, 1);
const WITHDRAW: EventKind = EventKind::custom(1, 2);

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(StoreConfig::new(dir.path()))?);
    store.install_projection("balance", ProjectionPlugin::from_file(guests::BALANCE)?)?;
    store.install_gate(GatePlugin::from_file(guests::OVERDRAFT)?)?;
    let account = Coordinate::new("account:savings", "bank")?;
    store.append(&account, DEPOSIT, &json!({"amount": 300}))?;

    let tellers: Vec<_> = (0..4)
        .map(|_| {
            let (store, account) = (Arc::clone(&store), account.clone());
            std::thread::spawn(move || {
                (0..10).filter(|_| store.append(&account, WITHDRAW, &json!({"amount": 25})).is_ok()).count()
            })
        })
        .collect();
    let paid: usize = tellers.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let balance = store
        .projection_state("balance", "account:savings")?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    println!("40 withdrawals of 25 against 300: {paid} paid, balance {balance:?}");
    assert_eq!(paid, 12);
    assert_eq!(balance.as_deref(), Some("0"));
    Ok(())
}
