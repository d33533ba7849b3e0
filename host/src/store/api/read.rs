//! The read side of [`Store`]: lookups, queries, ancestry, cursors,
//! subscriptions, counts, snapshots.

use crate::store::*;

impl Store<Open> {
    /// The visible event with this id.
    /// Events returned recently are answered from a bounded cache of
    /// decoded events ([`IndexConfig::event_cache_bytes`]).
    pub fn get(&self, event_id: u128) -> Result<StoredEvent<serde_json::Value>, StoreError> {
        let (serial, entry) = {
            let gen = self.index.generation();
            if let Some(hit) = self.hot.get(event_id, gen.serial()) {
                return Ok((*hit).clone());
            }
            (gen.serial(), gen.by_id(event_id))
        };
        let entry = entry.ok_or(StoreError::NotFound(event_id))?;
        let event = self.reader.read_event(&entry)?;
        self.hot.offer(event_id, serial, &event, entry.disk_pos.length);
        Ok(event)
    }

    /// Visible index entries in `region`, in global-sequence order.
    pub fn query(&self, region: &Region) -> Vec<IndexEntry> {
        self.index.query(region)
    }

    /// Visible entries of exactly this entity, oldest first.
    pub fn stream(&self, entity: &str) -> Vec<IndexEntry> {
        self.index.stream(entity)
    }

    /// Visible entries in exactly this scope.
    pub fn by_scope(&self, scope: &str) -> Vec<IndexEntry> {
        self.index.query(&Region::scope(scope))
    }

    /// Visible entries of exactly this kind.
    pub fn by_fact(&self, kind: EventKind) -> Vec<IndexEntry> {
        self.index.query(&Region::all().with_fact(KindFilter::Exact(kind)))
    }

    /// The event and its ancestors along its entity's hash chain, newest
    /// first, at most `limit` events. Stops where the chain does not link.
    pub fn walk_ancestors(&self, event_id: u128, limit: usize) -> Vec<StoredEvent<serde_json::Value>> {
        let Some(start) = self.index.by_id(event_id) else { return Vec::new() };
        let stream = self.index.stream(start.coord.entity());
        let upto = stream.partition_point(|e| e.global_sequence <= start.global_sequence);
        let mut out = Vec::new();
        let mut expected: Option<[u8; 32]> = None;
        for entry in stream[..upto].iter().rev().take(limit) {
            if expected.is_some_and(|h| h != entry.hash_chain.event_hash) {
                break;
            }
            match self.reader.read_event(entry) {
                Ok(ev) => out.push(ev),
                Err(_) => break,
            }
            if entry.hash_chain.is_genesis() {
                break;
            }
            expected = Some(entry.hash_chain.prev_hash);
        }
        out
    }

    /// A cursor over `region` from the first event.
    pub fn cursor_guaranteed(&self, region: &Region) -> Cursor {
        Cursor::new(Arc::clone(&self.index), region.clone(), 0)
    }

    /// A cursor over `region` resuming at global sequence `from` (see [`Cursor::position`]).
    pub fn cursor_from(&self, region: &Region, from: u64) -> Cursor {
        Cursor::new(Arc::clone(&self.index), region.clone(), from)
    }

    /// A lossy push subscription to events committed from now on.
    pub fn subscribe_lossy(&self, region: &Region) -> Subscription {
        self.subscribers.subscribe(region, self.cfg.broadcast_capacity)
    }

    /// Counts.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            event_count: self.index.visible_count() as usize,
            global_sequence: self.index.inserted(),
        }
    }

    /// Counts, settings and how the index was recovered.
    pub fn diagnostics(&self) -> StoreDiagnostics {
        StoreDiagnostics {
            event_count: self.index.visible_count() as usize,
            global_sequence: self.index.inserted(),
            visible_sequence: self.index.visible(),
            data_dir: self.cfg.data_dir.clone(),
            segment_max_bytes: self.cfg.segment_max_bytes,
            fd_budget: self.cfg.fd_budget,
            restart_policy: self.cfg.writer.restart_policy,
            index_layout: self.cfg.index.layout.name(),
            tile_count: 0,
            entity_count: self.index.entity_count(),
            index_entries_on_disk: self.index.entries_on_disk(),
            index_list_values_on_disk: self.index.list_values_on_disk(),
            index_ids_on_disk: self.index.ids_on_disk(),
            single_appends_in_caller: self.shared.appends_in_caller(),
            recovery: self.report.clone(),
            gates: self.gate_names.lock().clone(),
        }
    }

    /// The stored payload bytes (canonical JSON) of a visible event.
    pub fn payload_bytes(&self, event_id: u128) -> Result<Vec<u8>, StoreError> {
        let entry = self.index.by_id(event_id).ok_or(StoreError::NotFound(event_id))?;
        self.reader.read_payload_bytes(&entry)
    }

    /// Copies the store into `dest` (a new or empty directory) while appends
    /// continue: the copy holds every event published when the snapshot
    /// began, opens as a store of its own, and is fsynced before this
    /// returns. Files are written with `create_new`, so a symlink or file
    /// already in `dest` is never followed or overwritten.
    pub fn snapshot(&self, dest: impl AsRef<std::path::Path>) -> Result<(), StoreError> {
        use std::io::{Read, Write};
        let dest = dest.as_ref();
        std::fs::create_dir_all(dest)?;
        if std::fs::read_dir(dest)?.next().is_some() {
            return Err(StoreError::Configuration(format!(
                "snapshot destination {} is not empty",
                dest.display()
            )));
        }
        let _still = self.maintenance.lock();
        let plan = self.call(Command::SnapshotPlan)?;
        let out_dir = cap_std::fs::Dir::open_ambient_dir(dest, cap_std::ambient_authority())?;
        for (id, len) in plan {
            let name = segment::segment_filename(id);
            let src = self.reader_file(id)?;
            let opts = cap_std::fs::OpenOptions::new().write(true).create_new(true).clone();
            let mut out = out_dir.open_with(&name, &opts)?.into_std();
            let copied = std::io::copy(&mut (&src).take(len), &mut out)?;
            if copied != len {
                return Err(StoreError::corrupt(id, format!("snapshot copied {copied} of {len} bytes")));
            }
            out.flush()?;
            out.sync_all()?;
        }
        out_dir.open(".")?.into_std().sync_all()?;
        Ok(())
    }

    fn reader_file(&self, id: u64) -> Result<std::fs::File, StoreError> {
        self.reader.open_file(id)
    }
}
