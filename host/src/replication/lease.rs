//! The writer lease: one key per stream in a JetStream KV bucket, saying
//! which node should write the stream and in which epoch. Every change is
//! a compare-and-set on the key's revision, so two nodes never both take
//! it. The lease is advice for operators and for `promote`; what keeps a
//! stale writer from extending the stream is the expected-sequence check
//! on every publish (docs/design.md, "Failover").

use super::{JetStreamConfig, ReplicationError};
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

/// The bucket every batpak lease lives in.
const BUCKET: &str = "batpak-leases";
/// Compare-and-set races lost before giving up.
const MAX_RACES: u32 = 8;

/// The lease's value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Holding {
    holder: String,
    epoch: u64,
    held: bool,
}

/// A lease this node holds.
pub(super) struct Lease {
    kv: kv::Store,
    key: String,
    holder: String,
    epoch: u64,
    revision: u64,
}

impl Lease {
    /// The epoch this node took the lease in.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Who holds the lease now, as `holder (epoch n)`, for error reports.
    pub(super) async fn current(&self) -> String {
        match self.kv.entry(self.key.as_str()).await {
            Ok(Some(e)) => match serde_json::from_slice::<Holding>(&e.value) {
                Ok(h) if h.held => format!("{} (epoch {})", h.holder, h.epoch),
                Ok(h) => format!("nobody (released after epoch {})", h.epoch),
                Err(_) => "an unreadable lease".into(),
            },
            Ok(None) => "nobody".into(),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// Gives the lease up if this node still holds it (a clean close).
    pub(super) async fn release(&self) {
        let value = Holding { holder: self.holder.clone(), epoch: self.epoch, held: false };
        let Ok(bytes) = serde_json::to_vec(&value) else { return };
        if let Err(e) = self.kv.update(self.key.as_str(), bytes.into(), self.revision).await {
            tracing::info!(error = %e, "lease not released (taken over, or the server is away)");
        }
    }
}

/// Opens the lease bucket, creating it (one value per key) if needed.
async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, ReplicationError> {
    if let Ok(store) = js.get_key_value(BUCKET).await {
        return Ok(store);
    }
    let config =
        kv::Config { bucket: BUCKET.into(), history: 1, num_replicas: replicas, ..Default::default() };
    js.create_key_value(config).await.map_err(|e| ReplicationError::Nats(format!("lease bucket: {e}")))
}

/// Takes the stream's lease for `holder`: free (never taken, or
/// released), already `holder`'s (a restart), or, with `takeover`, from
/// whoever holds it (a promotion; the epoch goes up).
pub(super) async fn acquire(
    js: &jetstream::Context,
    cfg: &JetStreamConfig,
    holder: &str,
    takeover: bool,
) -> Result<Lease, ReplicationError> {
    let kv = bucket(js, cfg.replicas).await?;
    let key = cfg.stream.clone();
    let nats = |e: &dyn std::fmt::Display| ReplicationError::Nats(format!("lease {key}: {e}"));
    for _ in 0..MAX_RACES {
        let current = kv.entry(key.as_str()).await.map_err(|e| nats(&e))?;
        let live = current.filter(|e| e.operation == kv::Operation::Put);
        let (epoch, revision) = match &live {
            None => (1, None),
            Some(entry) => {
                let h: Holding = serde_json::from_slice(&entry.value).map_err(|e| {
                    ReplicationError::Config(format!("lease {key} holds something else ({e}); remove it"))
                })?;
                if h.held && h.holder != holder && !takeover {
                    return Err(ReplicationError::LeaseHeld { holder: h.holder, epoch: h.epoch });
                }
                let epoch = if h.held && h.holder == holder { h.epoch } else { h.epoch + 1 };
                (epoch, Some(entry.revision))
            }
        };
        let value = Holding { holder: holder.to_string(), epoch, held: true };
        let bytes = serde_json::to_vec(&value).map_err(|e| nats(&e))?;
        let written = match revision {
            None => kv.create(key.as_str(), bytes.into()).await.map_err(|e| e.to_string()),
            Some(rev) => kv.update(key.as_str(), bytes.into(), rev).await.map_err(|e| e.to_string()),
        };
        match written {
            Ok(revision) => return Ok(Lease { kv, key, holder: holder.to_string(), epoch, revision }),
            Err(why) => tracing::debug!(error = %why, "lease changed while taking it; reading it again"),
        }
    }
    Err(nats(&format!("lost {MAX_RACES} compare-and-set races for the lease")))
}
