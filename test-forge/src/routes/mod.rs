//! The REST API: the router, the middleware every request passes (call counting, failure
//! injection, authentication, ETags, rate-limit headers) and the extractors that turn bad input
//! into GitHub-shaped 4xx answers instead of axum's plain-text rejections.

mod accounts;
mod gitdata;
mod issues;
pub(crate) mod pulls;
mod repos;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, error_body};
use crate::failures::FailureKind;
use crate::server::Shared;

/// The reaction contents GitHub accepts.
pub(crate) const REACTIONS: &[&str] = &[
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// The primary rate limit the forge advertises.
const RATE_LIMIT: u64 = 5000;

pub(crate) type App = Arc<Shared>;

/// Who made a request.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    /// A user or bot with a personal token.
    User(String),
    /// An app's bot with an installation token.
    Installation(String),
    /// A GitHub App authenticated with a JWT.
    App(u64),
}

impl Caller {
    /// The acting login; app JWTs may only call the app endpoints.
    pub fn login(&self) -> Result<&str, ApiError> {
        match self {
            Caller::User(l) | Caller::Installation(l) => Ok(l),
            Caller::App(_) => Err(ApiError::forbidden(
                "Resource not accessible by integration: use an installation token",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// A JSON body; malformed JSON is GitHub's 400 "Problems parsing JSON", an empty body is `{}`.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("Problems parsing JSON"))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map(ApiJson).map_err(|e| {
            if e.is_data() {
                ApiError::unprocessable(format!("Invalid request.\n\n{e}"))
            } else {
                ApiError::bad_request("Problems parsing JSON")
            }
        })
    }
}

/// Path parameters; ones that do not parse (a non-numeric number) are a 404 like on GitHub.
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::not_found())
    }
}

/// The query string as a map (every handler reads only what it knows).
pub(crate) struct ApiQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|_| ApiError::unprocessable("Validation Failed: bad query string"))
    }
}

impl ApiQuery {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Answers a list with GitHub pagination (`per_page` ≤ 100, default 30; `page` from 1) and a
/// `Link` header.
pub(crate) fn paginate(items: Vec<Value>, q: &ApiQuery, uri: &Uri, base_url: &str) -> Response {
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let link_for = |p: usize| {
        let mut params: Vec<(String, String)> =
            q.0.iter()
                .filter(|(k, _)| k.as_str() != "page")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        params.sort();
        params.push(("page".into(), p.to_string()));
        let qs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", crate::json::url_seg(k), crate::json::url_seg(v)))
            .collect();
        format!("{base_url}{}?{}", uri.path(), qs.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link_for(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_for(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_for(page - 1)));
        links.push(format!("<{}>; rel=\"first\"", link_for(1)));
    }
    let mut resp = axum::Json(Value::Array(slice)).into_response();
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

/// Builds the whole router.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .merge(repos::routes())
        .merge(gitdata::routes())
        .merge(pulls::routes())
        .merge(issues::routes())
        .merge(accounts::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        // GitLab's `/api/v4` routes carry their own middleware (auth, errors, headers).
        .merge(crate::gitlab::router(app.clone()))
        .with_state(app)
}

/// The route template for counting, or the raw path when nothing matched.
pub(crate) fn template(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned())
}

/// What an `Authorization` header stands for.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
        ));
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .or_else(|| value.strip_prefix("token "))
        .ok_or_else(ApiError::unauthorized)?
        .trim();
    let st = app.lock();
    if let Some(rec) = st.token(token) {
        let login = rec.login.clone();
        return Ok(if rec.installation {
            Caller::Installation(login)
        } else {
            Caller::User(login)
        });
    }
    if token.split('.').count() == 3 {
        return jwt_app(token, st.app.as_ref().map(|a| a.app_id));
    }
    Err(ApiError::unauthorized())
}

/// Checks the shape of an app JWT (three base64url parts, numeric `iss` equal to the app id,
/// not expired). The RSA signature is not verified: the forge has no key to verify it with.
fn jwt_app(token: &str, app_id: Option<u64>) -> Result<Caller, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )
    };
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if sig.is_empty() {
        return Err(bad());
    }
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .map_err(|_| bad())?;
    let claims: Value = serde_json::from_slice(&claims).map_err(|_| bad())?;
    let iss = match &claims["iss"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    if Some(iss) != app_id {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "'Issuer' claim ('iss') must be an Integer",
        ));
    }
    if let Some(exp) = claims["exp"].as_i64()
        && exp < chrono::Utc::now().timestamp()
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ));
    }
    Ok(Caller::App(iss))
}

/// Whether an `If-None-Match` header names this ETag.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let Some(v) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    v.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag
    })
}

/// An injected failure, split by when it strikes: `instead` of the work, or after it (the
/// answer held back `late`, or replaced: `answer_lost`).
pub(crate) struct Injected {
    pub instead: Option<FailureKind>,
    pub late: Option<std::time::Duration>,
    pub answer_lost: bool,
}

impl Injected {
    pub(crate) fn split(injected: Option<FailureKind>) -> Injected {
        match injected {
            Some(FailureKind::AnswerLate(by)) => Injected {
                instead: None,
                late: Some(by),
                answer_lost: false,
            },
            Some(FailureKind::AnswerLost) => Injected {
                instead: None,
                late: None,
                answer_lost: true,
            },
            instead => Injected {
                instead,
                late: None,
                answer_lost: false,
            },
        }
    }
}

/// Holds the answer of a request that fails by hanging: for its time, or for good.
pub(crate) async fn hold(kind: &FailureKind) {
    match kind {
        FailureKind::Timeout(d) => tokio::time::sleep(*d).await,
        FailureKind::Hang => std::future::pending().await,
        _ => {}
    }
}

/// The branch detours in place while one request is served. Dropping it puts the branches
/// back, so they return even when the request is cancelled mid-way (the client hung up).
pub(crate) struct Detoured {
    app: App,
    undo: Vec<crate::ops::DetourUndo>,
}

/// `(path, content)` pairs as the commit that writes them.
fn files_written(files: &[(String, String)]) -> Vec<crate::git::Change> {
    files
        .iter()
        .map(|(path, text)| {
            let written = crate::git::Written::File(text.as_bytes().to_vec());
            (path.clone(), Some(written))
        })
        .collect()
}

impl Detoured {
    /// Puts every detour matching this request in place, using up one of its count.
    pub(crate) fn begin(app: &App, method: &Method, path: &str, route: &str) -> Detoured {
        for r in app.take_retargets(method, path, route) {
            if let Err(err) = app.lock().retarget(&r.repo, r.number, &r.login, &r.base) {
                tracing::warn!(%err, ?r, "test-forge: retarget not made");
            }
        }
        for p in app.take_pushes(method, path, route) {
            let changes = files_written(&p.files);
            let pushed = app.lock().commit_files(
                &p.repo,
                &p.branch,
                &p.login,
                &changes,
                "a push in between",
                crate::ops::Via::Push,
            );
            if let Err(err) = pushed {
                tracing::warn!(%err, ?p, "test-forge: push not made");
            }
        }
        for u in app.take_unreacts(method, path, route) {
            let target = crate::ops::ReactionTarget::Issue(u.number);
            if let Err(err) = app.lock().delete_reaction(&u.repo, target, u.reaction_id) {
                tracing::warn!(%err, ?u, "test-forge: reaction not taken back");
            }
        }
        for f in app.take_fork_pulls(method, path, route) {
            let files = files_written(&f.files);
            let new = crate::ops::NewPull {
                head: &f.head_branch,
                base: None,
                title: "a fork's pull request in between",
                body: "",
                draft: false,
            };
            let opened = app
                .lock()
                .open_fork_pull(&f.repo, &f.login, &f.fork, new, &files);
            if let Err(err) = opened {
                tracing::warn!(%err, ?f, "test-forge: fork pull request not opened");
            }
        }
        let detours = app.take_detours(method, path, Some(route));
        let mut undo = Vec::new();
        if !detours.is_empty() {
            let mut st = app.lock();
            for d in detours {
                match st.begin_detour(&d.repo, &d.branch, &d.sha) {
                    Ok(u) => undo.push(u),
                    Err(err) => tracing::warn!(%err, ?d, "test-forge: detour not taken"),
                }
            }
        }
        Detoured {
            app: app.clone(),
            undo,
        }
    }
}

impl Drop for Detoured {
    fn drop(&mut self) {
        if self.undo.is_empty() {
            return;
        }
        let mut st = self.app.lock();
        // Newest first, so two detours of one branch unwind to where it started.
        while let Some(u) = self.undo.pop() {
            st.end_detour(u);
        }
    }
}

fn failure_response(kind: &FailureKind) -> Response {
    let (status, message) = match kind {
        FailureKind::Status(code) => (
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Server Error".to_owned(),
        ),
        FailureKind::RateLimited403 => (
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.".to_owned(),
        ),
        FailureKind::SecondaryRateLimit429 { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.".to_owned(),
        ),
        FailureKind::Timeout(_) | FailureKind::Hang | FailureKind::AnswerLate(_)
        | FailureKind::AnswerLost => {
            (StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout".to_owned())
        }
        FailureKind::MergeConflict => (StatusCode::METHOD_NOT_ALLOWED, "Merge conflict".to_owned()),
    };
    let mut resp = (status, axum::Json(error_body(status, &message))).into_response();
    if let FailureKind::SecondaryRateLimit429 { retry_after } = kind
        && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// `resp` with the forge's own time `now` as its `Date` (not the machine's, which hyper would
/// put): a client judges forge times by it.
pub(crate) fn forge_dated(mut resp: Response, now: chrono::DateTime<chrono::Utc>) -> Response {
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    set_header(&mut resp, "date", date);
    resp
}

pub(crate) fn set_header(resp: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The middleware every request passes.
async fn observe(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = template(&req);
    app.count_call(&method, &route);
    let started = std::time::Instant::now();
    app.timeline.delay().await;

    let Injected {
        instead: injected,
        late,
        answer_lost,
    } = Injected::split(app.take_failure(&method, &path, Some(&route)));
    let mut exhausted = false;
    let mut resp = match injected {
        Some(kind) => {
            exhausted = kind == FailureKind::RateLimited403;
            hold(&kind).await;
            failure_response(&kind)
        }
        None => match authenticate(&app, req.headers()) {
            Err(e) => e.into_response(),
            Ok(caller) => {
                let conditional = method == Method::GET;
                let if_none_match = req.headers().clone();
                req.extensions_mut().insert(caller);
                let detoured = Detoured::begin(&app, &method, &path, &route);
                let resp = next.run(req).await;
                drop(detoured);
                if conditional && resp.status() == StatusCode::OK {
                    with_etag(&app, resp, &if_none_match, (&method, &route)).await
                } else {
                    resp
                }
            }
        },
    };

    if let Some(by) = late {
        tokio::time::sleep(by).await;
    }
    if answer_lost {
        resp = failure_response(&FailureKind::AnswerLost);
    }
    let not_modified = resp.status() == StatusCode::NOT_MODIFIED;
    let (used, reset) = app.rate_tick(!not_modified);
    let remaining = if exhausted {
        0
    } else {
        RATE_LIMIT.saturating_sub(used)
    };
    set_header(&mut resp, "x-ratelimit-limit", RATE_LIMIT.to_string());
    set_header(&mut resp, "x-ratelimit-remaining", remaining.to_string());
    set_header(&mut resp, "x-ratelimit-reset", reset.to_string());
    set_header(&mut resp, "x-ratelimit-used", used.to_string());
    set_header(&mut resp, "x-ratelimit-resource", "core".to_owned());
    set_header(
        &mut resp,
        "x-github-api-version-selected",
        "2022-11-28".to_owned(),
    );
    let kind = crate::timeline::SpanKind::Api {
        method: method.to_string(),
        route,
        path,
    };
    app.timeline.record(kind, started, resp.status().as_u16());
    resp
}

/// Adds a strong ETag derived from the body and turns a matching `If-None-Match` into a 304.
pub(crate) async fn with_etag(
    app: &App,
    resp: Response,
    req_headers: &HeaderMap,
    (method, route): (&Method, &str),
) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("could not buffer the response").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
    if etag_matches(req_headers, &etag) {
        app.count_not_modified(method, route);
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        set_header(&mut resp, "etag", etag);
        // A 304 carries the `Date` the full answer would (a route may set the forge's own).
        if let Some(date) = parts.headers.get(header::DATE) {
            resp.headers_mut().insert(header::DATE, date.clone());
        }
        return resp;
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, v);
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        let enc = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!(
            "{}.{}.sig",
            enc(&serde_json::json!({"alg": "RS256"})),
            enc(&claims)
        )
    }

    #[test]
    fn app_jwt_needs_the_configured_numeric_issuer_and_a_future_expiry() {
        let future = chrono::Utc::now().timestamp() + 600;
        assert!(matches!(
            jwt_app(&jwt(serde_json::json!({"iss": 7, "exp": future})), Some(7)),
            Ok(Caller::App(7))
        ));
        for claims in [
            serde_json::json!({"iss": 8, "exp": future}),
            serde_json::json!({"iss": "x", "exp": future}),
            serde_json::json!({"exp": future}),
            serde_json::json!({"iss": 7, "exp": 1}),
        ] {
            assert!(jwt_app(&jwt(claims.clone()), Some(7)).is_err(), "{claims}");
        }
        assert!(jwt_app("a.b.c", Some(7)).is_err());
        assert!(jwt_app(&jwt(serde_json::json!({"iss": 7})), None).is_err());
    }

    #[test]
    fn if_none_match_accepts_lists_weak_prefixes_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(etag_matches(&h, "\"b\""));
        assert!(!etag_matches(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(etag_matches(&h, "\"z\""));
        assert!(!etag_matches(&HeaderMap::new(), "\"z\""));
    }
}
