//! Builds every guest in `guest/plugins/examples` for wasm32-unknown-unknown
//! and turns each core module into a component with `wit-component` (what
//! `wasm-tools component new` does). Also makes three deliberately wrong
//! components for negative tests. Writes their paths into `artifacts.rs`.

// A build script reports failure by panicking; its messages say what failed.
#![allow(clippy::expect_used, clippy::panic)]

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve};

#[path = "wasm_target.rs"]
mod wasm_target;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().expect("workspace root exists");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.join("guest").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    require_wasm_target();
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

/// Installs the wasm target through rustup when the compiler lacks it, and
/// says so; stops the build with instructions when that is not possible.
fn require_wasm_target() {
    let rustc = PathBuf::from(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    match wasm_target::ensure_wasm_target(&rustc, Path::new("rustup"), toolchain.as_deref()) {
        Ok(wasm_target::TargetStatus::Present) => {}
        Ok(wasm_target::TargetStatus::Installed { toolchain }) => println!(
            "cargo:warning=installed the `{}` target for toolchain `{toolchain}` with rustup (the example guests are built for it)",
            wasm_target::WASM_TARGET
        ),
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(1);
        }
    }
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
    out.push(("stack_depth", gate_from_wat(&resolve, gate, "stack_depth", STACK_DEPTH_WAT)));
    out.push((
        "loop_at_instantiation",
        gate_from_wat(&resolve, gate, "loop_at_instantiation", LOOP_AT_START_WAT),
    ));
    out.push(("multi_memory", gate_from_wat(&resolve, gate, "multi_memory", MULTI_MEMORY_WAT)));
    out
}

/// A gate whose core module's start function never returns: instantiating
/// it runs until the instantiation budget (or its fuel) stops it.
const LOOP_AT_START_WAT: &str = r#"(module
    (memory (export "memory") 1)
    {REALLOC}
    (func $spin (loop $l (br $l)))
    (start $spin)
    (func (export "batpak:plugin/gate@0.1.0#describe") (result i32) unreachable)
    (func (export "batpak:plugin/gate@0.1.0#evaluate")
        (param i32 i32 i32 i32 i32 i32 i32 i64 i64 i32 i64 i64 i32 i32) (result i32) unreachable))"#;

/// A gate with four linear memories that grows three of them by 100 pages
/// (6.25 MiB) each on every call and traps if a grow is refused: 18.75 MiB
/// in all, over a 16 MiB budget only if the budget covers every memory.
const MULTI_MEMORY_WAT: &str = r#"(module
    (memory (export "memory") 1)
    (memory $m1 1)
    (memory $m2 1)
    (memory $m3 1)
    {REALLOC}
    (func (export "batpak:plugin/gate@0.1.0#describe") (result i32)
        (i32.store (i32.const 64) (i32.const 128))
        (i32.store (i32.const 68) (i32.const 12))
        (i32.store (i32.const 72) (i32.const 144))
        (i32.store (i32.const 76) (i32.const 1))
        (i32.const 64))
    (data (i32.const 128) "multi-memory")
    (data (i32.const 144) "1")
    (func (export "batpak:plugin/gate@0.1.0#evaluate")
        (param i32 i32 i32 i32 i32 i32 i32 i64 i64 i32 i64 i64 i32 i32) (result i32)
        (if (i32.lt_s (memory.grow $m1 (i32.const 100)) (i32.const 0)) (then unreachable))
        (if (i32.lt_s (memory.grow $m2 (i32.const 100)) (i32.const 0)) (then unreachable))
        (if (i32.lt_s (memory.grow $m3 (i32.const 100)) (i32.const 0)) (then unreachable))
        (i32.const 256)))"#;

/// A gate that recurses 2000 levels per payload byte and then allows:
/// each level keeps sixteen i64 values live across its call, so the depth
/// it reaches depends on the engine's wasm stack limit (a Rust guest keeps
/// its frames in linear memory and could not show that).
const STACK_DEPTH_WAT: &str = r#"(module
    (memory (export "memory") 1)
    {REALLOC}
    (func $deep (param $n i32) (result i64)
        (local $a i64) (local $b i64) (local $c i64) (local $d i64)
        (local $e i64) (local $f i64) (local $g i64) (local $h i64)
        (if (i32.eqz (local.get $n)) (then (return (i64.const 1))))
        (local.set $a (i64.extend_i32_u (local.get $n)))
        (local.set $b (i64.mul (local.get $a) (i64.const 3)))
        (local.set $c (i64.mul (local.get $b) (i64.const 5)))
        (local.set $d (i64.mul (local.get $c) (i64.const 7)))
        (local.set $e (i64.mul (local.get $d) (i64.const 11)))
        (local.set $f (i64.mul (local.get $e) (i64.const 13)))
        (local.set $g (i64.mul (local.get $f) (i64.const 17)))
        (local.set $h (i64.mul (local.get $g) (i64.const 19)))
        (i64.add
            (call $deep (i32.sub (local.get $n) (i32.const 1)))
            (i64.add (i64.add (i64.add (local.get $a) (local.get $b)) (i64.add (local.get $c) (local.get $d)))
                     (i64.add (i64.add (local.get $e) (local.get $f)) (i64.add (local.get $g) (local.get $h))))))
    (func (export "batpak:plugin/gate@0.1.0#describe") (result i32)
        ;; description { name: "stack-depth", version: "1" } at 64: two (ptr, len) pairs.
        (i32.store (i32.const 64) (i32.const 128))
        (i32.store (i32.const 68) (i32.const 11))
        (i32.store (i32.const 72) (i32.const 144))
        (i32.store (i32.const 76) (i32.const 1))
        (i32.const 64))
    (data (i32.const 128) "stack-depth")
    (data (i32.const 144) "1")
    (func (export "batpak:plugin/gate@0.1.0#evaluate")
        (param i32 i32 i32 i32 i32 i32 i32 i64 i64 i32 i64 i64 i32 i32) (result i32)
        (drop (call $deep (i32.mul (local.get 6) (i32.const 2000))))
        ;; result<_, denial> at 256, zeroed: ok.
        (i32.const 256)))"#;

/// A bump allocator for the canonical ABI's `cabi_realloc` (memory 0),
/// shared by the gates written in WebAssembly text.
const REALLOC_WAT: &str = r#"(global $next (mut i32) (i32.const 4096))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
        (local $at i32)
        (local.set $at (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
        (global.set $next (i32.add (local.get $at) (local.get 3)))
        (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
            (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (local.get 3) (i32.const 16)) (i32.const 1)))
                                (i32.const 0))
                      (then unreachable))))
        (local.get $at))"#;

/// A gate-world component from a core module written in WebAssembly text
/// (`{REALLOC}` in it stands for [`REALLOC_WAT`]).
fn gate_from_wat(resolve: &Resolve, world: wit_parser::WorldId, name: &str, wat: &str) -> Vec<u8> {
    let wat = wat.replace("{REALLOC}", REALLOC_WAT);
    let mut module = wat::parse_str(&wat).unwrap_or_else(|e| panic!("parse {name}: {e}"));
    wit_component::embed_component_metadata(&mut module, resolve, world, StringEncoding::UTF8)
        .expect("embed metadata");
    ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("encode {name}: {e:?}"))
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
