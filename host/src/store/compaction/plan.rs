//! `compact.plan`: the commit record of a compaction, and the roll-forward
//! that finishes one.
//!
//! A compaction writes its new segments under temporary names
//! (`NNNNNN.fbat.compact`) and fsyncs them. Writing this plan (atomically:
//! temporary file, fsync, rename, directory fsync) is its commit point.
//! Finishing then renames each output over the segment id it takes, removes
//! the segments it replaced, drops the checkpoint (it names the old files),
//! fsyncs the directory and deletes the plan. Every step can be repeated,
//! so an open that finds a plan simply finishes it; an open that finds
//! `.compact` files without a plan deletes them (the compaction never
//! committed). Either way the directory holds the old state or the new one.
//!
//! Layout: `"FBATCP" | u16 LE version (1) | u32 LE CRC32(body) | u64 LE body length | body`,
//! body = `varint output count, output ids, varint removed count, removed ids`.

use crate::store::checkpoint::CHECKPOINT_FILE;
use crate::store::data_dir::DataDir;
use crate::store::segment::codec::{envelope, open_envelope, Cursor, PutBytes, ShortRead};
use crate::store::segment::file::segment_filename;
use crate::store::StoreError;

/// File name of the plan.
pub(crate) const PLAN_FILE: &str = "compact.plan";
/// Suffix of a compaction output before the plan commits it.
pub(crate) const OUTPUT_SUFFIX: &str = ".compact";
pub(crate) const MAGIC: &[u8; 6] = b"FBATCP";
pub(crate) const VERSION: u16 = 1;

/// What a committed compaction does to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Segment ids the outputs take, in order (each replaces that input).
    pub outputs: Vec<u64>,
    /// Input segment ids removed without replacement.
    pub removed: Vec<u64>,
}

/// The temporary name of output `id`.
pub(crate) fn output_name(id: u64) -> String {
    format!("{}{OUTPUT_SUFFIX}", segment_filename(id))
}

impl Plan {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for ids in [&self.outputs, &self.removed] {
            body.put_varint(ids.len() as u64);
            for id in ids {
                body.put_varint(*id);
            }
        }
        envelope(MAGIC, VERSION, &body)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let body = open_envelope(bytes, MAGIC, VERSION)?;
        let short = |e: ShortRead| format!("truncated at {}", e.0);
        let mut c = Cursor::new(body);
        let mut list = || -> Result<Vec<u64>, ShortRead> {
            let n = c.varint("count")?;
            (0..n).map(|_| c.varint("segment id")).collect()
        };
        let outputs = list().map_err(short)?;
        let removed = list().map_err(short)?;
        Ok(Self { outputs, removed })
    }
}

/// Makes `plan` durable: from here on the compaction has happened.
pub(crate) fn commit(dir: &DataDir, plan: &Plan) -> Result<(), StoreError> {
    dir.write_atomic(PLAN_FILE, &plan.encode())
}

/// Carries out a committed plan (every step is idempotent), then deletes it.
pub(crate) fn finish(dir: &DataDir, plan: &Plan) -> Result<(), StoreError> {
    for &id in &plan.outputs {
        dir.rename_if_present(&output_name(id), &segment_filename(id))?;
    }
    for &id in &plan.removed {
        dir.remove_optional(&segment_filename(id))?;
    }
    dir.remove_optional(CHECKPOINT_FILE)?;
    dir.sync_dir()?;
    dir.remove_optional(PLAN_FILE)?;
    dir.sync_dir()
}

/// At open: finishes a committed compaction, discards an uncommitted one.
/// Returns whether a plan was finished.
pub(crate) fn recover(dir: &DataDir) -> Result<bool, StoreError> {
    let finished = match dir.read_optional(PLAN_FILE)? {
        Some(bytes) => {
            let plan = Plan::decode(&bytes)
                .map_err(|why| StoreError::corrupt(0, format!("{PLAN_FILE} is damaged: {why}")))?;
            tracing::warn!(?plan, "finishing a compaction interrupted after its commit");
            finish(dir, &plan)?;
            true
        }
        None => false,
    };
    let strays = dir.names_ending_with(OUTPUT_SUFFIX)?;
    for name in &strays {
        tracing::warn!(file = %name, "removing the output of a compaction that never committed");
        dir.remove_optional(name)?;
    }
    if !strays.is_empty() {
        dir.sync_dir()?;
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_and_rejects_damage() {
        let plan = Plan { outputs: vec![1, 2], removed: vec![3, 4, 5] };
        let mut bytes = plan.encode();
        assert_eq!(Plan::decode(&bytes), Ok(plan));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(Plan::decode(&bytes).is_err());
        assert!(Plan::decode(&bytes[..10]).is_err());
    }
}
