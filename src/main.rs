//! The `breakglass` command line: wiring only; the work is in the library.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use breakglass::audit::{self, AuditOptions, ReportOptions};
use breakglass::check::{self, CheckInput};
use breakglass::config::Config;
use breakglass::names::{Login, Team};
use breakglass::policy;
use clap::{Parser, Subcommand, ValueEnum};

/// Break-glass access by pull request: temporary, approved, audited, revoked on time.
#[derive(Parser)]
#[command(name = "breakglass", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: webhooks, approvals, grants and revocations.
    Serve {
        /// The configuration file (TOML; default `breakglass.toml`, used when it exists);
        /// every key can be overridden by BREAKGLASS_<KEY>. A file named here must exist.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate request files offline against the policies.
    /// Exit code: 0 allowed, 1 denied, 2 invalid input.
    Check {
        /// The policy directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Who asks (the PR author); defaults to each file's `requester:`.
        #[arg(long)]
        requester: Option<Login>,
        /// A team the requester belongs to (`@org/team`), repeatable. Without it, team
        /// membership is reported as not checked.
        #[arg(long = "team")]
        teams: Vec<Team>,
        /// A label of the pull request, repeatable (fast-path rules look at them).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Decide as if it were this time (RFC 3339), for reproducible output.
        #[arg(long, hide = true)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Request files (`requests/<environment>/<id>.yaml`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit trail, read from the requests repo's git history: one row per grant (who,
    /// what, why, approved by whom, when granted, expired and revoked, reviewed by whom) and
    /// every anomaly. Exit code: 0 no anomaly, 1 anomalies, 2 error.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// The requests repository: a path, or a URL (cloned into a temporary directory).
        #[arg(long, default_value = ".", value_name = "PATH|URL")]
        repo: String,
        /// The branch to read (its first-parent history); default: the repository's HEAD.
        #[arg(long)]
        branch: Option<String>,
        /// Where the policies are in the repository (the config's `policies_path`): their
        /// `iac` roles say where grant files live.
        #[arg(long, default_value = "policies", value_name = "DIR")]
        policies: String,
        /// Only grants active at some time since this date (YYYY-MM-DD, RFC 3339, or a time ago:
        /// 30d).
        #[arg(long, value_name = "DATE", value_parser = breakglass::audit::parse_since)]
        since: Option<breakglass::audit::Bound>,
        /// Only grants active at some time until this date (YYYY-MM-DD: through its end; RFC
        /// 3339; or a time ago: 1d).
        #[arg(long, value_name = "DATE", value_parser = breakglass::audit::parse_until)]
        until: Option<breakglass::audit::Bound>,
        /// Only grants of this environment.
        #[arg(long)]
        environment: Option<String>,
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        format: AuditFormat,
        /// How late a revocation may come after the expiry before it is an anomaly.
        #[arg(long, default_value = "5m", value_parser = breakglass::audit::parse_grace)]
        grace: chrono::TimeDelta,
        /// Report as if it were this time (RFC 3339), for reproducible output.
        #[arg(long, hide = true)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Apply the database migrations (serve also does it at start).
    Migrate {
        /// The configuration file, as for `serve`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the JSON Schema of a file format, for editors and CI.
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
    /// Play the whole story in seconds: a test forge and the real bot on loopback, time
    /// fast-forwarded. Exit code 0 when every step did what it should (a smoke test).
    Demo {
        /// How long alice's access lasts.
        #[arg(long, default_value = "2m")]
        ttl: breakglass::duration::HumanDuration,
        /// The database (it must hold no requests); a throwaway SQLite file by default.
        #[arg(long)]
        database_url: Option<String>,
        /// The forge the story plays on: GitHub pull requests or GitLab merge requests.
        #[arg(long, value_enum, default_value = "github")]
        forge: breakglass::demo::DemoForge,
    },
}

/// `breakglass audit <command>`. Without one, `audit` reports.
#[derive(Subcommand)]
enum AuditCommand {
    /// Check the service's event log: its hash chain, and that it agrees with the requests
    /// repo's history (every logged merge and revocation is on the branch, and every bot merge
    /// on the branch is logged). Exit code 1 with every mismatch named.
    Verify {
        /// The requests repository (a local clone, or a URL to clone).
        #[arg(long, default_value = ".")]
        repo: String,
        /// The branch to check (default: the repository's HEAD branch).
        #[arg(long)]
        branch: Option<String>,
        /// The service's configuration, for its database_url (as for `serve`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The database, instead of the configuration's.
        #[arg(long)]
        database_url: Option<String>,
        /// Where the policies are in the repository: their `iac` roles say where grant files
        /// live (default: the configuration's `policies_path`, else `policies`).
        #[arg(long, value_name = "DIR")]
        policies: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Report every problem in every policy file at once. Exit code 1 when there is any.
    Lint {
        /// The policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// The bot's grant templates (its `templates_path`): each `iac` role's template must be
        /// there and render a sample request.
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuditFormat {
    Table,
    Json,
    Csv,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaKind {
    Request,
    Policy,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", causes(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each said once: many errors (the database's, the
/// configuration's) already carry their cause's text, which `{:#}` would repeat.
fn causes(err: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            policies,
            requester,
            teams,
            labels,
            now,
            format,
            files,
        } => {
            let input = check_input(requester, teams, labels, now);
            check_files(&policies, &files, &input, format)
        }
        Command::Policy {
            command:
                PolicyCommand::Lint {
                    dir,
                    templates,
                    format,
                },
        } => lint_policies(&dir, templates.as_deref(), format),
        Command::Schema { kind } => print_schema(kind),
        Command::Serve { config } => serve(config.as_deref()),
        Command::Audit {
            command: None,
            repo,
            branch,
            policies,
            since,
            until,
            environment,
            format,
            grace,
            now,
        } => {
            let mut options = audit_options(branch, since, until, environment, grace, now);
            options.policies = Some(policies);
            audit_report(&repo, &options, format)
        }
        Command::Audit {
            command:
                Some(AuditCommand::Verify {
                    repo,
                    branch,
                    config,
                    database_url,
                    policies,
                }),
            ..
        } => audit_verify(
            &repo,
            branch.as_deref(),
            config.as_deref(),
            database_url,
            policies,
        ),
        Command::Migrate { config } => migrate(config.as_deref()),
        Command::Demo {
            ttl,
            database_url,
            forge,
        } => demo(breakglass::demo::DemoOptions {
            ttl,
            database_url,
            forge,
        }),
    }
    .context("breakglass failed")
}

/// What `breakglass check` decides with beside the files: who asks, their teams (`None`:
/// not known), the PR's labels and the time.
fn check_input(
    requester: Option<Login>,
    teams: Vec<Team>,
    labels: Vec<String>,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> CheckInput {
    CheckInput {
        requester,
        teams: (!teams.is_empty()).then(|| teams.into_iter().collect::<BTreeSet<_>>()),
        labels,
        now: now.unwrap_or_else(now_in_whole_seconds),
    }
}

/// What `breakglass audit` reads (the branch) and reports (which grants, how late a
/// revocation may come, the time it reports as of: now unless `--now` says).
fn audit_options(
    branch: Option<String>,
    since: Option<breakglass::audit::Bound>,
    until: Option<breakglass::audit::Bound>,
    environment: Option<String>,
    grace: chrono::TimeDelta,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> AuditOptions {
    let now = now.unwrap_or_else(now_in_whole_seconds);
    AuditOptions {
        branch,
        policies: None,
        report: ReportOptions {
            grace,
            since: since.map(|bound| bound.resolve(now)),
            until: until.map(|bound| bound.resolve(now)),
            environment,
            ..ReportOptions::new(now)
        },
    }
}

/// The time `check` decides at and `audit` reports as of when `--now` does not say: whole
/// seconds, as every time breakglass shows and as `--now` takes it.
fn now_in_whole_seconds() -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0)
}

/// `breakglass schema`: the JSON Schema of `kind`, on stdout.
fn print_schema(kind: SchemaKind) -> anyhow::Result<ExitCode> {
    let schema = match kind {
        SchemaKind::Request => breakglass::schema::request(),
        SchemaKind::Policy => breakglass::schema::policy(),
    };
    emit(format!("{schema}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `breakglass demo`: the story, played on a runtime of its own.
fn demo(options: breakglass::demo::DemoOptions) -> anyhow::Result<ExitCode> {
    // Logs would break up the timeline; BREAKGLASS_LOG asks for them.
    if std::env::var_os("BREAKGLASS_LOG").is_some() {
        init_logging();
    }
    runtime()?.block_on(breakglass::demo::run(options))
}

/// `breakglass check`: exit 0 when every file is allowed, 1 when one is denied, 2 for invalid
/// input.
fn check_files(
    policies: &Path,
    files: &[PathBuf],
    input: &CheckInput,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let report = check::run(policies, files, input);
    match format {
        Format::Human => emit(check::render_human(&report))?,
        Format::Json => emit(format!("{}\n", serde_json::to_string_pretty(&report)?))?,
    }
    Ok(ExitCode::from(report.status.exit_code()))
}

/// `breakglass policy lint`: exit 1 when a policy file has a problem.
fn lint_policies(dir: &Path, templates: Option<&Path>, format: Format) -> anyhow::Result<ExitCode> {
    let (count, problems) = match policy::read_dir(dir) {
        Ok(files) => {
            let mut problems = policy::lint(&files);
            if let Some(templates) = templates {
                problems.extend(policy::lint::lint_templates(&files, templates));
            }
            (files.len(), problems)
        }
        Err(problems) => (0, problems),
    };
    match format {
        Format::Human if problems.is_empty() => emit(format!(
            "{count} policy file(s) in {}: no problems\n",
            dir.display()
        ))?,
        Format::Human => {
            let listed: String = problems.iter().map(|p| format!("{p}\n")).collect();
            emit(format!("{listed}{} problem(s)\n", problems.len()))?;
        }
        Format::Json => emit(format!(
            "{}\n",
            serde_json::to_string_pretty(
                &serde_json::json!({ "files": count, "problems": problems })
            )?
        ))?,
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `breakglass audit`: the report of the requests repo's history, on stdout.
fn audit_report(
    repo: &str,
    options: &AuditOptions,
    format: AuditFormat,
) -> anyhow::Result<ExitCode> {
    if let (Some(since), Some(until)) = (options.report.since, options.report.until) {
        anyhow::ensure!(
            since <= until,
            "--since ({}) is after --until ({}): no grant can be in both",
            breakglass::clock::iso(since),
            breakglass::clock::iso(until)
        );
    }
    let report = audit::run(repo, options)?;
    let format = match format {
        AuditFormat::Table => audit::Format::Table,
        AuditFormat::Json => audit::Format::Json,
        AuditFormat::Csv => audit::Format::Csv,
        AuditFormat::Markdown => audit::Format::Markdown,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match audit::render::render(&report, format, &mut out)
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        // `breakglass audit | head` is not an error.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written?,
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// A SQLite URL that opens an existing file without creating it (a check creates nothing);
/// other URLs as they are.
fn read_only_sqlite(url: &str) -> String {
    let sqlite = url.starts_with("sqlite:") && !url.contains(":memory:");
    if !sqlite || url.contains("mode=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rw")
}

/// `breakglass audit verify`: the event log's chain, and the log against git.
fn audit_verify(
    repo: &str,
    branch: Option<&str>,
    config: Option<&Path>,
    database_url: Option<String>,
    policies: Option<String>,
) -> anyhow::Result<ExitCode> {
    // The configuration is read only when something must come from it.
    let needs_config = database_url.is_none() || (policies.is_none() && config.is_some());
    let (url, policies) = if needs_config {
        let config = load_config(config)?;
        (
            database_url.unwrap_or(config.database_url),
            policies.unwrap_or(config.policies_path),
        )
    } else {
        (
            database_url.context("--database-url or --config is needed")?,
            policies.unwrap_or_else(|| "policies".to_owned()),
        )
    };
    let history = audit::read_history(repo, branch, &policies)?;
    runtime()?.block_on(async {
        let store = breakglass::store::Store::connect(&read_only_sqlite(&url))
            .await
            .with_context(|| {
                format!(
                    "cannot open the service's database {} (give it with --database-url or --config)",
                    breakglass::secret::redact_url(&url)
                )
            })?;
        let verification = audit::verify::verify(&store, &history).await?;
        emit(&verification)?;
        Ok(if verification.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BREAKGLASS_LOG")
        .unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log file or collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn serve(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = load_config(path)?;
    runtime()?.block_on(async {
        let running =
            breakglass::service::start(&config, breakglass::service::Options::default()).await?;
        stop_signal().await?;
        tracing::info!("shutting down: finishing work in flight");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C, or SIGTERM (what `kill`, systemd and Kubernetes send): both shut down gracefully.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The configuration: the file named by `--config`, which must exist, or else
/// `breakglass.toml` when there is one (the environment alone can configure the service).
fn load_config(named: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match named {
        Some(path) => Config::load_named(path, std::env::vars())?,
        None => Config::load(std::path::Path::new("breakglass.toml"), std::env::vars())?,
    })
}

fn migrate(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    runtime()?.block_on(async {
        let store = breakglass::store::Store::connect(&config.database_url).await?;
        store.migrate().await?;
        emit(format!(
            "database {} is up to date\n",
            breakglass::secret::redact_url(&config.database_url)
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Writes `text` to standard output. A reader that stopped early (`breakglass check … | head`)
/// is not an error: the exit code still says what the command found.
fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}
