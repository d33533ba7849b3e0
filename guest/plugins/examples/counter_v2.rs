//! The counter projection with a new schema: counts events per scope instead.
use batpak_guest::export_projection;
use batpak_guest::projection::{Event, Projection};
use std::collections::BTreeMap;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ScopeCounts(BTreeMap<String, u64>);

impl Projection for ScopeCounts {
    const NAME: &'static str = "counter";
    const SCHEMA_VERSION: u64 = 2;
    fn apply(&mut self, e: &Event) {
        *self.0.entry(e.scope.clone()).or_default() += 1;
    }
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key).map(|n| n.to_string().into_bytes())
    }
}

export_projection!(ScopeCounts);
