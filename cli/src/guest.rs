//! `guest info` and `guest test`.

use anyhow::{bail, Context, Result};
use batpak::plugin::PluginError;
use batpak::prelude::*;
use batpak::testing::{GuestHarness, ProjectionHarness, TestProposal};
use serde::Deserialize;
use std::path::Path;
use std::process::ExitCode;

pub fn info(wasm: &Path) -> Result<ExitCode> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    describe(&bytes, wasm)
}

/// Prints what `bytes` (read from, or bound for, `wasm`) is; exit status 1
/// if it is neither a gate nor a projection.
fn describe(bytes: &[u8], wasm: &Path) -> Result<ExitCode> {
    let info = batpak::plugin::inspect_component(bytes)?;
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

/// Encodes a core module with embedded component-type metadata as a
/// component, describes it as `guest info` would, and writes it only if it
/// is a batpak gate or projection (a module importing anything the contract
/// does not grant is refused, and nothing is written).
pub fn new(core: &Path, world: Option<&str>, out: &Path) -> Result<ExitCode> {
    let mut bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {}
        Some([0, b'a', b's', b'm', ..]) => bail!("{} is already a component", core.display()),
        _ => bail!("{} is not a WebAssembly core module (no \\0asm version 1 header)", core.display()),
    }
    if let Some(world) = world {
        embed_world(&mut bytes, world)?;
    }
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| {
            // wit-component's messages can span lines; keep the error on one.
            let why = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
            anyhow::anyhow!("{}: not a core module with component metadata: {why}", core.display())
        })?;
    let code = describe(&component, out)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let staged = out.with_extension("wasm.partial");
    std::fs::write(&staged, &component).with_context(|| format!("writing {}", staged.display()))?;
    std::fs::rename(&staged, out).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote    {}", out.display());
    Ok(code)
}

/// The WIT contract this CLI was built with.
const BATPAK_WIT: &str = include_str!("../../wit/batpak.wit");

/// Adds the component type of `world` (of [`BATPAK_WIT`]) to a core module.
fn embed_world(module: &mut Vec<u8>, world: &str) -> Result<()> {
    if !matches!(world, "gate-plugin" | "projection-plugin") {
        bail!("--world {world:?}: batpak's worlds are gate-plugin and projection-plugin");
    }
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("batpak.wit", BATPAK_WIT).context("parsing the bundled WIT")?;
    let id = resolve.select_world(&[package], Some(world)).context("selecting the world")?;
    wit_component::embed_component_metadata(module, &resolve, id, wit_component::StringEncoding::UTF8)
        .map_err(|e| anyhow::anyhow!("embedding the {world} type: {e:#}"))
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

/// Reads the non-blank, non-comment lines of a cases file, each parsed as `T`.
fn read_cases<T: serde::de::DeserializeOwned>(cases: &Path) -> Result<Vec<(usize, T)>> {
    let text = std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let mut parsed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let case: T = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: malformed case", cases.display(), i + 1))?;
        parsed.push((i + 1, case));
    }
    if parsed.is_empty() {
        bail!("{} holds no cases", cases.display());
    }
    Ok(parsed)
}

/// Runs the cases against a gate, or against a projection if the
/// component is one (see `batpak guest test --help`).
pub fn test(wasm: &Path, cases: &Path) -> Result<ExitCode> {
    let gate = GuestHarness::from_plugin(GatePlugin::from_file(wasm)?.with_compile_cache(cache_dir()));
    match gate {
        Ok(gate) => test_gate(gate, cases),
        Err(PluginError::WrongWorld(as_gate)) => {
            let load = || {
                ProjectionHarness::from_plugin(
                    ProjectionPlugin::from_file(wasm)?.with_compile_cache(cache_dir()),
                )
            };
            match load() {
                Ok(one) => test_projection(
                    one,
                    load().with_context(|| format!("loading {}", wasm.display()))?,
                    cases,
                ),
                Err(PluginError::WrongWorld(as_projection)) => bail!(
                    "{} is neither a batpak gate ({as_gate}) nor a projection ({as_projection})",
                    wasm.display()
                ),
                Err(e) => Err(e).with_context(|| format!("loading {}", wasm.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("loading {}", wasm.display())),
    }
}

fn test_gate(mut gate: GuestHarness, cases: &Path) -> Result<ExitCode> {
    let parsed: Vec<(usize, Case)> = read_cases(cases)?;
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
    finish(failures)
}

/// One line of a projection's cases file: an event to fold, or a read and
/// the state it must answer (`null`: no data).
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum ProjectionCase {
    Read {
        read: String,
        state: Option<String>,
    },
    Event {
        #[serde(default = "default_entity")]
        entity: String,
        #[serde(default = "default_scope")]
        scope: String,
        #[serde(default = "default_kind")]
        kind: u16,
        payload: serde_json::Value,
    },
}

/// Folds the events of `cases` into two instances of one projection: `one`
/// gets an `apply` per event, `packed` gets the events between two reads in
/// one `apply-packed` call and is rebuilt from its own snapshot before each
/// read. At each read both must answer the expected state, so the case
/// file also checks that packed folding and snapshots agree with `apply`.
fn test_projection(
    mut one: ProjectionHarness,
    mut packed: ProjectionHarness,
    cases: &Path,
) -> Result<ExitCode> {
    let parsed: Vec<(usize, ProjectionCase)> = read_cases(cases)?;
    let info = one.info().clone();
    println!(
        "projection {} {} (schema {}) — {} line(s)\n",
        info.name,
        info.version,
        info.schema_version,
        parsed.len()
    );
    println!(
        "{:<6} {:<24} {:<16} {:<16} {:<16} result",
        "line", "read", "expect", "apply", "packed+snapshot"
    );
    let mut failures = 0;
    let mut pending = Vec::new();
    let show = |r: &Result<Option<Vec<u8>>, String>| match r {
        Ok(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Ok(None) => "null".into(),
        Err(e) => format!("error: {e}"),
    };
    for (line, case) in parsed {
        match case {
            ProjectionCase::Event { entity, scope, kind, payload } => {
                let coord = Coordinate::new(&entity, &scope)
                    .with_context(|| format!("{}:{line}: bad coordinate", cases.display()))?;
                let kind = EventKind::from_raw(kind);
                one.apply(&coord, kind, &payload)
                    .map_err(|e| anyhow::anyhow!("{}:{line}: apply trapped: {e}", cases.display()))?;
                pending.push((coord, kind, payload));
            }
            ProjectionCase::Read { read, state } => {
                packed
                    .apply_packed(&pending)
                    .map_err(|e| anyhow::anyhow!("{}:{line}: apply-packed trapped: {e}", cases.display()))?;
                pending.clear();
                let snapshot = packed
                    .snapshot()
                    .map_err(|e| anyhow::anyhow!("{}:{line}: snapshot trapped: {e}", cases.display()))?;
                packed.restore(snapshot).map_err(|e| {
                    anyhow::anyhow!("{}:{line}: restoring the snapshot trapped: {e}", cases.display())
                })?;
                let want = state.map(String::into_bytes);
                let (a, b) = (one.read(&read), packed.read(&read));
                let ok = a.as_ref().ok() == Some(&want) && b.as_ref().ok() == Some(&want);
                if !ok {
                    failures += 1;
                }
                let expect = show(&Ok(want));
                println!(
                    "{line:<6} {read:<24} {expect:<16} {:<16} {:<16} {}",
                    show(&a),
                    show(&b),
                    if ok { "ok" } else { "MISMATCH" }
                );
            }
        }
    }
    finish(failures)
}

fn finish(failures: usize) -> Result<ExitCode> {
    if failures > 0 {
        println!("\n{failures} mismatch(es)");
        return Ok(ExitCode::from(2));
    }
    println!("\nall cases pass");
    Ok(ExitCode::SUCCESS)
}
