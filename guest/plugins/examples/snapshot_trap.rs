//! Projection that counts events but traps whenever it is asked for a
//! snapshot (the host must still close the store and snapshot the others).
use batpak_guest::export_projection;
use batpak_guest::projection::{Event, Projection};

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct NoSnapshot(u64);

impl Projection for NoSnapshot {
    const NAME: &'static str = "snapshot-trap";
    fn apply(&mut self, _e: &Event) {
        self.0 += 1;
    }
    fn read(&self, _key: &str) -> Option<Vec<u8>> {
        Some(self.0.to_string().into_bytes())
    }
    fn snapshot(&self) -> Vec<u8> {
        core::arch::wasm32::unreachable()
    }
}

export_projection!(NoSnapshot);
