//! `breakglass.toml`: the service's configuration.
//!
//! Every key can be overridden by an environment variable `BREAKGLASS_<KEY>`, nested keys joined
//! with `__` (`BREAKGLASS_GITHUB__API_URL`). Secrets are never in the file: it names the
//! environment variable (`*_env`) or file (`*_file`) that holds them, and they are resolved into
//! [`Secret`]s that print as `[redacted]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::secret::Secret;

const ENV_PREFIX: &str = "BREAKGLASS_";

/// The whole configuration. Unknown keys are errors, so a typo never silently falls back to a
/// default.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on: an IP address and port (`127.0.0.1:8080`,
    /// `[::1]:8080`) or a host name and port (`localhost:8080`), resolved when the
    /// configuration is read; the first address it resolves to is bound.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// `sqlite://breakglass.db` (embedded default) or `postgres://…` for several replicas.
    pub database_url: String,
    /// Directory of the policy files in the requests repo, read from its default branch.
    pub policies_path: String,
    /// A reminder comment is posted this long before a grant expires.
    #[serde(deserialize_with = "config_duration")]
    pub reminder_before: HumanDuration,
    /// Where the bot's grant templates (`iac` roles' `template:`) live, on the bot's disk.
    pub templates_path: PathBuf,
    /// A request nobody approved within this time is closed (its PR too) and no longer polled.
    #[serde(deserialize_with = "config_duration")]
    pub pending_timeout: HumanDuration,
    /// How often every active grant is checked against git and its provider (drift, grants no
    /// request holds), besides at start.
    #[serde(deserialize_with = "config_duration")]
    pub reconcile_interval: HumanDuration,
    /// How many open requests (pending, denied or approved: not yet merged or closed; a denied
    /// request's PR stays open to be fixed) one person may have at once; a `/breakglass`
    /// comment beyond it gets a reply and opens nothing.
    pub max_open_requests: u32,
    /// GitHub; absent when breakglass serves GitLab only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubConfig>,
    /// GitLab; absent when breakglass serves GitHub only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<GitlabConfig>,
    /// AWS, for roles with `provider: aws-iam`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsConfig>,
}

/// Written out without the database URL's password, which the URL may carry.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &crate::secret::redact_url(&self.database_url),
            )
            .field("policies_path", &self.policies_path)
            .field("reminder_before", &self.reminder_before)
            .field("templates_path", &self.templates_path)
            .field("pending_timeout", &self.pending_timeout)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("max_open_requests", &self.max_open_requests)
            .field("github", &self.github)
            .field("gitlab", &self.gitlab)
            .field("aws", &self.aws)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://breakglass.db".into(),
            policies_path: "policies".into(),
            reminder_before: HumanDuration::from_secs(600),
            templates_path: PathBuf::from("templates"),
            pending_timeout: HumanDuration::from_secs(86_400),
            reconcile_interval: HumanDuration::from_secs(300),
            max_open_requests: 3,
            github: None,
            gitlab: None,
            aws: None,
        }
    }
}

/// GitHub connection and credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// REST API root: `https://api.github.com`, GitHub Enterprise's `/api/v3`, or a test forge.
    pub api_url: String,
    /// The requests repo, `owner/name`.
    pub repository: String,
    /// Environment variable holding the webhook secret. Several secrets (during a rotation) are
    /// separated by newlines.
    pub webhook_secret_env: String,
    /// Alternatively, a file holding the webhook secret(s).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub webhook_secret_file: Option<PathBuf>,
    /// Environment variable holding a token (personal or installation).
    pub token_env: String,
    /// Alternatively, a file holding the token.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub token_file: Option<PathBuf>,
    /// GitHub App id; with `private_key_path` or `private_key_env` (and optionally
    /// `installation_id`), the bot authenticates as the App instead of with a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// A file holding the App's private key (PEM).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub private_key_path: Option<PathBuf>,
    /// Alternatively, an environment variable holding it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub private_key_env: Option<String>,
    /// The App's installation on the requests repo; looked up when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// How often the reactions of polled PRs are polled (GitHub sends no reaction webhooks):
    /// pending requests, grants with an extension asked, fast-path grants awaiting review.
    #[serde(deserialize_with = "config_duration")]
    pub reaction_poll_interval: HumanDuration,
    /// Reaction reads a minute that the polls of every polled PR may make together: with more
    /// PRs polled than that allows at `reaction_poll_interval`, each is polled less often.
    /// GitHub counts even a free `304` towards its secondary limit (900 points a minute).
    pub reaction_poll_budget: std::num::NonZeroU32,
}

/// Half of GitHub's secondary limit: room for everything else the bot does at the same time.
pub const DEFAULT_POLL_BUDGET: std::num::NonZeroU32 = std::num::NonZeroU32::new(450).unwrap();

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            repository: String::new(),
            webhook_secret_env: "BREAKGLASS_GITHUB_WEBHOOK_SECRET".into(),
            webhook_secret_file: None,
            token_env: "BREAKGLASS_GITHUB_TOKEN".into(),
            token_file: None,
            app_id: None,
            private_key_path: None,
            private_key_env: None,
            installation_id: None,
            reaction_poll_interval: HumanDuration::from_secs(30),
            reaction_poll_budget: DEFAULT_POLL_BUDGET,
        }
    }
}

/// GitLab connection and credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitlabConfig {
    pub api_url: String,
    /// The requests project, `group/name`.
    pub project: String,
    /// Environment variable holding the `X-Gitlab-Token` secret.
    pub webhook_token_env: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub webhook_token_file: Option<PathBuf>,
    pub token_env: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_none"
    )]
    pub token_file: Option<PathBuf>,
}

impl Default for GitlabConfig {
    fn default() -> Self {
        Self {
            api_url: "https://gitlab.com/api/v4".into(),
            project: String::new(),
            webhook_token_env: "BREAKGLASS_GITLAB_WEBHOOK_TOKEN".into(),
            webhook_token_file: None,
            token_env: "BREAKGLASS_GITLAB_TOKEN".into(),
            token_file: None,
        }
    }
}

/// AWS settings for the aws-iam provider. Credentials are not here: they come from the
/// standard AWS chain (environment, web identity, container or instance role, profile).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// The region of the STS and IAM clients (IAM itself is global).
    pub region: String,
    /// A local AWS emulator's endpoint for tests; empty for real AWS.
    pub endpoint_url: String,
    /// The management role the bot assumes for each grant operation, with the requester as
    /// `SourceIdentity` and the request in session tags; empty: the ambient credentials act
    /// directly.
    pub assume_role_arn: String,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: String::new(),
            assume_role_arn: String::new(),
        }
    }
}

/// `listen`'s value: an IP literal as it is, or a host name resolved (the system's resolver,
/// `/etc/hosts` included) to its first address.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    resolve_listen(&text).map_err(serde::de::Error::custom)
}

/// The value is not echoed: an override is named by its variable and key only (see
/// [`blame_override`]).
fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let shape = "give an address and port (`127.0.0.1:8080`, `[::1]:8080`) or a host name and port (`localhost:8080`)";
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("`listen` names a host that resolves to no address; {shape}")),
        Err(err) => Err(format!(
            "`listen` is neither an address nor a host name that resolves ({err}); {shape}"
        )),
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The source is in the message, not the error chain: `{err:#}` would say it twice.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{0}")]
    Secret(String),
}

impl Config {
    /// Reads the file (when it exists; defaults otherwise) and applies `BREAKGLASS_*` overrides
    /// from `env`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    error: source,
                });
            }
        };
        Self::from_toml(&text, &path.display().to_string(), env)
    }

    /// Like [`Config::load`], for a file the user named (`--config`): its absence is an
    /// error, so that a typo never starts the service on defaults.
    pub fn load_named(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text, &path.display().to_string(), env)
    }

    /// Parses TOML text and applies overrides; `origin` names the source in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|err: toml::de::Error| invalid(located(text, &err)))?;
        let from_file = table.clone();
        let mut overrides = Vec::new();
        let known = known_keys();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
            let value = match known.get(&path.join(".")) {
                // A string key keeps the text as given (a GitLab project id of digits).
                Some(true) => toml::Value::String(value),
                Some(false) => env_value(&value),
                // A nested name is meant as a key: a misspelt one must not be dropped silently.
                None if path.len() > 1 => {
                    return Err(invalid(format!(
                        "{name} overrides no configuration key (`{}`)",
                        path.join(".")
                    )));
                }
                // Other BREAKGLASS_* variables (secrets named by *_env, test settings) are not
                // keys.
                None => continue,
            };
            set_path(&mut table, &path, value.clone());
            overrides.push((name, path, value));
        }
        table.try_into().map_err(|err: toml::de::Error| {
            blame_override(&from_file, &overrides).unwrap_or_else(|| {
                // The file itself: parsed from its text, the error shows the line, column and
                // key (a table's conversion knows none of them).
                let from_text = toml::from_str::<Config>(text).err();
                invalid(
                    from_text.map_or_else(|| without_values(err.message()), |e| located(text, &e)),
                )
            })
        })
    }
}

/// The environment variable whose override makes an otherwise valid file invalid, named with
/// its key (never its value, which may hold a database password), or `None` when the file
/// itself is the problem.
fn blame_override(
    from_file: &toml::Table,
    overrides: &[(String, Vec<String>, toml::Value)],
) -> Option<ConfigError> {
    from_file.clone().try_into::<Config>().ok()?;
    overrides.iter().find_map(|(name, path, value)| {
        let mut alone = from_file.clone();
        set_path(&mut alone, path, value.clone());
        let err = alone.try_into::<Config>().err()?;
        Some(ConfigError::Invalid {
            path: name.clone(),
            message: format!("`{}`: {}", path.join("."), without_values(err.message())),
        })
    })
}

/// A TOML error as its line, column and message, without the source line that its `Display`
/// quotes nor the values its message quotes: a token written into the wrong key (or a key's
/// override) must not reach a log through the error that refuses it.
fn located(text: &str, err: &toml::de::Error) -> String {
    let message = without_values(err.message());
    let Some(span) = err.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

/// `message` with every double-quoted value (serde's `invalid type: string "…"`, whose `\"`
/// escapes stay inside it) replaced by `"…"`.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in message.chars() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…");
                quoted = true;
            }
            (_, true) if escaped => escaped = false,
            ('\\', true) => escaped = true,
            ('"', true) => {
                out.push('"');
                quoted = false;
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// An optional setting written as `""` (as SPEC.md's example leaves `endpoint_url`) is unset,
/// so that an override can unset it too.
fn empty_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: From<String>,
{
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|v| !v.trim().is_empty()).map(T::from))
}

/// A duration of the configuration. Its error names no value: a token written into the wrong
/// key must not reach a log through the error that refuses it (the key and line say where).
fn config_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = HumanDuration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as `10m`, `1h` or `1h30m`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
            use crate::duration::DurationError;
            HumanDuration::parse(v).map_err(|err| match err {
                DurationError::Malformed(_) => {
                    E::custom("not a duration; write e.g. `90s`, `10m`, `2h` or `1h30m`")
                }
                DurationError::Zero(_) => E::custom("zero; write a duration longer than that"),
                DurationError::TooLong(_) => E::custom("longer than the 7 days it may be"),
            })
        }
    }
    d.deserialize_str(Visitor)
}

/// The name of an environment variable a `*_env` key names, as an error may show it: only a
/// name shaped like one (`BREAKGLASS_GITHUB_TOKEN`): the secret itself, written there by
/// mistake, is not.
fn variable_name(name: &str) -> String {
    let shaped = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if shaped {
        name.to_owned()
    } else {
        "named by the key (not shown: it is not shaped like a variable's name; is the secret itself written there?)".to_owned()
    }
}

/// An override's value: a TOML literal when it is one (`8080`, `true`), else a plain string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("a key has at least one part");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("made a table above");
    }
    // A string override of a non-string key (`listen`) stays a string; serde then says why.
    current.insert(last.clone(), value);
}

/// Every key path of the configuration, dotted (`github.api_url`), from a fully populated
/// default, and whether it holds a string.
fn known_keys() -> BTreeMap<String, bool> {
    let full = Config {
        github: Some(GithubConfig {
            webhook_secret_file: Some(PathBuf::new()),
            token_file: Some(PathBuf::new()),
            app_id: Some(0),
            private_key_path: Some(PathBuf::new()),
            private_key_env: Some(String::new()),
            installation_id: Some(0),
            ..GithubConfig::default()
        }),
        gitlab: Some(GitlabConfig {
            webhook_token_file: Some(PathBuf::new()),
            token_file: Some(PathBuf::new()),
            ..GitlabConfig::default()
        }),
        aws: Some(AwsConfig::default()),
        ..Config::default()
    };
    let value = toml::Value::try_from(&full).expect("the config serializes");
    let mut keys = BTreeMap::new();
    collect_keys(&value, String::new(), &mut keys);
    keys
}

/// Every key path under `value`, and whether its value is a string.
fn collect_keys(value: &toml::Value, prefix: String, keys: &mut BTreeMap<String, bool>) {
    if let toml::Value::Table(table) = value {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            collect_keys(value, path.clone(), keys);
            keys.insert(path, value.is_str());
        }
    }
}

/// Reads a secret from the file when one is configured, else from the named environment
/// variable (the file wins, and a warning says the variable is ignored). Several secrets may
/// be given one per line (rotation).
pub fn read_secrets(
    env_var: &str,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Secret>, ConfigError> {
    if let Some(path) = file
        && env(env_var).is_some_and(|v| !v.trim().is_empty())
    {
        tracing::warn!(file = %path.display(), variable = env_var, "a secret is configured both by file and by environment variable: the file's is used, the variable is ignored");
    }
    let raw = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|err| {
            ConfigError::Secret(format!(
                "cannot read the secret file {}: {err}",
                path.display()
            ))
        })?,
        None => env(env_var).ok_or_else(|| {
            ConfigError::Secret(format!(
                "the environment variable {} is not set",
                variable_name(env_var)
            ))
        })?,
    };
    let secrets: Vec<Secret> = raw
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Secret::new)
        .collect();
    if secrets.is_empty() {
        return Err(ConfigError::Secret(match file {
            Some(path) => format!("the secret file {} is empty", path.display()),
            None => format!("the environment variable {env_var} is empty"),
        }));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
listen = "127.0.0.1:8080"
database_url = "sqlite://breakglass.db"
policies_path = "policies"
reminder_before = "10m"
[github]
api_url = "https://api.github.com"
repository = "acme/access-requests"
webhook_secret_env = "BREAKGLASS_GITHUB_WEBHOOK_SECRET"
token_env = "BREAKGLASS_GITHUB_TOKEN"
reaction_poll_interval = "30s"
[gitlab]
api_url = "https://gitlab.com/api/v4"
project = "acme/access-requests"
webhook_token_env = "BREAKGLASS_GITLAB_WEBHOOK_TOKEN"
token_env = "BREAKGLASS_GITLAB_TOKEN"
[aws]
region = "us-east-1"
endpoint_url = ""
assume_role_arn = ""
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_value_of_the_wrong_type_in_the_file_is_shown_where_it_is() {
        let err = Config::from_toml(
            "listen = \"127.0.0.1:8080\"\nmax_open_requests = \"three\"\n",
            "c.toml",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        // Where, and what was expected; never the value (it may be a secret in the wrong key).
        assert_eq!(
            err,
            "c.toml: line 2, column 21: invalid type: string \"…\", expected u32"
        );
    }

    #[test]
    fn no_error_echoes_the_value_it_refuses() {
        const TOKEN: &str = "glpat-NOTREALbutSECRET123";
        let base = "[github]\nrepository = \"acme/access-requests\"\n";
        let refused = |text: &str, vars: &[(&str, &str)]| {
            let err = Config::from_toml(text, "b.toml", env(vars)).unwrap_err();
            format!("{err:#}")
        };
        for var in [
            "BREAKGLASS_REMINDER_BEFORE",
            "BREAKGLASS_PENDING_TIMEOUT",
            "BREAKGLASS_RECONCILE_INTERVAL",
            "BREAKGLASS_GITHUB__REACTION_POLL_INTERVAL",
        ] {
            let err = refused(base, &[(var, TOKEN)]);
            assert!(
                !err.contains(TOKEN) && err.contains("not a duration"),
                "{err}"
            );
        }
        for value in [format!("\"{TOKEN}"), format!("a\"b{TOKEN}")] {
            let err = refused(base, &[("BREAKGLASS_MAX_OPEN_REQUESTS", &value)]);
            assert!(!err.contains("SECRET"), "{err}");
        }
        let err = refused(&format!("reminder_before = \"{TOKEN}\"\n{base}"), &[]);
        assert!(!err.contains(TOKEN) && err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_secret_written_where_its_variables_name_goes_is_not_shown() {
        assert_eq!(
            variable_name("BREAKGLASS_GITHUB_TOKEN"),
            "BREAKGLASS_GITHUB_TOKEN"
        );
        for mistaken in ["ghp_abcdefSECRET", "s3cr3t value", "", "1ABC"] {
            assert!(
                variable_name(mistaken).starts_with("named by the key"),
                "{mistaken}"
            );
        }
    }

    #[test]
    fn listen_takes_an_address_or_a_host_name() {
        let listen = |value: &str| {
            Config::from_toml(&format!("listen = \"{value}\"\n"), "b.toml", env(&[]))
                .map(|c| c.listen)
        };
        assert_eq!(
            listen("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(listen("[::1]:8080").unwrap().to_string(), "[::1]:8080");
        let named = listen("localhost:8080").unwrap();
        assert!(named.ip().is_loopback(), "{named}");
        assert_eq!(named.port(), 8080);
        let by_env = Config::from_toml(
            "",
            "b.toml",
            env(&[("BREAKGLASS_LISTEN", "localhost:9000")]),
        )
        .unwrap()
        .listen;
        assert!(
            by_env.ip().is_loopback() && by_env.port() == 9000,
            "{by_env}"
        );
        for bad in ["nosuch.invalid:8080", "localhost", "localhost:http"] {
            let err = listen(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("b.toml: line 1, column 10: `listen` is neither an address")
                    && err.contains("localhost:8080"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reads_the_spec_example() {
        let config = Config::from_toml(SPEC_EXAMPLE, "breakglass.toml", env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.reminder_before.to_string(), "10m");
        let github = config.github.unwrap();
        assert_eq!(github.repository, "acme/access-requests");
        assert_eq!(github.reaction_poll_interval.as_secs(), 30);
        assert_eq!(config.gitlab.unwrap().project, "acme/access-requests");
        assert_eq!(config.aws.unwrap().region, "us-east-1");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/breakglass.toml");
        let config = Config::load(&path, env(&[])).unwrap();
        assert_eq!(config.github.unwrap().repository, "acme/access-requests");
        assert_eq!(config.templates_path, PathBuf::from("templates"));
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(
            Config::from_toml("", "x", env(&[])).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn a_bad_override_is_blamed_on_its_variable_not_the_file() {
        let err = Config::from_toml(
            SPEC_EXAMPLE,
            "breakglass.toml",
            env(&[
                ("BREAKGLASS_DATABASE_URL", "postgres://u:pw@db/x"),
                ("BREAKGLASS_LISTEN", "not-an-addr"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "BREAKGLASS_LISTEN: `listen`: `listen` is neither an address nor a host name that resolves (invalid socket address); give an address and port (`127.0.0.1:8080`, `[::1]:8080`) or a host name and port (`localhost:8080`)"
        );
        // The file's own mistake stays the file's.
        let err = Config::from_toml(
            "listen = \"nope\"\n",
            "breakglass.toml",
            env(&[("BREAKGLASS_REMINDER_BEFORE", "5m")]),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("breakglass.toml: "), "{err}");
    }

    #[test]
    fn an_optional_path_or_name_written_empty_is_unset_in_the_file_or_by_an_override() {
        let toml = "[github]\nprivate_key_path = \"\"\nprivate_key_env = \" \"\ntoken_file = \"\"\nwebhook_secret_file = \"\"\n[gitlab]\ntoken_file = \"\"\nwebhook_token_file = \"\"\n";
        let config = Config::from_toml(toml, "x", Vec::new()).unwrap();
        let github = config.github.unwrap();
        assert_eq!(github, GithubConfig::default());
        assert_eq!(config.gitlab.unwrap(), GitlabConfig::default());
        let toml = "[github]\ntoken_file = \"/run/secrets/token\"\n";
        let unset = env(&[("BREAKGLASS_GITHUB__TOKEN_FILE", "")]);
        let config = Config::from_toml(toml, "x", unset).unwrap();
        assert_eq!(config.github.unwrap().token_file, None);
    }

    #[test]
    fn environment_overrides_every_key_including_nested_ones() {
        let config = Config::from_toml(
            SPEC_EXAMPLE,
            "x",
            env(&[
                ("BREAKGLASS_LISTEN", "0.0.0.0:9000"),
                ("BREAKGLASS_DATABASE_URL", "postgres://db/breakglass"),
                ("BREAKGLASS_GITHUB__API_URL", "http://127.0.0.1:3000"),
                ("BREAKGLASS_GITHUB__APP_ID", "12345"),
                ("BREAKGLASS_GITHUB__REACTION_POLL_BUDGET", "120"),
                ("BREAKGLASS_AWS__ENDPOINT_URL", "http://127.0.0.1:5055"),
                (
                    "BREAKGLASS_AWS__ASSUME_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/breakglass-bot",
                ),
                // Secrets and unrelated variables share the prefix and are not keys.
                ("BREAKGLASS_GITHUB_WEBHOOK_SECRET", "s3cret"),
                ("BREAKGLASS_TEST_DATABASE_URL", "postgres://x"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database_url, "postgres://db/breakglass");
        let github = config.github.unwrap();
        assert_eq!(github.api_url, "http://127.0.0.1:3000");
        assert_eq!(github.app_id, Some(12345));
        assert_eq!(github.reaction_poll_budget.get(), 120);
        let aws = config.aws.unwrap();
        assert_eq!(aws.endpoint_url, "http://127.0.0.1:5055");
        assert_eq!(
            aws.assume_role_arn,
            "arn:aws:iam::123456789012:role/breakglass-bot"
        );
    }

    #[test]
    fn an_override_can_create_a_section() {
        let config = Config::from_toml(
            "",
            "x",
            env(&[("BREAKGLASS_GITHUB__REPOSITORY", "acme/req")]),
        )
        .unwrap();
        assert_eq!(config.github.unwrap().repository, "acme/req");
    }

    #[test]
    fn a_secret_in_the_wrong_place_is_not_echoed_by_its_error() {
        let file = "[github]\nrepository = \"a/b\"\ntoken = \"ghp_SECRETVALUE1\"\n";
        let err = Config::from_toml(file, "breakglass.toml", env(&[])).unwrap_err();
        let said = err.to_string();
        assert!(!said.contains("ghp_SECRETVALUE1"), "{said}");
        assert!(
            said.contains("line 3, column 1: unknown field `token`"),
            "{said}"
        );
        let err = Config::from_toml("token_env = ghp_SECRETVALUE2\n", "x", env(&[])).unwrap_err();
        assert!(!err.to_string().contains("SECRETVALUE2"), "{err}");
        assert!(err.to_string().starts_with("x: line 1, column "), "{err}");
        let err = Config::from_toml(
            SPEC_EXAMPLE,
            "x",
            env(&[("BREAKGLASS_GITHUB__APP_ID", "ghp_SECRETVALUE3")]),
        )
        .unwrap_err();
        let said = err.to_string();
        assert!(!said.contains("SECRETVALUE3"), "{said}");
        assert!(
            said.starts_with(
                "BREAKGLASS_GITHUB__APP_ID: `github.app_id`: invalid type: string \"…\""
            ),
            "{said}"
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let err = Config::from_toml("listn = \"x\"", "breakglass.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("unknown field `listn`"), "{err}");
        let err = Config::from_toml(
            "reminder_before = \"10 minutes\"",
            "breakglass.toml",
            env(&[]),
        )
        .unwrap_err();
        assert!(
            err.to_string().ends_with(
                "line 1, column 19: not a duration; write e.g. `90s`, `10m`, `2h` or `1h30m`"
            ),
            "{err}"
        );
        for (value, said) in [
            ("0s", "zero; write a duration longer than that"),
            ("8d", "longer than the 7 days it may be"),
        ] {
            let toml = format!("reminder_before = \"{value}\"");
            let err = Config::from_toml(&toml, "breakglass.toml", env(&[])).unwrap_err();
            assert!(err.to_string().ends_with(said), "{err}");
        }
        // A budget of no polls at all would leave emoji approvals unseen for good.
        let toml = "[github]\nreaction_poll_budget = 0\n";
        let err = Config::from_toml(toml, "breakglass.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("nonzero"), "{err}");
        let err = Config::from_toml("", "x", env(&[("BREAKGLASS_LISTEN", "not an address")]))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("BREAKGLASS_LISTEN: `listen`: "),
            "{err}"
        );
        // A nested name is meant as a key: misspelt, it is an error, not silently dropped.
        let err = Config::from_toml(
            SPEC_EXAMPLE,
            "x",
            env(&[("BREAKGLASS_GITHUB__REPOSITRY", "acme/other")]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("BREAKGLASS_GITHUB__REPOSITRY overrides no configuration key"),
            "{err}"
        );
    }

    #[test]
    fn an_override_of_a_string_key_keeps_its_text_even_when_it_looks_like_a_number() {
        let config = Config::from_toml(
            SPEC_EXAMPLE,
            "x",
            env(&[
                ("BREAKGLASS_GITLAB__PROJECT", "12345"),
                ("BREAKGLASS_GITHUB__PRIVATE_KEY_ENV", "APP_KEY"),
                ("BREAKGLASS_GITHUB__INSTALLATION_ID", "77"),
            ]),
        )
        .unwrap();
        assert_eq!(config.gitlab.unwrap().project, "12345");
        let github = config.github.unwrap();
        assert_eq!(github.private_key_env.as_deref(), Some("APP_KEY"));
        assert_eq!(github.installation_id, Some(77));
    }

    #[test]
    fn secrets_come_from_env_or_file_and_never_print() {
        let lookup = |name: &str| (name == "SECRET").then(|| "new\nold\n".to_owned());
        let secrets = read_secrets("SECRET", None, &lookup).unwrap();
        assert_eq!(
            secrets.iter().map(Secret::expose).collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert_eq!(
            format!("{secrets:?}"),
            "[Secret([redacted]), Secret([redacted])]"
        );
        let err = read_secrets("MISSING", None, &lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the environment variable MISSING is not set"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            read_secrets("SECRET", Some(&file), &lookup).unwrap()[0].expose(),
            "from-file"
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(read_secrets("SECRET", Some(&file), &lookup).is_err());
    }

    #[test]
    fn config_debug_output_holds_no_secret_values() {
        // The config only names where secrets are; resolved secrets are `Secret`s.
        let config = Config::from_toml(
            SPEC_EXAMPLE,
            "x",
            env(&[("BREAKGLASS_GITHUB_WEBHOOK_SECRET", "s3cret")]),
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn config_debug_output_holds_no_database_password() {
        let config = Config {
            database_url: "postgres://bot:hunter2@db/breakglass".into(),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://bot:redacted@db/breakglass"),
            "{shown}"
        );
    }
}
