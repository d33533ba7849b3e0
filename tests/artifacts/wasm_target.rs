//! Makes sure the compiler that builds the guests has the
//! `wasm32-unknown-unknown` standard library, installing it through rustup
//! when it is missing. Shared by `build.rs` and this crate's tests (by
//! `#[path]`), so the decision logic is tested without a second toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every guest is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// What [`ensure_wasm_target`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetStatus {
    /// The target's standard library was already in the sysroot.
    Present,
    /// It was missing; rustup installed it for the named toolchain.
    Installed {
        /// The toolchain rustup was asked to add the target to.
        toolchain: String,
    },
}

/// Where `rustc`'s standard library for [`WASM_TARGET`] would live.
pub fn target_libdir(rustc: &Path) -> Result<PathBuf, String> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("could not run `{} --print sysroot`: {e}", rustc.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed: {}",
            rustc.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET).join("lib"))
}

/// True when the sysroot holds a compiled `core` for the wasm target.
fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir)
        .map(|dir| {
            dir.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false)
}

/// The rustup toolchain that owns `libdir`: `RUSTUP_TOOLCHAIN` when rustup
/// set it, else the directory name under `…/toolchains/`.
fn toolchain_of(libdir: &Path, rustup_toolchain: Option<&str>) -> Option<String> {
    if let Some(t) = rustup_toolchain.filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    // libdir = <toolchains>/<name>/lib/rustlib/<target>/lib
    let sysroot = libdir.ancestors().nth(4)?;
    let parent = sysroot.parent()?;
    if parent.file_name()? != "toolchains" {
        return None;
    }
    Some(sysroot.file_name()?.to_string_lossy().into_owned())
}

/// Checks for the wasm target under `rustc`; if it is missing, runs
/// `<rustup> target add` for the toolchain that `rustc` belongs to.
/// Every failure says what to do by hand.
pub fn ensure_wasm_target(
    rustc: &Path,
    rustup: &Path,
    rustup_toolchain: Option<&str>,
) -> Result<TargetStatus, String> {
    let libdir = target_libdir(rustc)?;
    if has_std(&libdir) {
        return Ok(TargetStatus::Present);
    }
    let manual = format!(
        "the guests are built for `{WASM_TARGET}`, whose standard library is not installed for `{}` \
         (looked in {}). Install it with `rustup target add {WASM_TARGET}`, or your distribution's \
         rust-std package for that target, then build again",
        rustc.display(),
        libdir.display()
    );
    let Some(toolchain) = toolchain_of(&libdir, rustup_toolchain) else {
        return Err(format!("{manual}; this compiler is not managed by rustup"));
    };
    let out = Command::new(rustup)
        .args(["target", "add", WASM_TARGET, "--toolchain", &toolchain])
        .output()
        .map_err(|e| format!("{manual}; running `{}` failed: {e}", rustup.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{manual}; `rustup target add` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !has_std(&libdir) {
        return Err(format!("{manual}; rustup reported success but {} is still empty", libdir.display()));
    }
    Ok(TargetStatus::Installed { toolchain })
}
