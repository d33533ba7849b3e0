//! An atomic batch with a causation chain between its items.
use batpak::prelude::*;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("batpak-batch-{}", std::process::id()));
    let store = Store::open(StoreConfig::new(&dir))?;
    let order = Coordinate::new("order:7", "shop")?;
    let items = vec![
        BatchAppendItem::new(
            order.clone(),
            EventKind::custom(2, 1),
            &json!({"placed": true}),
            AppendOptions::new(),
            CausationRef::None,
        )?,
        BatchAppendItem::new(
            order.clone(),
            EventKind::custom(2, 2),
            &json!({"paid": 30}),
            AppendOptions::new(),
            CausationRef::PriorItem(0),
        )?,
        BatchAppendItem::new(
            order.clone(),
            EventKind::custom(2, 3),
            &json!({"shipped": true}),
            AppendOptions::new(),
            CausationRef::PriorItem(1),
        )?,
    ];
    let receipts = store.append_batch(items)?;
    for e in store.stream("order:7") {
        println!(
            "clock {} kind {} caused by {:?}",
            e.clock,
            e.kind,
            e.causation_id.map(|c| c == receipts[0].event_id || c == receipts[1].event_id)
        );
    }
    assert_eq!(store.walk_ancestors(receipts[2].event_id, 10).len(), 3);
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
