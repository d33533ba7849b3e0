//! Builds every guest in `guest/plugins/examples` for wasm32-unknown-unknown
//! and turns each core module into a component with `wit-component` (what
//! `wasm-tools component new` does). Also makes three deliberately wrong
//! components for negative tests. Writes their paths into `artifacts.rs`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().expect("workspace root exists");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.join("guest").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let names = build_guests(&root);
    let mut consts = String::new();
    for name in &names {
        let core =
            root.join(format!("target/guest-wasm/wasm32-unknown-unknown/release/examples/{name}.wasm"));
        let bytes = fs::read(&core).unwrap_or_else(|e| panic!("read {}: {e}", core.display()));
        let component = ComponentEncoder::default()
            .module(&bytes)
            .and_then(|e| e.validate(true).encode())
            .unwrap_or_else(|e| panic!("componentize {name}: {e:?}"));
        consts.push_str(&write_artifact(&out, name, &component));
    }
    for (name, bytes) in negative_components(&root) {
        consts.push_str(&write_artifact(&out, name, &bytes));
    }
    let core = root.join("target/guest-wasm/wasm32-unknown-unknown/release/examples/allow_all.wasm");
    writeln!(
        consts,
        "/// A core module (not a component).\npub const CORE_MODULE: &str = {:?};",
        core.display().to_string()
    )
    .expect("write to string");
    let mut all = String::from(
        "/// Every example gate component, by name.\npub const EXAMPLE_GATES: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        writeln!(all, "    ({name:?}, {}),", name.to_uppercase()).expect("write to string");
    }
    all.push_str("];\n");
    consts.push_str(&all);
    fs::write(out.join("artifacts.rs"), consts).expect("write artifacts.rs");
}

fn write_artifact(out: &Path, name: &str, bytes: &[u8]) -> String {
    let path = out.join(format!("{name}.component.wasm"));
    fs::write(&path, bytes).expect("write component");
    format!(
        "/// Component `{name}`.\npub const {}: &str = {:?};\n",
        name.to_uppercase(),
        path.display().to_string()
    )
}

/// Runs `cargo build` on the guest workspace; returns the example names.
fn build_guests(root: &Path) -> Vec<String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root.join("guest"))
        .args(["build", "--release", "--examples", "--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(root.join("target/guest-wasm"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("run cargo for the guests");
    assert!(
        status.success(),
        "building the guests failed; is the target installed? `rustup target add wasm32-unknown-unknown`"
    );
    let mut names: Vec<String> = fs::read_dir(root.join("guest/plugins/examples"))
        .expect("list guest examples")
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// Components that must be refused or fail at install.
fn negative_components(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut resolve = Resolve::default();
    let (gate_pkg, _) = resolve.push_dir(root.join("wit")).expect("parse wit/");
    let other = resolve
        .push_str(
            "other.wit",
            "package test:other;\n\
             world other { export run: func() -> u32; }\n\
             world sneaky { import read-secret: func() -> string; include batpak:plugin/gate-plugin@0.1.0; }\n",
        )
        .expect("parse negative worlds");
    let gate = resolve.select_world(&[gate_pkg], Some("gate-plugin")).expect("gate world");
    let wrong = resolve.select_world(&[other], Some("other")).expect("other world");
    let sneaky = resolve.select_world(&[other], Some("sneaky")).expect("sneaky world");
    let mut out = Vec::new();
    for (name, world) in [("wrong_world", wrong), ("sneaky_import", sneaky), ("trap_in_describe", gate)] {
        let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .expect("embed metadata");
        let component = ComponentEncoder::default()
            .module(&module)
            .and_then(|e| e.validate(true).encode())
            .unwrap_or_else(|e| panic!("encode {name}: {e:?}"));
        out.push((name, component));
    }
    out.push(("trap_at_instantiation", trap_at_instantiation(&resolve, gate)));
    out
}

/// A gate-world component whose core module traps while it is being
/// instantiated: its data segment lies beyond its one page of memory.
fn trap_at_instantiation(resolve: &Resolve, world: wit_parser::WorldId) -> Vec<u8> {
    let wat = r#"(module
        (memory (export "memory") 1)
        (data (i32.const 131072) "past the end")
        (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)
        (func (export "batpak:plugin/gate@0.1.0#describe") (result i32) unreachable)
        (func (export "batpak:plugin/gate@0.1.0#evaluate")
            (param i32 i32 i32 i32 i32 i32 i32 i64 i64 i32 i64 i64 i32 i32) (result i32) unreachable))"#;
    let mut module = wat::parse_str(wat).expect("parse the trapping module");
    wit_component::embed_component_metadata(&mut module, resolve, world, StringEncoding::UTF8)
        .expect("embed metadata");
    ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("encode trap_at_instantiation: {e:?}"))
}
