//! The service processes: started from this test binary, killed with SIGKILL, restarted on the
//! same database and port. Each run's log is kept in the run's directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breakglass::config::Config;

use super::service::{CLOCK_VAR, CONFIG_VAR};

pub struct Replica {
    pub index: usize,
    pub port: u16,
    /// The port, held for the replica's whole life (see [`reserve_port`]).
    _port_held: tokio::net::TcpSocket,
    dir: PathBuf,
    clock: PathBuf,
    child: Option<Child>,
    pub starts: u32,
}

impl Replica {
    /// A replica with its own config (its own port) in `dir/replica-<index>`.
    pub fn new(index: usize, dir: &Path, clock: &Path, config: &Config) -> Self {
        let port_held = reserve_port();
        let port = port_held.local_addr().expect("a bound port").port();
        let dir = dir.join(format!("replica-{index}"));
        std::fs::create_dir_all(&dir).expect("replica dir");
        let config = Config {
            listen: ([127, 0, 0, 1], port).into(),
            ..config.clone()
        };
        std::fs::write(
            dir.join("config.toml"),
            toml::to_string(&config).expect("config as TOML"),
        )
        .expect("write config");
        Self {
            index,
            port,
            _port_held: port_held,
            dir,
            clock: clock.to_owned(),
            child: None,
            starts: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits until it answers `/readyz`; an error when it exited
    /// instead (the service cannot start while the forge does not answer: it must learn
    /// who it is there first).
    pub async fn start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "replica {} is running", self.index);
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("run-{}.log", self.starts)))
            .expect("replica log");
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "chaos_service_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CONFIG_VAR, self.dir.join("config.toml"))
            .env(CLOCK_VAR, &self.clock)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the service");
        self.child = Some(child);
        let ready = self.wait_ready().await;
        if ready.is_err() {
            self.child = None;
        }
        ready
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(resp) = client.get(&url).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "replica {} exited at start ({status}); see {}",
                    self.index,
                    self.dir.display()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "replica {} not ready in 60 s",
                self.index
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`: the process dies wherever it stands.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on unix
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free port, kept bound but never listening: the replica's process binds it beside this
/// socket (SO_REUSEADDR on both, only one listening), and while the replica is down between a
/// kill and its restart, the kernel hands the port to no other test's listener.
fn reserve_port() -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("a free port");
    socket
}
