//! Projection whose `read` burns fuel (a long loop) before answering.
use batpak_guest::export_projection;
use batpak_guest::projection::{Event, Projection};

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Slow(u64);

impl Projection for Slow {
    const NAME: &'static str = "slow-read";
    fn apply(&mut self, _e: &Event) {
        self.0 += 1;
    }
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        let mut x = key.len() as u64 + self.0;
        for _ in 0..400_000u64 {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        Some(x.to_string().into_bytes())
    }
}

export_projection!(Slow);
