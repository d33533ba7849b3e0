//! Projection that traps on any event whose payload has "poison": true.
use batpak_guest::export_projection;
use batpak_guest::projection::{Event, Projection};

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Fragile(u64);

impl Projection for Fragile {
    const NAME: &'static str = "fragile";
    fn apply(&mut self, e: &Event) {
        if e.field("poison").and_then(|v| v.as_bool()) == Some(true) {
            panic!("poisoned event");
        }
        self.0 += 1;
    }
    fn read(&self, _key: &str) -> Option<Vec<u8>> {
        Some(self.0.to_string().into_bytes())
    }
}

export_projection!(Fragile);
