//! Projection: how many events each entity has.
use batpak_guest::export_projection;
use batpak_guest::projection::{Event, Projection};
use std::collections::BTreeMap;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counts(BTreeMap<String, u64>);

impl Projection for Counts {
    const NAME: &'static str = "counter";
    fn apply(&mut self, e: &Event) {
        *self.0.entry(e.entity.clone()).or_default() += 1;
    }
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key).map(|n| n.to_string().into_bytes())
    }
}

export_projection!(Counts);
