//! The real binary under `kill`: SIGTERM shuts the service down gracefully, as Ctrl-C does.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakglass_test_forge::TestForge;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_service_down_gracefully() {
    let forge = TestForge::start().await;
    forge.create_repo("acme/access-requests", &[("README.md", "# requests\n")]);
    let bot = forge.bot_user("breakglass[bot]");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let secret = dir.path().join("secret");
    std::fs::write(&token, forge.token_for(&bot)).unwrap();
    std::fs::write(&secret, "s3cret").unwrap();
    // The port stays bound (never listening) until the test ends, so that no test beside
    // this one is handed it before the binary binds it (SO_REUSEADDR on both).
    let port_held = tokio::net::TcpSocket::new_v4().unwrap();
    port_held.set_reuseaddr(true).unwrap();
    port_held.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = port_held.local_addr().unwrap().port();
    let config = dir.path().join("breakglass.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{}\"\n[github]\napi_url = \"{}\"\nrepository = \"acme/access-requests\"\ntoken_file = \"{}\"\nwebhook_secret_file = \"{}\"\n",
            dir.path().join("bg.db").display(),
            forge.api_url(),
            token.display(),
            secret.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&health)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        let exited = child.try_wait().unwrap();
        if exited.is_some() || Instant::now() >= deadline {
            // Say why: its log (a port taken meanwhile, a start-up error), not only that it
            // is not up.
            let _ = child.kill();
            let _ = child.wait();
            let mut log = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut log);
            panic!("the service did not come up ({exited:?}):\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A delivery with a wrong signature is refused, and the log says why (never the secret).
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/github"))
        .header("X-GitHub-Event", "ping")
        .header("X-GitHub-Delivery", "d-1")
        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(
        stderr.contains("shutting down: finishing work in flight"),
        "{stderr}"
    );
    let refusal = stderr
        .lines()
        .find(|l| l.contains("webhook delivery refused"))
        .unwrap_or_else(|| panic!("no line about the refused delivery:\n{stderr}"));
    assert!(refusal.contains("status=401"), "{refusal}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    // Not a terminal: plain text, no colour codes.
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
