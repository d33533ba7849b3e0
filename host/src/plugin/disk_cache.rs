//! Compiled components kept on disk, so a store with a large guest (an
//! 18 MB Python component takes seconds to compile) opens without
//! compiling it again.
//!
//! An entry is two files named after `<blake3 of the component>-<engine
//! fingerprint>`; the fingerprint hashes wasmtime's compatibility hash (its
//! version and every setting that changes machine code, the stack limit
//! included):
//! - `<key>.bpcc` is wasmtime's serialised component, byte for byte, so
//!   wasmtime maps it instead of reading and copying it
//!   (`Component::deserialize_file`: the 40 MB artifact of a Python guest
//!   loads in a third of the time);
//! - `<key>.bpcc.sum` is `"BPCC0002" | u64 LE length | 32-byte digest` of
//!   that file.
//!
//! Before the artifact reaches wasmtime, its length and digest are checked
//! against the sum: a torn, truncated or corrupted artifact, a missing sum
//! (a crash between the two writes), or a file that is not an entry is a
//! miss, recompiled and overwritten, never loaded unchecked. Each file is
//! written to a temporary name and renamed over the old one, artifact
//! first, so a reader never sees a partial file and a file a process has
//! mapped is never changed under it.
//!
//! Two rules for whoever else touches the directory. It must be writable
//! only by its owner: the digest detects damage, it does not authenticate
//! who wrote the file. And entries may be deleted at any time, but never
//! rewritten in place (truncated, or copied over with `cp`): like a shared
//! library, a mapped artifact that shrinks under a running process makes
//! that process fault (SIGBUS) the next time it touches the missing pages.

use super::{compile_uncached, hex, PluginError};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"BPCC0002";
const SUM_LEN: usize = 8 + 8 + 32;

/// The artifact path for the component with digest `component` compiled by
/// `engine` in `dir` (its sum is beside it, see [`sum_path`]).
fn entry_path(dir: &Path, component: &[u8; 32], engine: &Engine) -> PathBuf {
    // SipHash with fixed keys: stable for one build of this crate, which is
    // all an engine fingerprint has to be (wasmtime's hash changes with it).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{}-{:016x}.bpcc", hex(component), h.finish()))
}

fn sum_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("bpcc.sum")
}

/// The component for `bytes` (whose digest is `component`) from `dir` if a
/// sound entry is there; else compiles it and stores an entry (a failure to
/// store is logged: the cache is an optimisation).
pub(crate) fn load_or_compile(
    dir: &Path,
    bytes: &[u8],
    component: &[u8; 32],
    engine: &Engine,
) -> Result<Component, PluginError> {
    let path = entry_path(dir, component, engine);
    if let Some(found) = load(&path, engine) {
        return Ok(found);
    }
    let compiled = compile_uncached(bytes, engine)?;
    if let Err(e) = store(&path, &compiled) {
        tracing::warn!(path = %path.display(), error = %e, "could not store a compiled component");
    }
    Ok(compiled)
}

fn load(path: &Path, engine: &Engine) -> Option<Component> {
    if !sound(path) {
        return None;
    }
    // SAFETY: wasmtime requires that the file hold a component serialised
    // by a compatible wasmtime and that it not change while mapped. It is
    // exactly what `store` wrote from `Component::serialize` for an engine
    // with this fingerprint: its length and digest match the sum written
    // after it. This crate replaces entries only by rename, never in place,
    // so the mapped file does not change (the module docs state the rule
    // for other programs). wasmtime re-checks its own compatibility header
    // and refuses foreign engines' output with an error.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "compiled component refused; recompiling");
            None
        }
    }
}

/// Whether the artifact at `path` has a sum, and matches its length and digest.
fn sound(path: &Path) -> bool {
    let Some((len, recorded)) = std::fs::read(sum_path(path)).ok().as_deref().and_then(parse_sum) else {
        return false;
    };
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    file.metadata().is_ok_and(|m| m.len() == len) && file_digest(&mut file).is_ok_and(|d| d == recorded)
}

/// The length and digest a sum file records, if it is one.
fn parse_sum(sum: &[u8]) -> Option<(u64, [u8; 32])> {
    if sum.len() != SUM_LEN || sum.get(..8)? != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(sum.get(8..16)?.try_into().ok()?);
    Some((len, sum.get(16..)?.try_into().ok()?))
}

fn encode_sum(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&super::digest(payload));
    out
}

/// The digest of a whole file, read in pieces (no copy of it is kept).
fn file_digest(file: &mut std::fs::File) -> std::io::Result<[u8; 32]> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = super::Digester::default();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

fn store(path: &Path, component: &Component) -> Result<(), String> {
    let payload = component.serialize().map_err(|e| format!("{e:#}"))?;
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    write_renamed(path, &payload)?;
    write_renamed(&sum_path(path), &encode_sum(&payload))
}

/// Writes `bytes` to a temporary name beside `path`, then renames it over `path`.
fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an artifact and a sum and asks whether the pair is sound.
    fn check(artifact: &[u8], sum: Option<&[u8]>) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bpcc");
        std::fs::write(&path, artifact).unwrap();
        if let Some(sum) = sum {
            std::fs::write(sum_path(&path), sum).unwrap();
        }
        sound(&path)
    }

    #[test]
    fn only_whole_untouched_entries_pass_the_check() {
        let payload = vec![7u8; 600 * 1024]; // more than one read buffer
        let sum = encode_sum(&payload);
        assert!(check(&payload, Some(&sum)));
        assert!(!check(&payload, None), "no sum");
        assert!(!check(&payload[..payload.len() - 1], Some(&sum)), "torn");
        let mut flipped = payload.clone();
        flipped[300 * 1024] ^= 1;
        assert!(!check(&flipped, Some(&sum)), "altered");
        assert!(!check(&payload, Some(&sum[..SUM_LEN - 1])), "torn sum");
        let mut old = sum.clone();
        old[..8].copy_from_slice(b"BPCC0001");
        assert!(!check(&payload, Some(&old)), "another format");
        assert!(!check(b"\0asm not an entry", Some(b"not a sum")), "foreign");
    }
}
