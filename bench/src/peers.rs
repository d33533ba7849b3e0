//! The stores a user would pick instead, running the same event-store
//! workloads. Built only with `RUSTFLAGS="--cfg batpak_peers"`, so no test
//! build compiles fjall or SQLite.
//!
//! Each append does what ours does: read the entity's head (clock and last
//! hash), chain a blake3 hash over the previous hash and the payload, and
//! write the event and the new head atomically. Payloads are the same
//! 100-byte JSON. "Buffered" leaves durability to the OS (fjall's journal
//! unsynced, SQLite WAL with `synchronous=NORMAL`); "durable" syncs every
//! append (fjall `persist(SyncAll)`, SQLite WAL with `synchronous=FULL`).

use crate::util::payload;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn entity(i: usize) -> String {
    format!("entity:{}", i % 64)
}

/// The head record: clock (u32 LE) then the last hash.
fn next_head(head: Option<&[u8]>, body: &[u8]) -> (u32, [u8; 32]) {
    let (clock, prev) = match head {
        Some(h) if h.len() == 36 => {
            let clock = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) + 1;
            let mut prev = [0u8; 32];
            prev.copy_from_slice(&h[4..]);
            (clock, prev)
        }
        _ => (0, [0u8; 32]),
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev);
    hasher.update(body);
    (clock, *hasher.finalize().as_bytes())
}

fn head_bytes(clock: u32, hash: &[u8; 32]) -> Vec<u8> {
    let mut v = clock.to_le_bytes().to_vec();
    v.extend_from_slice(hash);
    v
}

/// fjall 3: one keyspace for events, one for heads.
pub struct Fjall {
    _dir: tempfile::TempDir,
    db: fjall::Database,
    events: fjall::Keyspace,
    heads: fjall::Keyspace,
    durable: bool,
    /// Read-modify-write of a head must not interleave between callers.
    lock: Mutex<()>,
}

impl Fjall {
    pub fn open(durable: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = fjall::Database::builder(dir.path()).open().expect("fjall open");
        let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default).expect("keyspace");
        let heads = db.keyspace("heads", fjall::KeyspaceCreateOptions::default).expect("keyspace");
        Self { _dir: dir, db, events, heads, durable, lock: Mutex::new(()) }
    }

    /// Appends `bodies` for `entities` as one atomic write.
    pub fn append(&self, items: &[(String, Vec<u8>)]) {
        let _guard = self.lock.lock().expect("lock");
        let mut batch = self.db.batch();
        let mut heads: std::collections::HashMap<&str, Vec<u8>> = std::collections::HashMap::new();
        for (entity, body) in items {
            let current = match heads.get(entity.as_str()) {
                Some(h) => Some(h.clone()),
                None => self.heads.get(entity.as_bytes()).expect("get").map(|v| v.to_vec()),
            };
            let (clock, hash) = next_head(current.as_deref(), body);
            let mut key = entity.as_bytes().to_vec();
            key.extend_from_slice(&clock.to_be_bytes());
            batch.insert(&self.events, key, body.as_slice());
            let head = head_bytes(clock, &hash);
            batch.insert(&self.heads, entity.as_bytes(), head.as_slice());
            heads.insert(entity, head);
        }
        batch.commit().expect("commit");
        if self.durable {
            self.db.persist(fjall::PersistMode::SyncAll).expect("persist");
        }
    }

    /// [`Fjall::append`], then the journal handed to the OS
    /// (`persist(Buffer)`): what our single append promises on `Ok`, that
    /// the event survives a crash of the process (not of the machine).
    pub fn append_to_os(&self, items: &[(String, Vec<u8>)]) {
        self.append(items);
        self.db.persist(fjall::PersistMode::Buffer).expect("persist");
    }
}

/// SQLite (bundled) in WAL mode: `events(entity, clock, hash, body)` and
/// `heads(entity, clock, hash)`.
pub struct Sqlite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    durable: bool,
}

impl Sqlite {
    pub fn open(durable: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let s = Self { _dir: dir, path, durable };
        s.connect()
            .execute_batch(
                "CREATE TABLE events(entity TEXT, clock INTEGER, hash BLOB, body BLOB, PRIMARY KEY(entity, clock));
                 CREATE TABLE heads(entity TEXT PRIMARY KEY, clock INTEGER, hash BLOB);",
            )
            .expect("schema");
        s
    }

    /// One connection (per caller thread).
    pub fn connect(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.path).expect("sqlite open");
        let sync = if self.durable { "FULL" } else { "NORMAL" };
        c.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync};")).expect("pragmas");
        c.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
        c
    }

    /// Appends `items` in one transaction.
    pub fn append(c: &mut rusqlite::Connection, items: &[(String, Vec<u8>)]) {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("begin");
        for (entity, body) in items {
            let head: Option<(u32, Vec<u8>)> = tx
                .query_row("SELECT clock, hash FROM heads WHERE entity = ?1", [entity], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .ok();
            let current = head.map(|(clock, hash)| head_bytes(clock, &hash.try_into().unwrap_or([0; 32])));
            let (clock, hash) = next_head(current.as_deref(), body);
            tx.execute(
                "INSERT INTO events(entity, clock, hash, body) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![entity, clock, &hash[..], body],
            )
            .expect("insert");
            tx.execute(
                "INSERT INTO heads(entity, clock, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT(entity) DO UPDATE SET clock = excluded.clock, hash = excluded.hash",
                rusqlite::params![entity, clock, &hash[..]],
            )
            .expect("head");
        }
        tx.commit().expect("commit");
    }
}

fn body(i: usize) -> Vec<u8> {
    serde_json::to_vec(&payload(i)).expect("payload")
}

/// Single appends, one caller, buffered: (fjall, sqlite) ev/s.
pub fn single_append(n: usize) -> (f64, f64) {
    let fjall = fjall_single_append(n);
    let payloads: Vec<serde_json::Value> = (0..n).map(payload).collect();
    let s = Sqlite::open(false);
    let mut c = s.connect();
    let start = Instant::now();
    for (i, p) in payloads.iter().enumerate() {
        Sqlite::append(&mut c, &[item(i, p)]);
    }
    (fjall, n as f64 / start.elapsed().as_secs_f64())
}

/// The event a single append of `payload` writes: its entity's name and
/// its JSON bytes. Single-append loops build it inside the timed loop, as
/// `ours::single_append` builds its coordinate and `Store::append`
/// serializes its payload there: every store starts from the same values.
fn item(i: usize, payload: &serde_json::Value) -> Item {
    (entity(i), serde_json::to_vec(payload).expect("payload"))
}

/// Single appends, one caller, fjall alone with its journal buffered: ev/s.
pub fn fjall_single_append(n: usize) -> f64 {
    fjall_singles(n, Fjall::append)
}

/// Single appends, one caller, each handed to the OS before it returns
/// (fjall's journal flushed to the OS, not fsynced): ev/s.
pub fn single_append_to_os(n: usize) -> f64 {
    fjall_singles(n, Fjall::append_to_os)
}

/// One event to append: its entity and its JSON payload.
type Item = (String, Vec<u8>);

/// `n` single appends to a fresh buffered fjall store through `append`: ev/s.
fn fjall_singles(n: usize, append: fn(&Fjall, &[Item])) -> f64 {
    let payloads: Vec<serde_json::Value> = (0..n).map(payload).collect();
    let f = Fjall::open(false);
    let start = Instant::now();
    for (i, p) in payloads.iter().enumerate() {
        append(&f, &[item(i, p)]);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Durable single appends from `callers` threads: (fjall, sqlite) ev/s.
pub fn durable_append(callers: usize, per_caller: usize) -> (f64, f64) {
    let f = Arc::new(Fjall::open(true));
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || (0..per_caller).for_each(|i| f.append(&[(entity(t), body(i))])))
        })
        .collect();
    threads.into_iter().for_each(|h| h.join().expect("join"));
    let fjall = (callers * per_caller) as f64 / start.elapsed().as_secs_f64();
    let s = Arc::new(Sqlite::open(true));
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut c = s.connect();
                (0..per_caller).for_each(|i| Sqlite::append(&mut c, &[(entity(t), body(i))]));
            })
        })
        .collect();
    threads.into_iter().for_each(|h| h.join().expect("join"));
    (fjall, (callers * per_caller) as f64 / start.elapsed().as_secs_f64())
}

/// Durable batches of `size`: (fjall, sqlite) ev/s.
pub fn batch_append(size: usize, batches: usize) -> (f64, f64) {
    let all: Vec<Vec<(String, Vec<u8>)>> =
        (0..batches).map(|b| (0..size).map(|i| (entity(b * size + i), body(i))).collect()).collect();
    let f = Fjall::open(true);
    let start = Instant::now();
    all.iter().for_each(|items| f.append(items));
    let fjall = (size * batches) as f64 / start.elapsed().as_secs_f64();
    let s = Sqlite::open(true);
    let mut c = s.connect();
    let start = Instant::now();
    all.iter().for_each(|items| Sqlite::append(&mut c, items));
    (fjall, (size * batches) as f64 / start.elapsed().as_secs_f64())
}

/// Fills a buffered store of each peer with `n` events in writes of 1 000,
/// the way `ours::populate` fills ours: (fjall dir, sqlite dir).
pub fn populate(n: usize) -> (tempfile::TempDir, tempfile::TempDir) {
    let batches: Vec<Vec<(String, Vec<u8>)>> = (0..n)
        .step_by(1000)
        .map(|s| (s..(s + 1000).min(n)).map(|i| (entity(i), body(i))).collect())
        .collect();
    let f = Fjall::open(false);
    batches.iter().for_each(|items| f.append(items));
    f.db.persist(fjall::PersistMode::SyncAll).expect("persist");
    let Fjall { _dir: fjall_dir, .. } = f;
    let s = Sqlite::open(false);
    let mut c = s.connect();
    batches.iter().for_each(|items| Sqlite::append(&mut c, items));
    drop(c);
    let Sqlite { _dir: sqlite_dir, .. } = s;
    (fjall_dir, sqlite_dir)
}

/// The key of a random event among `n`, as (entity, clock): event `i` is
/// entity `i % 64`'s `i / 64`-th.
fn random_key(x: &mut u64, n: usize) -> (String, u32) {
    *x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let i = (*x >> 17) as usize % n;
    (entity(i), (i / 64) as u32)
}

/// In a fresh process: opens the peer's store in `dir` (`n` events), serves
/// `gets` point reads of random events, and returns the process's peak RSS
/// (VmHWM) in MiB.
pub fn open_and_get(which: &str, dir: &std::path::Path, n: usize, gets: usize) -> f64 {
    let mut x = 17u64;
    match which {
        "fjall" => {
            let db = fjall::Database::builder(dir).open().expect("fjall open");
            let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default).expect("keyspace");
            for _ in 0..gets {
                let (entity, clock) = random_key(&mut x, n);
                let mut key = entity.into_bytes();
                key.extend_from_slice(&clock.to_be_bytes());
                assert!(events.get(key).expect("get").is_some(), "every event is found");
            }
        }
        _ => {
            let c = rusqlite::Connection::open(dir.join("events.db")).expect("sqlite open");
            let mut q =
                c.prepare("SELECT body FROM events WHERE entity = ?1 AND clock = ?2").expect("prepare");
            for _ in 0..gets {
                let (entity, clock) = random_key(&mut x, n);
                let body: Vec<u8> =
                    q.query_row(rusqlite::params![entity, clock], |r| r.get(0)).expect("found");
                assert!(!body.is_empty());
            }
        }
    }
    crate::util::status_mib("VmHWM:")
}
