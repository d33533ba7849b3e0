//! Typestate: a door whose illegal transitions do not compile, recorded as events.
use batpak::prelude::*;
use batpak::typestate::Transition;
use serde_json::json;

batpak::define_state_machine!(DoorState { Open, Closed, Locked });
batpak::define_typestate!(Door<S: DoorState> { id: u32 });

const CLOSE: EventKind = EventKind::custom(3, 1);
const LOCK: EventKind = EventKind::custom(3, 2);

impl Door<Open> {
    fn close(self) -> (Door<Closed>, Transition<Open, Closed, serde_json::Value>) {
        let id = self.id;
        (Door::new(id), Transition::new(CLOSE, json!({"door": id})))
    }
}

impl Door<Closed> {
    fn lock(self) -> (Door<Locked>, Transition<Closed, Locked, serde_json::Value>) {
        let id = self.id;
        (Door::new(id), Transition::new(LOCK, json!({"door": id})))
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let coord = Coordinate::new("door:1", "dungeon")?;
    let door: Door<Open> = Door::new(1);
    let (door, closing) = door.close();
    store.apply_transition(&coord, closing)?;
    let (_door, locking) = door.lock();
    store.apply_transition(&coord, locking)?;
    // `_door.close()` would not compile: a locked door has no `close`.
    let kinds: Vec<EventKind> = store.stream("door:1").iter().map(|e| e.kind).collect();
    println!("door events: {kinds:?}");
    assert_eq!(kinds, vec![CLOSE, LOCK]);
    store.close()?;
    Ok(())
}
