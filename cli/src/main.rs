//! `batpak`: look at data directories and test guest components.
//!
//! Errors print as one line with their cause and exit with status 1;
//! a failed verification or guest test exits with status 2.

mod guest;
mod store_cmds;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "batpak", version, about = "Inspect batpak stores and test WASM guests")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Segments, counts, entities and gate-set history of a data directory.
    Inspect { dir: PathBuf },
    /// Print events (optionally filtered), and with --follow keep printing new ones.
    Tail {
        dir: PathBuf,
        /// Entity-name prefix.
        #[arg(long)]
        entity: Option<String>,
        /// Exact kind, e.g. 0x1001 or 4097.
        #[arg(long)]
        kind: Option<String>,
        /// Keep watching for new events.
        #[arg(long)]
        follow: bool,
        /// Stop after printing this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Check every frame's CRC and every entity's hash chain.
    Verify { dir: PathBuf },
    /// Rebuild a WASM projection over the whole log and print its state.
    Replay {
        dir: PathBuf,
        /// The projection component.
        #[arg(long)]
        projection: PathBuf,
        /// Print only the state for this key (otherwise the whole state).
        #[arg(long)]
        key: Option<String>,
    },
    /// Guest components.
    Guest {
        #[command(subcommand)]
        command: GuestCmd,
    },
}

#[derive(Subcommand)]
enum GuestCmd {
    /// World, imports, exports, size and hash of a component.
    Info { wasm: PathBuf },
    /// Run a gate over the proposals of a JSON-lines file and compare
    /// verdicts; or fold the events of such a file into a projection and
    /// compare its reads (each line an event, or `{"read": key, "state": text or null}`).
    Test { wasm: PathBuf, cases: PathBuf },
    /// Make a component from a core module that carries its component-type
    /// metadata (what `wit-bindgen c` links in), as `wasm-tools component
    /// new` does; then check that it is a batpak gate or projection.
    New {
        /// The core module (e.g. clang's output).
        core: PathBuf,
        /// Embed the type of this world of batpak's WIT first
        /// (`gate-plugin` or `projection-plugin`), for a module built
        /// without it (e.g. `wit-bindgen c --no-object-file`).
        #[arg(long)]
        world: Option<String>,
        /// Where to write the component.
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Inspect { dir } => store_cmds::inspect(&dir),
        Cmd::Tail { dir, entity, kind, follow, count } => store_cmds::tail(&dir, entity, kind, follow, count),
        Cmd::Verify { dir } => store_cmds::verify(&dir),
        Cmd::Replay { dir, projection, key } => store_cmds::replay(&dir, &projection, key.as_deref()),
        Cmd::Guest { command: GuestCmd::Info { wasm } } => guest::info(&wasm),
        Cmd::Guest { command: GuestCmd::Test { wasm, cases } } => guest::test(&wasm, &cases),
        Cmd::Guest { command: GuestCmd::New { core, world, out } } => {
            guest::new(&core, world.as_deref(), &out)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose
/// text its parent already shows (errors that print their source) is skipped.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
