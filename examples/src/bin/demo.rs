//! The batpak demo: a small bank ledger guarded by WebAssembly gates.
//!
//! `cargo run -p batpak-examples --bin demo [DATA_DIR]` (default ./batpak-demo).

use anyhow::{Context, Result};
use batpak::prelude::*;
use batpak_test_artifacts as guests;
use serde_json::json;

const DEPOSIT: EventKind = EventKind::custom(1, 1);
const WITHDRAW: EventKind = EventKind::custom(1, 2);

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./batpak-demo".into());
    if std::path::Path::new(&dir).exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {dir}"))?;
    }
    println!("batpak demo — data in {dir}\n");

    let amount_limit = GatePlugin::from_file(guests::AMOUNT_LIMIT)?;
    let store = Store::open(StoreConfig::new(&dir).with_gate(amount_limit))?;
    store.install_projection("balance", ProjectionPlugin::from_file(guests::BALANCE)?)?;
    store.install_gate(GatePlugin::from_file(guests::OVERDRAFT)?)?;
    println!("gates installed: {:?}; projection: balance (WASM)", store.gates());

    let alice = Coordinate::new("account:alice", "bank")?;
    let bob = Coordinate::new("account:bob", "bank")?;
    report("deposit 500 to alice", store.append(&alice, DEPOSIT, &json!({"amount": 500})));
    report("deposit 200 to bob", store.append(&bob, DEPOSIT, &json!({"amount": 200})));
    report("deposit 50000 to bob", store.append(&bob, DEPOSIT, &json!({"amount": 50_000})));
    report("withdraw -5 from alice", store.append(&alice, WITHDRAW, &json!({"amount": -5})));
    report("withdraw 900 from bob", store.append(&bob, WITHDRAW, &json!({"amount": 900})));

    println!("\nbatch transfer alice → bob of 120 (both legs or neither):");
    let transfer = vec![
        BatchAppendItem::new(
            alice.clone(),
            WITHDRAW,
            &json!({"amount": 120}),
            AppendOptions::new(),
            CausationRef::None,
        )?,
        BatchAppendItem::new(
            bob.clone(),
            DEPOSIT,
            &json!({"amount": 120}),
            AppendOptions::new(),
            CausationRef::PriorItem(0),
        )?,
    ];
    match store.append_batch(transfer) {
        Ok(r) => println!("  ALLOWED  2 events, sequences {} and {}", r[0].sequence, r[1].sequence),
        Err(e) => println!("  DENIED   {e}"),
    }
    println!("\nbatch transfer of 20000 (second leg over the limit):");
    let too_big = vec![
        BatchAppendItem::new(
            alice.clone(),
            WITHDRAW,
            &json!({"amount": 1}),
            AppendOptions::new(),
            CausationRef::None,
        )?,
        BatchAppendItem::new(
            bob.clone(),
            DEPOSIT,
            &json!({"amount": 20_000}),
            AppendOptions::new(),
            CausationRef::None,
        )?,
    ];
    match store.append_batch(too_big) {
        Ok(_) => println!("  ALLOWED  (unexpected)"),
        Err(e) => println!("  DENIED   {e}\n           nothing of the batch was written"),
    }

    println!("\nbatch of two withdrawals of 300 from alice (each fits alone, not together):");
    let overdraw = (0..2)
        .map(|_| {
            BatchAppendItem::new(
                alice.clone(),
                WITHDRAW,
                &json!({"amount": 300}),
                AppendOptions::new(),
                CausationRef::None,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    match store.append_batch(overdraw) {
        Ok(_) => anyhow::bail!("a batch overdrew alice's account"),
        Err(e) => println!(
            "  DENIED   {e}\n           the second item was gated against the balance after the first"
        ),
    }

    println!("\na hostile gate that loops forever is installed:");
    store.install_gate(GatePlugin::from_file(guests::HOSTILE_LOOP)?.with_fuel(5_000_000))?;
    report("deposit 10 to alice", store.append(&alice, DEPOSIT, &json!({"amount": 10})));
    store.remove_gate("hostile-loop")?;
    println!("  hostile gate removed; the store never stopped serving");
    report("deposit 10 to alice", store.append(&alice, DEPOSIT, &json!({"amount": 10})));

    print_balances(&store, &[&alice, &bob])?;
    let events = store.stats().event_count;
    store.close()?;

    println!("\nrestart …");
    let store = Store::open(StoreConfig::new(&dir))?;
    store.install_projection("balance", ProjectionPlugin::from_file(guests::BALANCE)?)?;
    let rec = store.diagnostics().recovery;
    println!(
        "  reopened with {} events (checkpoint covered {} segment(s))",
        store.stats().event_count,
        rec.from_checkpoint
    );
    anyhow::ensure!(store.stats().event_count == events, "events lost across restart");
    print_balances(&store, &[&alice, &bob])?;
    for set in store.gate_sets() {
        let names: Vec<&str> = set.gates.iter().map(|g| g.name.as_str()).collect();
        println!(
            "  gate set {} {:?} admitted {} event(s)",
            set.id,
            names,
            store.events_admitted_by(set.id).len()
        );
    }

    let verify = store.verify();
    println!(
        "\nhash-chain verification: {} events, {} entities — {}",
        verify.events,
        verify.entities,
        if verify.is_ok() {
            "OK".to_string()
        } else {
            format!("{} PROBLEM(S): {:?}", verify.issues.len(), verify.issues)
        }
    );
    anyhow::ensure!(verify.is_ok(), "verification failed");
    store.close()?;
    Ok(())
}

fn report(what: &str, result: Result<AppendReceipt, StoreError>) {
    match result {
        Ok(r) => println!("  ALLOWED  {what:<28} → sequence {}", r.sequence),
        Err(StoreError::Denied(d)) => {
            println!("  DENIED   {what:<28} → {} {}: {}", d.gate, d.code, d.message);
            if let Some(cause) = d.context_value("cause") {
                println!("           cause: {cause}");
            }
        }
        Err(e) => println!("  ERROR    {what:<28} → {e}"),
    }
}

fn print_balances(store: &Store, accounts: &[&Coordinate]) -> Result<()> {
    println!("\nbalances (from the WASM projection, checked against the log):");
    for account in accounts {
        let mut replayed = 0i64;
        for entry in store.stream(account.entity()) {
            let amount = store.get(entry.event_id)?.event.payload["amount"].as_i64().unwrap_or(0);
            replayed += if entry.kind == WITHDRAW { -amount } else { amount };
        }
        let projected: i64 = store
            .projection_state("balance", account.entity())?
            .and_then(|b| String::from_utf8(b).ok()?.parse().ok())
            .unwrap_or(0);
        anyhow::ensure!(projected == replayed, "projection {projected} != log {replayed}");
        println!("  {:<16} {projected:>6}", account.entity());
    }
    Ok(())
}
