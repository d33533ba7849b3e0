//! Policy gates two ways: WASM gates the store runs on every append, and the
//! native `GateSet`/`Pipeline` for checks over an application context.
use batpak::prelude::*;
use batpak_test_artifacts as guests;
use serde_json::json;

struct BusinessHours;

impl Gate<u32> for BusinessHours {
    fn name(&self) -> &'static str {
        "business-hours"
    }
    fn evaluate(&self, hour: &u32) -> Result<(), Denial> {
        if (9..17).contains(hour) {
            Ok(())
        } else {
            Err(Denial::new("business-hours", "transfers run 9:00–17:00")
                .with_code("CLOSED")
                .with_context("hour", hour.to_string()))
        }
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig::new(dir.path())
        .with_gate(GatePlugin::from_file(guests::AMOUNT_LIMIT)?)
        .with_gate(GatePlugin::from_file(guests::KIND_DENYLIST)?);
    let store = Store::open(config)?;
    let account = Coordinate::new("account:7", "bank")?;
    let transfer = EventKind::custom(1, 1);

    store.append(&account, transfer, &json!({"amount": 250}))?;
    match store.append(&account, transfer, &json!({"amount": 25_000})) {
        Err(StoreError::Denied(d)) => println!("WASM gate {} said {}: {}", d.gate, d.code, d.message),
        other => anyhow::bail!("expected a denial, got {other:?}"),
    }
    match store.append(&account, EventKind::custom(0xE, 1), &json!({})) {
        Err(StoreError::Denied(d)) => println!("WASM gate {} said {}", d.gate, d.code),
        other => anyhow::bail!("expected a denial, got {other:?}"),
    }

    let mut gates = GateSet::new();
    gates.push(BusinessHours);
    let pipeline = Pipeline::new(gates);
    let at_night = pipeline.evaluate(&23, Proposal::new(json!({"amount": 10})));
    println!(
        "native gate at 23:00: {}",
        at_night.as_ref().map_or_else(|d| d.to_string(), |_| "allowed".into())
    );
    let receipt =
        pipeline.evaluate(&10, Proposal::new(json!({"amount": 10}))).map_err(|d| anyhow::anyhow!("{d}"))?;
    let committed = pipeline.commit(receipt, |payload| {
        let r = store.append(&account, transfer, &payload)?;
        Ok::<_, StoreError>(Committed { payload, event_id: r.event_id, sequence: r.sequence, hash: [0; 32] })
    })?;
    println!("committed at sequence {}", committed.sequence);
    assert_eq!(store.stream("account:7").len(), 2);
    store.close()?;
    Ok(())
}
