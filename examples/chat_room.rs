//! A chat room: a lossy live feed on a thread, and a guaranteed transcript by cursor.
use batpak::prelude::*;
use serde_json::json;

const MESSAGE: EventKind = EventKind::custom(2, 1);
const JOIN: EventKind = EventKind::custom(2, 2);

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let room = Coordinate::new("room:lobby", "chat")?;

    // Live feed: only messages, stop after three.
    let feed = store.subscribe_lossy(&Region::entity("room:lobby"));
    let listener = std::thread::spawn(move || {
        let mut ops = feed.ops().filter(|n| n.kind == MESSAGE).take(3);
        let mut heard = 0;
        while ops.recv().is_some() {
            heard += 1;
        }
        heard
    });

    store.append(&room, JOIN, &json!({"who": "ada"}))?;
    store.append(&room, MESSAGE, &json!({"who": "ada", "text": "hello"}))?;
    let burst = ["hi ada", "welcome", "🎉"]
        .iter()
        .map(|t| {
            BatchAppendItem::new(
                room.clone(),
                MESSAGE,
                &json!({"who": "bob", "text": t}),
                AppendOptions::new(),
                CausationRef::None,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    store.append_batch(burst)?;
    println!(
        "live listener heard {} messages",
        listener.join().map_err(|_| anyhow::anyhow!("listener panicked"))?
    );

    // Transcript: every event, in order, exactly once.
    let mut cursor = store.cursor_guaranteed(&Region::entity("room:lobby"));
    let first = cursor.poll().ok_or_else(|| anyhow::anyhow!("empty room"))?;
    println!("first event: {}", store.get(first.event_id)?.event.payload);
    for entry in cursor.poll_batch(100) {
        println!("  {}", store.get(entry.event_id)?.event.payload);
    }
    assert_eq!(store.stream("room:lobby").len(), 5);
    assert_eq!(store.by_fact(MESSAGE).len(), 4);
    store.close()?;
    Ok(())
}
