//! Open a store, append, read back, close.
use batpak::prelude::*;

fn main() -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let store = Store::open(StoreConfig::new(&dir))?;
    let user = Coordinate::new("user:1", "profile")?;
    let receipt = store.append(&user, EventKind::DATA, &serde_json::json!({"name": "Ada"}))?;
    let event = store.get(receipt.event_id)?;
    println!("stored {} at sequence {}: {}", event.coordinate, receipt.sequence, event.event.payload);
    assert_eq!(event.event.payload["name"], "Ada");
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("batpak-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
