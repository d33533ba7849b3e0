//! A power-loss simulator: an observe-only fault injector that keeps, from
//! the store's fsync and name-change reports, what a disk would hold after a
//! power cut (see host/tests/power_loss.rs for the model).

use batpak::prelude::*;
use batpak::store::fault::{FaultInjector, InjectionPoint, IoStep};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// splitmix64: small, seedable, good enough to pick steps and bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// What the disk holds after the cut: name → bytes.
pub type Image = BTreeMap<String, Vec<u8>>;

struct SimState {
    rng: Rng,
    /// Contents as of each inode's last completed fsync: the step at which
    /// that fsync started, and the bytes the file held then.
    synced: HashMap<u64, (u64, Vec<u8>)>,
    /// fsyncs started and not yet completed, by inode and thread: the step
    /// each started at and the bytes it is sure to carry (the file's bytes
    /// when it started; bytes written while it runs may or may not reach
    /// the disk, so they count as unsynced).
    syncing: HashMap<(u64, std::thread::ThreadId), (u64, Vec<u8>)>,
    /// Names as of the last completed directory fsync.
    durable_names: BTreeMap<String, u64>,
    /// The listing after each name change since then.
    pending_names: Vec<BTreeMap<String, u64>>,
    steps: u64,
    crash_at: u64,
    image: Option<(Image, usize)>,
}

pub struct Sim {
    state: Mutex<SimState>,
    /// Operations the client has completed (acknowledged) so far.
    pub done: Arc<AtomicUsize>,
}

pub fn listing(dir: &Path) -> BTreeMap<String, u64> {
    let mut names = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "LOCK" {
            names.insert(name, entry.metadata().unwrap().ino());
        }
    }
    names
}

/// Bytes at offsets below `cut` come from `new`, the rest from `old`.
pub fn torn(new: &[u8], old: &[u8], cut: usize) -> Vec<u8> {
    let from_new = cut.min(new.len());
    let mut out = new[..from_new].to_vec();
    if old.len() > from_new {
        out.extend_from_slice(&old[from_new..]);
    }
    out
}

impl SimState {
    fn capture(&mut self, dir: &Path) -> Image {
        let now = listing(dir);
        let by_ino: HashMap<u64, &String> = now.iter().map(|(name, ino)| (*ino, name)).collect();
        let choice = self.rng.below(self.pending_names.len() as u64 + 1) as usize;
        let names = if choice == 0 { &self.durable_names } else { &self.pending_names[choice - 1] };
        let mut image = Image::new();
        for (name, ino) in names {
            let old = self.synced.get(ino).map(|(_, bytes)| bytes.clone()).unwrap_or_default();
            let new = match by_ino.get(ino) {
                Some(current) => std::fs::read(dir.join(current)).unwrap_or_else(|_| old.clone()),
                None => old.clone(),
            };
            let kept = match self.rng.below(3) {
                0 => new,
                1 => old,
                _ => {
                    let cut = self.rng.below(new.len().max(old.len()) as u64 + 1) as usize;
                    torn(&new, &old, cut)
                }
            };
            image.insert(name.clone(), kept);
        }
        image
    }
}

impl Sim {
    pub fn new(seed: u64, crash_at: u64, done: Arc<AtomicUsize>) -> Self {
        let state = SimState {
            rng: Rng(seed),
            synced: HashMap::new(),
            syncing: HashMap::new(),
            durable_names: BTreeMap::new(),
            pending_names: Vec::new(),
            steps: 0,
            crash_at,
            image: None,
        };
        Self { state: Mutex::new(state), done }
    }

    /// Counts a step; the power goes at the chosen one.
    fn step(&self, state: &mut SimState, dir: &Path) {
        state.steps += 1;
        if state.steps == state.crash_at && state.image.is_none() {
            let image = state.capture(dir);
            state.image = Some((image, self.done.load(Ordering::SeqCst)));
        }
    }

    /// The image taken at the crash step, or one taken now (the power goes
    /// after the last operation) if the run never reached that step.
    pub fn take_image(&self, dir: &Path) -> (Image, usize) {
        let mut state = self.state.lock();
        match state.image.take() {
            Some(image) => image,
            None => {
                let image = state.capture(dir);
                (image, self.done.load(Ordering::SeqCst))
            }
        }
    }
}

impl FaultInjector for Sim {
    fn check(&self, _: InjectionPoint) -> Option<StoreError> {
        None
    }

    fn injects(&self) -> bool {
        false
    }

    fn observe_io(&self, step: IoStep<'_>) {
        let mut state = self.state.lock();
        match step {
            IoStep::FileSyncing { dir, name } => {
                self.step(&mut state, dir);
                let path = dir.join(name);
                if let (Ok(meta), Ok(bytes)) = (std::fs::metadata(&path), std::fs::read(&path)) {
                    let started = state.steps;
                    state.syncing.insert((meta.ino(), std::thread::current().id()), (started, bytes));
                }
            }
            IoStep::DirSyncing { dir } => self.step(&mut state, dir),
            IoStep::FileSynced { dir, name } => {
                // The latest-started completed fsync of a file decides what
                // it holds: an fsync that started earlier and ends later
                // (the writer's helper thread) carries no more than it.
                let Ok(meta) = std::fs::metadata(dir.join(name)) else { return };
                let key = (meta.ino(), std::thread::current().id());
                if let Some((started, bytes)) = state.syncing.remove(&key) {
                    if state.synced.get(&key.0).is_none_or(|(before, _)| *before <= started) {
                        state.synced.insert(key.0, (started, bytes));
                    }
                }
            }
            IoStep::DirSynced { dir } => {
                state.durable_names = listing(dir);
                state.pending_names.clear();
            }
            IoStep::NamesChanged { dir } => {
                let now = listing(dir);
                state.pending_names.push(now);
                self.step(&mut state, dir);
            }
            _ => {}
        }
    }
}

impl Sim {
    /// Draws the next cut's choices from `seed`.
    pub fn reseed(&self, seed: u64) {
        self.state.lock().rng = Rng(seed);
    }

    /// Forgets the history: everything in `dir` is durable as it is now
    /// (after a clean close, or for a directory written by the test).
    pub fn settle(&self, dir: &Path) {
        let mut state = self.state.lock();
        state.synced.clear();
        state.syncing.clear();
        let now = state.steps;
        for (name, ino) in listing(dir) {
            if let Ok(bytes) = std::fs::read(dir.join(&name)) {
                state.synced.insert(ino, (now, bytes));
            }
        }
        state.durable_names = listing(dir);
        state.pending_names.clear();
    }
}

pub fn write_image(image: &Image, into: &Path) {
    for (name, bytes) in image {
        std::fs::write(into.join(name), bytes).unwrap();
    }
}

pub fn scratch() -> tempfile::TempDir {
    // tmpfs makes the store's own fsyncs cheap; the simulation does not need them.
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}
