//! Recovery's frame scan, streamed into the index. This thread decodes
//! frames ([`scan::first_pass`]); a second thread recomputes the chain
//! hashes of each chunk of committed events; this thread inserts every
//! hashed chunk into the index as it comes back. Decoding, hashing and
//! indexing overlap, and memory stays a few chunks however large the
//! segment is.

use super::scan::{self, ChainHasher, Feed, HashMap, ScanSummary, Scanned};
use crate::event::HashChain;
use crate::store::index::StoreIndex;
use crate::store::StoreError;

/// Chunks in flight to the hashing thread.
const FEED_QUEUE: usize = 8;

/// A chunk back from the hasher, with each event's hash link.
type Hashed<'f> = (Vec<Scanned<'f>>, Vec<HashChain>);

/// Scans segment `segment_id` (`bytes` is the whole file; `frames_end`
/// excludes any footer) and inserts its committed events into `index`.
/// `done_with(range)` is told, in order, the bytes of `bytes` that every
/// event inserted so far is past (a mapped caller drops them from memory).
pub(crate) fn scan_into_index(
    bytes: &[u8],
    segment_id: u64,
    frames_end: usize,
    tail: bool,
    index: &StoreIndex,
    done_with: &mut dyn FnMut(std::ops::Range<usize>),
) -> Result<ScanSummary, StoreError> {
    let intern = |s: &str| index.intern(s);
    // The hasher asks for an entity's previous hash at the entity's first
    // event in this segment. No event of that entity from this segment has
    // been fed before it, so none has been inserted: the index's head is
    // still the one the previous segments left.
    let before = |entity: &str| index.head(entity).map_or([0u8; 32], |h| h.hash);
    let mut inserter = Inserter { index, segment_id, global: HashMap::default(), done_with, released: 0 };
    std::thread::scope(|scope| {
        let (tx, rx) = flume::bounded::<Feed<'_>>(FEED_QUEUE);
        // Unbounded: the hasher must never wait on this thread, which may
        // itself be waiting to send it the next chunk.
        let (done_tx, done_rx) = flume::unbounded::<Hashed<'_>>();
        let before = &before;
        let spawned =
            std::thread::Builder::new().name("batpak-scan-hash".into()).spawn_scoped(scope, move || {
                let mut hasher = ChainHasher::new(segment_id, before);
                for feed in rx.iter() {
                    match feed {
                        Feed::Str(id, name) => hasher.learn(id, name),
                        Feed::Events(events) => {
                            let chains = hasher.hash(&events)?;
                            if done_tx.send((events, chains)).is_err() {
                                break;
                            }
                        }
                    }
                }
                Ok::<(), StoreError>(())
            });
        let Ok(worker) = spawned else {
            return scan_inline(bytes, segment_id, frames_end, tail, &mut inserter, before);
        };
        let summary = scan::first_pass(bytes, segment_id, frames_end, tail, &intern, &mut |feed| {
            if let Feed::Str(id, name) = &feed {
                inserter.learn(*id, name)?;
            }
            tx.send(feed).map_err(|_| StoreError::corrupt(segment_id, "chain hashing stopped"))?;
            while let Ok((events, chains)) = done_rx.try_recv() {
                inserter.insert(&events, chains)?;
            }
            Ok(())
        });
        drop(tx);
        let mut inserted = Ok(());
        if summary.is_ok() {
            // The rest comes back until the hasher has taken every chunk.
            for (events, chains) in done_rx.iter() {
                inserted = inserter.insert(&events, chains);
                if inserted.is_err() {
                    break;
                }
            }
        }
        drop(done_rx);
        let hashed = worker.join().map_err(|_| StoreError::corrupt(segment_id, "hashing thread panicked"))?;
        // A hashing error explains a first pass that stopped early: report it first.
        hashed?;
        let summary = summary?;
        inserted?;
        Ok(summary)
    })
}

/// [`scan_into_index`] on one thread (no second thread could be started).
fn scan_inline(
    bytes: &[u8],
    segment_id: u64,
    frames_end: usize,
    tail: bool,
    inserter: &mut Inserter<'_>,
    before: &(dyn Fn(&str) -> [u8; 32] + Sync),
) -> Result<ScanSummary, StoreError> {
    let index = inserter.index;
    let intern = |s: &str| index.intern(s);
    let mut hasher = ChainHasher::new(segment_id, before);
    scan::first_pass(bytes, segment_id, frames_end, tail, &intern, &mut |feed| match feed {
        Feed::Str(id, name) => {
            inserter.learn(id, &name)?;
            hasher.learn(id, name);
            Ok(())
        }
        Feed::Events(events) => {
            let chains = hasher.hash(&events)?;
            inserter.insert(&events, chains)
        }
    })
}

/// Inserts hashed chunks, naming entity and scope by store-wide string id.
struct Inserter<'i> {
    index: &'i StoreIndex,
    segment_id: u64,
    /// Segment-local string id → store-wide string id.
    global: HashMap<u32, u32>,
    /// Told which bytes of the segment every event is past (see
    /// `scan_into_index`), and where the last range told ended.
    done_with: &'i mut dyn FnMut(std::ops::Range<usize>),
    released: usize,
}

impl Inserter<'_> {
    fn learn(&mut self, local: u32, name: &str) -> Result<(), StoreError> {
        let (_, id) =
            self.index.intern_with_id(name).map_err(|why| StoreError::corrupt(self.segment_id, why))?;
        self.global.insert(local, id);
        Ok(())
    }

    fn insert(&mut self, events: &[Scanned<'_>], chains: Vec<HashChain>) -> Result<(), StoreError> {
        let resolve = |r: u32| self.global.get(&r).copied().ok_or_else(|| "unknown string ref".to_string());
        let entries = events.iter().zip(chains).map(|(s, chain)| {
            Ok(s.loaded(chain, resolve(s.record.entity_ref)?, resolve(s.record.scope_ref)?))
        });
        self.index.insert_each(entries).map_err(|why| StoreError::corrupt(self.segment_id, why))?;
        // Chunks come back in file order: nothing before this chunk's last
        // event is read again.
        if let Some(last) = events.last() {
            let end = usize::try_from(last.disk_pos.offset).unwrap_or(self.released);
            if end > self.released {
                (self.done_with)(self.released..end);
                self.released = end;
            }
        }
        Ok(())
    }
}
