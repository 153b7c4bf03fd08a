//! A real `moto_server` (PyPI `moto[server]`) on a free loopback port, stopped on drop, and a
//! recording proxy in front of it.
//!
//! moto ignores what STS is told about the session (`SourceIdentity`, tags) and evaluates no
//! policy conditions, so the proxy keeps every request the bot sends (the form parameters of
//! AWS's query protocol and the signing key id) and every answer, for the tests to read; it
//! can also answer a call with an AWS error instead of passing it on.
//!
//! `scripts/test` installs moto into `.venv-moto/` and points `BREAKGLASS_MOTO_SERVER` at it.
//! Without Python the tests print `SKIPPED moto: …` and pass; with Python but no moto they
//! fail and say how to install it.

#![allow(dead_code)] // not every test uses every helper

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// A running `moto_server`; killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    /// Starts moto, or `None` (after saying so) when there is no Python to run it.
    pub async fn start() -> Option<Moto> {
        let server = server_path()?;
        for _ in 0..3 {
            // The port is free when asked for; another process could take it before moto
            // binds, so a start that never answers is tried again on a new port.
            let port = free_port();
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot run {}: {err}", server.display()));
            let moto = Moto {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            // Two tests may be given the same free port: the moto that loses the bind exits,
            // and the other one answers this one's probe. Only a server of our own is used.
            if moto.ready().await && listens_on(moto.child.id(), port) {
                return Some(moto);
            }
        }
        panic!("moto_server ({}) did not start", server.display());
    }

    async fn ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = format!("{}/moto-api/", self.url);
        while Instant::now() < deadline {
            if reqwest::get(&probe)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `moto_server` is: `BREAKGLASS_MOTO_SERVER`, else the repo's `.venv-moto/`.
fn server_path() -> Option<PathBuf> {
    let path = std::env::var_os("BREAKGLASS_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-moto/bin/moto_server")
        });
    if path.is_file() {
        return Some(path);
    }
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        eprintln!(
            "SKIPPED moto: python3 is not installed, so the AWS provider is not tested against moto"
        );
        return None;
    }
    panic!(
        "moto_server not found at {}; run scripts/test, or: python3 -m venv .venv-moto && \
         .venv-moto/bin/pip install 'moto[server]==5.*'",
        path.display()
    );
}

/// Whether process `pid` holds the listening socket of loopback `port`, by Linux's `/proc`
/// (its TCP table and the process's open files); where that cannot be read, `true`.
fn listens_on(pid: u32, port: u16) -> bool {
    let (Ok(table), Ok(fds)) = (
        std::fs::read_to_string("/proc/net/tcp"),
        std::fs::read_dir(format!("/proc/{pid}/fd")),
    ) else {
        return true;
    };
    let local = format!(":{port:04X}");
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            let ours = fields.get(1).is_some_and(|a| a.ends_with(&local));
            if !(listening && ours) {
                return None;
            }
            fields.get(9).map(|inode| format!("socket:[{inode}]"))
        })
        .collect();
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|link| sockets.iter().any(|s| link.to_string_lossy() == *s))
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One request that went through the proxy, and its answer.
#[derive(Clone, Debug)]
pub struct Call {
    /// The query protocol's `Action` (`AssumeRole`, `PutRolePolicy`, …).
    pub action: String,
    /// Every form parameter, decoded, in order.
    pub params: Vec<(String, String)>,
    /// The access key id the request was signed with.
    pub access_key_id: String,
    pub status: u16,
    pub response: String,
}

impl Call {
    /// The value of form parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An AWS error to answer instead of passing a call on.
#[derive(Clone, Debug)]
struct Failure {
    action: String,
    status: u16,
    code: String,
}

/// A call held back until the test lets it go on.
struct Held {
    action: String,
    /// Told when the call arrived (and is waiting).
    arrived: tokio::sync::oneshot::Sender<()>,
    /// Awaited before the call is passed on.
    release: tokio::sync::oneshot::Receiver<()>,
}

/// The test's side of a held call: when it arrived, and letting it go on.
pub struct Hold {
    arrived: Option<tokio::sync::oneshot::Receiver<()>>,
    release: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Hold {
    /// Waits (at most 20 s) until the held call arrived at the proxy.
    pub async fn arrived(&mut self) {
        let arrived = self.arrived.take().expect("awaited once");
        tokio::time::timeout(Duration::from_secs(20), arrived)
            .await
            .expect("the held call never came")
            .expect("the proxy dropped the held call");
    }

    /// Lets the held call go on to moto.
    pub fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release(); // never leave a call hanging past the test's own end
    }
}

#[derive(Default)]
struct Recorded {
    calls: Vec<Call>,
    failures: Vec<Failure>,
    holds: Vec<Held>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    recorded: Mutex<Recorded>,
    /// The clock the answers' `Date` header tells, and its skew in seconds (see
    /// [`Recorder::date_answers`]); the proxy's own real time when unset.
    dates: Mutex<Option<(breakglass::clock::ManualClock, i64)>>,
}

/// The recording proxy: point the SDK's `endpoint_url` at [`Recorder::url`].
pub struct Recorder {
    pub url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// A proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: &str) -> Recorder {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            client: reqwest::Client::new(),
            recorded: Mutex::default(),
            dates: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the proxy serves");
        });
        Recorder { url, state, task }
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state.recorded.lock().unwrap().calls.clone()
    }

    /// The actions called so far, in order.
    pub fn actions(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.action).collect()
    }

    /// Every answer from now on carries a `Date` of `clock` moved by `skew_secs` (whole
    /// seconds, as AWS sends it): AWS's clock as the test wants it, ahead or behind the bot's.
    pub fn date_answers(&self, clock: &breakglass::clock::ManualClock, skew_secs: i64) {
        *self.state.dates.lock().unwrap() = Some((clock.clone(), skew_secs));
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        self.state.recorded.lock().unwrap().calls.clear();
    }

    /// The next call of `action` is answered with AWS error `code` (HTTP `status`).
    pub fn fail_next(&self, action: &str, status: u16, code: &str) {
        self.state.recorded.lock().unwrap().failures.push(Failure {
            action: action.to_owned(),
            status,
            code: code.to_owned(),
        });
    }
}

impl Recorder {
    /// The next call of `action` waits at the proxy until the returned hold is released.
    pub fn hold_next(&self, action: &str) -> Hold {
        let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        self.state.recorded.lock().unwrap().holds.push(Held {
            action: action.to_owned(),
            arrived: arrived_tx,
            release: release_rx,
        });
        Hold {
            arrived: Some(arrived_rx),
            release: Some(release_tx),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let access_key_id = signing_key(&headers);
    let (failure, held) = {
        let mut recorded = state.recorded.lock().unwrap();
        let at = recorded.failures.iter().position(|f| f.action == action);
        let failure = at.map(|i| recorded.failures.remove(i));
        let at = recorded.holds.iter().position(|h| h.action == action);
        (failure, at.map(|i| recorded.holds.remove(i)))
    };
    if let Some(held) = held {
        let _ = held.arrived.send(());
        let _ = held.release.await;
    }
    let (status, content_type, response) = match failure {
        Some(failure) => (
            failure.status,
            "text/xml".to_owned(),
            error_xml(&failure.code),
        ),
        None => pass_on(&state, method, &uri, &headers, body).await,
    };
    state.recorded.lock().unwrap().calls.push(Call {
        action,
        params,
        access_key_id,
        status,
        response: response.clone(),
    });
    let mut answer = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", content_type)],
        response,
    )
        .into_response();
    if let Some((clock, skew)) = state.dates.lock().unwrap().as_ref() {
        use breakglass::clock::Clock as _;
        let at = clock.now() + chrono::TimeDelta::seconds(*skew);
        let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        answer
            .headers_mut()
            .insert("date", date.parse().expect("a header value"));
    }
    answer
}

async fn pass_on(
    state: &ProxyState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> (u16, String, String) {
    let target = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = state.client.request(method, target).body(body);
    for (name, value) in headers {
        // reqwest sets these for the upstream connection itself.
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.expect("moto answers");
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml")
        .to_owned();
    (
        status,
        content_type,
        answer.text().await.unwrap_or_default(),
    )
}

/// The access key id from a SigV4 `Authorization` header (`… Credential=AKID/date/…`).
fn signing_key(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// An error answer in the query protocol's shape, as IAM and STS send it.
fn error_xml(code: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>injected by the test proxy</Message></Error>\
         <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    )
}

/// An IAM client of moto's, as the tests' administrator (not the bot).
pub fn iam_client(moto: &Moto) -> aws_sdk_iam::Client {
    use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .credentials_provider(Credentials::new("admin", "admin", None, None, "test"))
            .build(),
    )
}

/// A role `name` that the account may assume.
pub async fn create_role(iam: &aws_sdk_iam::Client, name: &str) {
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("a role in moto");
}

/// The managed policy `ProdAdmin` (everything allowed); its ARN.
pub async fn create_admin_policy(iam: &aws_sdk_iam::Client) -> String {
    iam.create_policy()
        .policy_name("ProdAdmin")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .send()
        .await
        .expect("a policy in moto")
        .policy()
        .and_then(|p| p.arn())
        .expect("the policy's ARN")
        .to_owned()
}

/// The fake credentials of the default AWS chain, for this test process only: set once,
/// before any test of the binary loads an AWS config (each calls this first).
pub fn fake_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: runs once, before any test of this binary reads the environment for AWS;
        // the other tests wait on the `Once`.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}
