//! What every GitLab request passes: authentication by `PRIVATE-TOKEN` or `Bearer`, call
//! counting and failure injection (shared with the GitHub dialect), `RateLimit-*` headers,
//! GitLab's error bodies, its parameters (query, JSON or form body alike) and its pagination.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::failures::FailureKind;
use crate::json::url_seg;
use crate::routes::{App, Detoured, Injected, set_header, template, with_etag};

/// The request budget GitLab.com advertises for authenticated API traffic.
const RATE_LIMIT: u64 = 2000;

/// A GitLab error: the status and GitLab's body (`{"message": …}` or Grape's `{"error": …}`).
#[derive(Debug)]
pub(crate) struct GlError {
    pub status: StatusCode,
    pub body: Value,
}

pub(crate) type GlResult<T> = Result<T, GlError>;

impl GlError {
    pub fn message(status: StatusCode, message: impl Into<Value>) -> Self {
        GlError {
            status,
            body: json!({ "message": message.into() }),
        }
    }

    /// `400 {"error": "<param> is missing"}`, as Grape answers a missing required parameter.
    pub fn missing(param: &str) -> Self {
        GlError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": format!("{param} is missing") }),
        }
    }

    pub fn bad_request(message: impl Into<Value>) -> Self {
        Self::message(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::message(StatusCode::NOT_FOUND, format!("404 {what} Not Found"))
    }

    pub fn unauthorized() -> Self {
        Self::message(StatusCode::UNAUTHORIZED, "401 Unauthorized")
    }

    pub fn not_allowed() -> Self {
        Self::message(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed")
    }
}

/// The model answers in GitHub's words; GitLab says 404 with its own phrase, 400 where GitHub
/// says 422, and keeps other statuses.
impl From<ApiError> for GlError {
    fn from(e: ApiError) -> Self {
        match e.status {
            StatusCode::NOT_FOUND if e.message.starts_with("404 ") => {
                Self::message(StatusCode::NOT_FOUND, e.message)
            }
            StatusCode::NOT_FOUND => Self::message(StatusCode::NOT_FOUND, "404 Not found"),
            StatusCode::UNPROCESSABLE_ENTITY => Self::bad_request(
                e.message
                    .trim_start_matches("Validation Failed: ")
                    .to_owned(),
            ),
            status => Self::message(status, e.message),
        }
    }
}

impl From<git2::Error> for GlError {
    fn from(e: git2::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for GlError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// The account a GitLab request acts as.
#[derive(Clone, Debug)]
pub(crate) struct GlUser(pub String);

impl<S: Send + Sync> FromRequestParts<S> for GlUser {
    type Rejection = GlError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<GlUser>()
            .cloned()
            .ok_or_else(GlError::unauthorized)
    }
}

/// GitLab's parameters: the query string and the body (JSON, or form-encoded with Rails'
/// `actions[][field]=` arrays) merged into one JSON object; the body wins on a clash. A body
/// that is not form-encoded is read as JSON whatever its `Content-Type`.
pub(crate) struct GlParams(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for GlParams {
    type Rejection = GlError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut map = Map::new();
        let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
            .map_err(|_| GlError::bad_request("400 Bad request - invalid query"))?;
        merge_form(&mut map, query.0);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let form = axum::extract::Form::<Vec<(String, String)>>::from_request(req, state)
                .await
                .map_err(|_| GlError::bad_request("400 Bad request - invalid form"))?;
            merge_form(&mut map, form.0);
            return Ok(GlParams(map));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| GlError::bad_request("400 Bad request"))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return Ok(GlParams(map));
        }
        match serde_json::from_slice::<Value>(trimmed) {
            Ok(Value::Object(body)) => map.extend(body),
            _ => return Err(GlError::bad_request("400 Bad request - invalid JSON")),
        }
        Ok(GlParams(map))
    }
}

/// Adds form pairs to `map`: `k=v`, `k[]=v` (a list) and `k[][f]=v` (a list of objects, a new
/// object starting whenever `f` repeats), as Rails reads them.
fn merge_form(map: &mut Map<String, Value>, pairs: Vec<(String, String)>) {
    for (k, v) in pairs {
        if let Some((name, rest)) = k.split_once("[]") {
            let list = map
                .entry(name.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = list else {
                continue;
            };
            match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                None => items.push(Value::String(v)),
                Some(field) => {
                    let fresh = items
                        .last()
                        .and_then(Value::as_object)
                        .is_none_or(|o| o.contains_key(field));
                    if fresh {
                        items.push(Value::Object(Map::new()));
                    }
                    if let Some(Value::Object(o)) = items.last_mut() {
                        o.insert(field.to_owned(), Value::String(v));
                    }
                }
            }
        } else {
            map.insert(k, Value::String(v));
        }
    }
}

impl GlParams {
    /// A string parameter (numbers and booleans are given as text too).
    pub fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A required string parameter: Grape's 400 `"<key> is missing"` when absent or empty.
    pub fn required(&self, key: &str) -> GlResult<String> {
        self.str(key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GlError::missing(key))
    }

    /// A boolean parameter (`true`/`false`/`1`/`0`).
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.0.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            Value::Number(n) => Some(n.as_u64() != Some(0)),
            _ => None,
        }
    }

    /// A list given as `a,b` or as an array.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        match self.0.get(key)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// The query string of a GET, for filters and pagination.
pub(crate) struct GlQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for GlQuery {
    type Rejection = GlError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| GlQuery(q.0))
            .map_err(|_| GlError::bad_request("400 Bad request - invalid query"))
    }
}

impl GlQuery {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Answers a list with GitLab's offset pagination: `per_page` (default 20, at most 100) and
/// `page` (from 1), with `X-Page`, `X-Per-Page`, `X-Next-Page` and `X-Prev-Page` (empty at the
/// ends), `X-Total`, `X-Total-Pages` and a `Link` header (`next`, `prev`, `first`, `last`).
pub(crate) fn paginate(items: Vec<Value>, q: &GlQuery, uri: &Uri, base_url: &str) -> Response {
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let link_for = |p: usize| {
        let mut params: Vec<(String, String)> =
            q.0.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "page" | "per_page"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        params.sort();
        params.push(("page".into(), p.to_string()));
        params.push(("per_page".into(), per_page.to_string()));
        let qs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", url_seg(k), url_seg(v)))
            .collect();
        format!("<{base_url}{}?{}>", uri.path(), qs.join("&"))
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(format!("{}; rel=\"next\"", link_for(page + 1)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_for(page - 1)));
    }
    links.push(format!("{}; rel=\"first\"", link_for(1)));
    links.push(format!("{}; rel=\"last\"", link_for(pages)));
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let mut resp = axum::Json(Value::Array(slice)).into_response();
    for (name, value) in [
        ("x-page", page.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-next-page", next),
        ("x-prev-page", prev),
        ("x-total", total.to_string()),
        ("x-total-pages", pages.to_string()),
        ("link", links.join(", ")),
    ] {
        set_header(&mut resp, name, value);
    }
    resp
}

/// The token of a GitLab request: `PRIVATE-TOKEN`, else `Authorization: Bearer`.
fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    auth.strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .map(|t| t.trim().to_owned())
}

fn authenticate(app: &App, headers: &HeaderMap) -> GlResult<GlUser> {
    let token = token_of(headers).ok_or_else(GlError::unauthorized)?;
    let st = app.lock();
    st.token(&token)
        .map(|rec| GlUser(rec.login.clone()))
        .ok_or_else(GlError::unauthorized)
}

/// An injected failure as GitLab shows it. Both rate-limit kinds are GitLab's throttle: 429,
/// `Retry-After`, and Rack::Attack's plain-text body.
fn failure_response(kind: &FailureKind) -> Response {
    let plain = |status: StatusCode, retry_after: u64| {
        let mut resp = (status, "Retry later\n").into_response();
        set_header(&mut resp, "retry-after", retry_after.to_string());
        resp
    };
    match kind {
        FailureKind::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            GlError::message(status, format!("{} {reason}", status.as_u16())).into_response()
        }
        FailureKind::RateLimited403 => plain(StatusCode::TOO_MANY_REQUESTS, 60),
        FailureKind::SecondaryRateLimit429 { retry_after } => {
            plain(StatusCode::TOO_MANY_REQUESTS, *retry_after)
        }
        FailureKind::Timeout(_)
        | FailureKind::Hang
        | FailureKind::AnswerLate(_)
        | FailureKind::AnswerLost => {
            GlError::message(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout").into_response()
        }
        FailureKind::MergeConflict => {
            GlError::message(StatusCode::NOT_ACCEPTABLE, "Branch cannot be merged").into_response()
        }
    }
}

/// The middleware of every `/api/v4` route.
pub(crate) async fn observe(State(app): State<App>, mut req: Request, next: Next) -> Response {
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
    let throttled = matches!(
        injected,
        Some(FailureKind::RateLimited403 | FailureKind::SecondaryRateLimit429 { .. })
    );
    let mut resp = match injected {
        Some(kind) => {
            crate::routes::hold(&kind).await;
            failure_response(&kind)
        }
        None => match authenticate(&app, req.headers()) {
            Err(e) => e.into_response(),
            Ok(user) => {
                let headers = req.headers().clone();
                req.extensions_mut().insert(user);
                let detoured = Detoured::begin(&app, &method, &path, &route);
                let resp = next.run(req).await;
                drop(detoured);
                if method == Method::GET && resp.status() == StatusCode::OK {
                    with_etag(&app, resp, &headers, (&method, &route)).await
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
    let remaining = if throttled {
        0
    } else {
        RATE_LIMIT.saturating_sub(used)
    };
    set_header(&mut resp, "ratelimit-limit", RATE_LIMIT.to_string());
    set_header(&mut resp, "ratelimit-observed", used.to_string());
    set_header(&mut resp, "ratelimit-remaining", remaining.to_string());
    set_header(&mut resp, "ratelimit-reset", reset.to_string());
    if let Some(at) = chrono::DateTime::from_timestamp(reset, 0) {
        let when = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(v) = HeaderValue::from_str(&when) {
            resp.headers_mut().insert("ratelimit-resettime", v);
        }
    }
    let kind = crate::timeline::SpanKind::Api {
        method: method.to_string(),
        route,
        path,
    };
    app.timeline.record(kind, started, resp.status().as_u16());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_arrays_of_objects_start_a_new_object_when_a_field_repeats() {
        let mut map = Map::new();
        let uri: Uri = "/x?branch=b&actions[][action]=create&actions[][file_path]=a&actions[][action]=delete&actions[][file_path]=c&labels[]=x"
            .parse()
            .unwrap();
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).unwrap();
        merge_form(&mut map, pairs.0);
        assert_eq!(map["branch"], "b");
        assert_eq!(
            map["actions"],
            json!([{"action": "create", "file_path": "a"}, {"action": "delete", "file_path": "c"}])
        );
        assert_eq!(map["labels"], json!(["x"]));
    }
}
