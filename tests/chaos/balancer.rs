//! A TCP load balancer in front of the replicas, as in production: the forge's webhooks go to
//! one address and reach whichever replica is up. With none up, the connection is dropped and
//! the delivery fails, as it would behind a real balancer; the driver redelivers it later, as
//! an operator (or GitLab's retries) would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

pub struct Balancer {
    pub addr: SocketAddr,
    live: Arc<Mutex<Vec<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind balancer");
        let addr = listener.local_addr().expect("balancer address");
        let live: Arc<Mutex<Vec<u16>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let live = live.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let ports = live.lock().unwrap().clone();
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(forward(client, ports, first));
                }
            }
        });
        Self { addr, live, task }
    }

    /// The replicas that take connections now.
    pub fn set_live(&self, ports: Vec<u16>) {
        *self.live.lock().unwrap() = ports;
    }
}

async fn forward(mut client: TcpStream, ports: Vec<u16>, first: usize) {
    for i in 0..ports.len() {
        let port = ports[(first + i) % ports.len()];
        if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
}
