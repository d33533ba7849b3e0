//! `guest info` and `guest test`.

use anyhow::{bail, Context, Result};
use batpak::prelude::*;
use batpak::testing::{GuestHarness, TestProposal};
use serde::Deserialize;
use std::path::Path;
use std::process::ExitCode;

pub fn info(wasm: &Path) -> Result<ExitCode> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let info = batpak::plugin::inspect_component(&bytes)?;
    println!("file     {}", wasm.display());
    println!("size     {} bytes", info.size);
    println!("blake3   {}", info.digest);
    println!(
        "imports  {}",
        if info.imports.is_empty() { "(none)".to_string() } else { info.imports.join(", ") }
    );
    println!("exports  {}", info.exports.join(", "));
    match (info.gate, info.projection) {
        (Ok((name, version)), _) => println!("world    batpak:plugin/gate-plugin — gate {name:?} version {version}"),
        (_, Ok(p)) => println!(
            "world    batpak:plugin/projection-plugin — projection {:?} version {} schema {} kinds {:?} entity prefix {:?}",
            p.name, p.version, p.schema_version, p.kinds, p.entity_prefix
        ),
        (Err(as_gate), Err(as_projection)) => {
            println!("world    none: this component loads neither as a batpak gate nor as a projection");
            eprintln!("as a gate (batpak:plugin/gate-plugin): {as_gate}");
            eprintln!("as a projection (batpak:plugin/projection-plugin): {as_projection}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `guest test` keeps compiled components: `$BATPAK_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/batpak/components`, else `~/.cache/batpak/components`,
/// else the system temp directory.
fn cache_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("BATPAK_CACHE_DIR") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("batpak").join("components")
}

/// One line of a cases file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default = "default_entity")]
    entity: String,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default = "default_kind")]
    kind: u16,
    payload: serde_json::Value,
    #[serde(default)]
    entity_clock: Option<u32>,
    expect: Expect,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

fn default_entity() -> String {
    "test:1".into()
}
fn default_scope() -> String {
    "test".into()
}
fn default_kind() -> u16 {
    EventKind::DATA.as_raw()
}

pub fn test(wasm: &Path, cases: &Path) -> Result<ExitCode> {
    let text = std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let mut parsed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let case: Case = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: malformed case", cases.display(), i + 1))?;
        parsed.push((i + 1, case));
    }
    if parsed.is_empty() {
        bail!("{} holds no cases", cases.display());
    }
    let mut gate = GuestHarness::from_plugin(GatePlugin::from_file(wasm)?.with_compile_cache(cache_dir()))
        .with_context(|| format!("loading {}", wasm.display()))?;
    println!("gate {} {} — {} case(s)\n", gate.name(), gate.version(), parsed.len());
    println!("{:<6} {:<24} {:<8} {:<28} result", "line", "entity", "expect", "got");
    let mut failures = 0;
    for (line, case) in parsed {
        let coord = Coordinate::new(&case.entity, &case.scope)
            .with_context(|| format!("{}:{line}: bad coordinate", cases.display()))?;
        let proposal = TestProposal::json(&case.entity, case.payload.clone())
            .at(coord)
            .kind(EventKind::from_raw(case.kind))
            .clock(case.entity_clock);
        let verdict = gate.evaluate(&proposal);
        let (got, ok) = match (&verdict, case.expect) {
            (Ok(()), Expect::Allow) => ("allow".to_string(), true),
            (Ok(()), Expect::Deny) => ("allow".to_string(), false),
            (Err(d), Expect::Allow) => (format!("deny {}", d.code), false),
            (Err(d), Expect::Deny) => {
                (format!("deny {}", d.code), case.code.as_ref().is_none_or(|c| *c == d.code))
            }
        };
        let expect = match (case.expect, &case.code) {
            (Expect::Allow, _) => "allow".to_string(),
            (Expect::Deny, Some(c)) => format!("deny {c}"),
            (Expect::Deny, None) => "deny".to_string(),
        };
        if !ok {
            failures += 1;
        }
        println!(
            "{line:<6} {:<24} {expect:<8} {got:<28} {}",
            case.entity,
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    if failures > 0 {
        println!("\n{failures} mismatch(es)");
        return Ok(ExitCode::from(2));
    }
    println!("\nall cases pass");
    Ok(ExitCode::SUCCESS)
}
