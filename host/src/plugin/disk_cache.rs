//! Compiled components kept on disk, so a store with a large guest (an
//! 18 MB Python component takes seconds to compile) opens without
//! compiling it again.
//!
//! An entry is named `<blake3 of the component>-<engine fingerprint>.bpcc`;
//! the fingerprint hashes wasmtime's compatibility hash (its version and
//! every setting that changes machine code, the stack limit included). The
//! file is `"BPCC0001" | u64 LE length | 32-byte digest of the payload |
//! payload`, the payload being wasmtime's serialised component. Before the
//! payload reaches wasmtime, its length and digest are checked: a torn,
//! truncated or corrupted entry, or a file that is not an entry, is a miss
//! (and is overwritten by a fresh compile), never loaded unchecked.
//! Entries are written to a temporary name and renamed, so readers never
//! see a partial entry. The directory must be writable only by its owner:
//! the digest detects damage, it does not authenticate who wrote the file.

use super::{compile_uncached, digest, hex, PluginError};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"BPCC0001";
const HEADER: usize = 8 + 8 + 32;

/// The entry path for `bytes` compiled by `engine` in `dir`.
fn entry_path(dir: &Path, bytes: &[u8], engine: &Engine) -> PathBuf {
    // SipHash with fixed keys: stable for one build of this crate, which is
    // all an engine fingerprint has to be (wasmtime's hash changes with it).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{}-{:016x}.bpcc", hex(&digest(bytes)), h.finish()))
}

/// The component for `bytes` from `dir` if a sound entry is there; else
/// compiles it and stores an entry (a failure to store is logged: the
/// cache is an optimisation).
pub(crate) fn load_or_compile(dir: &Path, bytes: &[u8], engine: &Engine) -> Result<Component, PluginError> {
    let path = entry_path(dir, bytes, engine);
    if let Some(found) = load(&path, engine) {
        return Ok(found);
    }
    let component = compile_uncached(bytes, engine)?;
    if let Err(e) = store(&path, &component) {
        tracing::warn!(path = %path.display(), error = %e, "could not store a compiled component");
    }
    Ok(component)
}

fn load(path: &Path, engine: &Engine) -> Option<Component> {
    let file = std::fs::read(path).ok()?;
    let payload = checked_payload(&file)?;
    // SAFETY: wasmtime requires that the bytes be a component serialised
    // by a compatible wasmtime. They are exactly what `store` wrote from
    // `Component::serialize` for an engine with this fingerprint: the
    // length and digest recorded at write time match, so the file is
    // neither torn nor altered. wasmtime re-checks its own compatibility
    // header and refuses foreign engines' output with an error.
    let component = unsafe { Component::deserialize(engine, payload) };
    match component {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "compiled component refused; recompiling");
            None
        }
    }
}

/// The payload of an entry, if its header, length and digest hold.
fn checked_payload(file: &[u8]) -> Option<&[u8]> {
    if file.get(..8)? != MAGIC {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(file.get(8..16)?.try_into().ok()?)).ok()?;
    let recorded = file.get(16..HEADER)?;
    let payload = file.get(HEADER..)?;
    (payload.len() == len && digest(payload)[..] == *recorded).then_some(payload)
}

fn store(path: &Path, component: &Component) -> Result<(), String> {
    let payload = component.serialize().map_err(|e| format!("{e:#}"))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&digest(&payload));
    out.extend_from_slice(&payload);
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, &out).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_untouched_entries_pass_the_check() {
        let payload = b"compiled bytes".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&digest(&payload));
        file.extend_from_slice(&payload);
        assert_eq!(checked_payload(&file), Some(&payload[..]));
        assert_eq!(checked_payload(&file[..file.len() - 1]), None, "torn");
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(checked_payload(&flipped), None, "altered");
        assert_eq!(checked_payload(b"\0asm not an entry at all, just a file"), None, "foreign");
        assert_eq!(checked_payload(&[]), None);
    }
}
