//! `cargo bench --bench audit`: `breakglass audit` over a requests repo of 100k grants against
//! `git log --first-parent --format=%H%n%B` over the same repo (the target: the audit
//! within 2× of git log). A benchmark that prints figures, not a timed test: machines differ.
//!
//! The repo is generated once and cached under `target/tmp/bench-audit-repo-<n>`: 100k grant
//! merges and their revoke merges on the first-parent line, each merging a real PR commit (so
//! 400k commits in all, 200k of them first-parent), packed into one packfile like a fetched
//! repository. Objects are built in an in-memory object database (libgit2's mempack) and
//! written out as one pack at the end, which takes seconds where loose objects would take
//! minutes and gigabytes. `BREAKGLASS_BENCH_GRANTS=10000` makes a smaller one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakglass::audit::{self, AuditOptions, ReportOptions};
use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use git2::{ObjectType, Oid, Repository};

const ENVIRONMENTS: [&str; 4] = ["prod", "staging", "network", "sandbox"];
const RUNS: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a
    // quick pass: build a tiny repo then.
    let benching = std::env::args().any(|a| a == "--bench");
    let grants: usize = std::env::var("BREAKGLASS_BENCH_GRANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { 100_000 } else { 200 });
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-audit-repo-{grants}"));
    if !dir.join("bench-ready").exists() {
        let started = Instant::now();
        generate(&dir, grants);
        eprintln!("generated {} in {:.1?}", dir.display(), started.elapsed());
    }
    let location = dir.to_str().expect("a UTF-8 path");
    let options = AuditOptions {
        branch: Some("main".into()),
        policies: None,
        report: ReportOptions::new(start() + TimeDelta::days(3650)),
    };

    let mut git_times = Vec::new();
    let mut audit_times = Vec::new();
    let mut rows = 0;
    // One warm-up round each (page cache), then RUNS interleaved rounds.
    for round in 0..=RUNS {
        let git = git_log(&dir);
        let (audit, grants_seen) = audit_once(location, &options);
        rows = grants_seen;
        if round > 0 {
            git_times.push(git);
            audit_times.push(audit);
        }
    }
    assert_eq!(rows, grants, "one row per grant");
    let git = median(&mut git_times);
    let audit = median(&mut audit_times);
    println!(
        "repo: {grants} grants + {grants} revokes on the first-parent line ({} commits in all)",
        4 * grants + 1
    );
    println!(
        "git log --first-parent --format=%H%n%B: {:>8.1} ms (median of {RUNS})",
        ms(git)
    );
    println!(
        "breakglass audit (rows + JSON):       {:>8.1} ms (median of {RUNS})",
        ms(audit)
    );
    println!(
        "ratio audit / git log: {:.2} (target ≤ 2)",
        audit.as_secs_f64() / git.as_secs_f64()
    );
    phases(location, &options);

    // libgit2 re-hashes every object it reads (git does not); the audit keeps that check,
    // since it is what notices an object edited in place. Its cost, for the record:
    git2::opts::strict_hash_verification(false);
    let mut unchecked: Vec<Duration> = (0..RUNS)
        .map(|_| audit_once(location, &options).0)
        .collect();
    let unchecked = median(&mut unchecked);
    println!(
        "without libgit2's object hash check: {:.1} ms, ratio {:.2}",
        ms(unchecked),
        unchecked.as_secs_f64() / git.as_secs_f64()
    );
}

/// `git log` to /dev/null, timed from spawn to exit.
fn git_log(dir: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(["log", "--first-parent", "--format=%H%n%B", "main"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success());
    started.elapsed()
}

/// The library entry point, all rows, JSON rendered into a buffered sink (as the CLI
/// renders into buffered stdout).
fn audit_once(location: &str, options: &AuditOptions) -> (Duration, usize) {
    let started = Instant::now();
    let report = audit::run(location, options).expect("the audit runs");
    let mut sink = std::io::BufWriter::new(std::io::sink());
    audit::render::render(&report, audit::Format::Json, &mut sink).expect("renders");
    sink.flush().unwrap();
    (started.elapsed(), report.grants.len())
}

/// Where the time goes, for whoever optimizes next.
fn phases(location: &str, options: &AuditOptions) {
    let started = Instant::now();
    let source = audit::Source::open(location, None).unwrap();
    let history = audit::history::read(source.repository(), "main", "policies").unwrap();
    let read = started.elapsed();
    let started = Instant::now();
    let report = audit::report::build(history, location.into(), options.report.clone());
    let build = started.elapsed();
    let started = Instant::now();
    let mut sink = std::io::BufWriter::new(std::io::sink());
    audit::render::render(&report, audit::Format::Json, &mut sink).unwrap();
    let render = started.elapsed();
    println!(
        "phases: history walk {:.1} ms, pairing {:.1} ms, JSON {:.1} ms",
        ms(read),
        ms(build),
        ms(render)
    );
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Builds the repo in `<dir>.partial` and renames it into place when complete, so an
/// interrupted generation is never mistaken for a finished one.
fn generate(dir: &Path, grants: usize) {
    let partial: PathBuf = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(dir);
    let repo = Repository::init_bare(&partial).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let odb = repo.odb().unwrap();
    // Everything goes to memory first; the pack is written once at the end.
    let _mempack = odb.add_new_mempack_backend(1000).unwrap();

    let blob = |data: &[u8]| odb.write(ObjectType::Blob, data).unwrap();
    let tree = |entries: &[(&str, Oid, i32)]| {
        let mut builder = repo.treebuilder(None).unwrap();
        for (name, oid, mode) in entries {
            builder.insert(name, *oid, *mode).unwrap();
        }
        builder.write().unwrap()
    };
    let commit = |tree: Oid, parents: &[Oid], at: DateTime<Utc>, who: &str, message: &str| {
        // Raw commit objects: no lookups of the parents, exact control of the times.
        let mut raw = format!("tree {tree}\n");
        for parent in parents {
            raw.push_str(&format!("parent {parent}\n"));
        }
        let ts = at.timestamp();
        raw.push_str(&format!(
            "author {who} <{who}@example.com> {ts} +0000\ncommitter GitHub <noreply@github.com> {ts} +0000\n\n{message}"
        ));
        odb.write(ObjectType::Commit, raw.as_bytes()).unwrap()
    };

    let policies = tree(&[(
        "prod.yaml",
        blob(b"environment: prod\nmax_duration: 4h\n"),
        0o100644,
    )]);
    let readme = blob(b"# access requests\n");
    let base = tree(&[
        ("README.md", readme, 0o100644),
        ("policies", policies, 0o040000),
    ]);
    let mut tip = commit(base, &[], start(), "carol", "Initial policies\n");
    for i in 0..grants {
        let env = ENVIRONMENTS[i % ENVIRONMENTS.len()];
        let requester = format!("user{}", i % 500);
        let approver = format!("approver{}", i % 37);
        let id = format!("req-{i:06}-{requester}-{env}");
        let granted = start() + TimeDelta::hours(2 * i as i64 + 1);
        let expires = granted + TimeDelta::hours(1);
        let reason = format!("incident: INC-{i} checkout DB failover");
        let file = blob(
            format!(
                "environment: {env}\nrole: admin\nduration: 1h\nreason: \"{reason}\"\nticket: INC-{i}\nrequester: {requester}\n"
            )
            .as_bytes(),
        );
        let env_tree = tree(&[(&format!("{id}.yaml"), file, 0o100644)]);
        let requests = tree(&[(env, env_tree, 0o040000)]);
        let with_request = tree(&[
            ("README.md", readme, 0o100644),
            ("policies", policies, 0o040000),
            ("requests", requests, 0o040000),
        ]);
        let pr = commit(
            with_request,
            &[tip],
            granted - TimeDelta::minutes(10),
            &requester,
            &format!("request {id}\n"),
        );
        let fast = i % 10 == 0;
        let approved_by = if fast {
            "fast-path:sev1".to_owned()
        } else {
            approver.clone()
        };
        let mut message = format!(
            "breakglass: grant {id} ({env}/admin for 1h to {requester})\n\n{reason}\n\nBreakglass-Request: {id}\nBreakglass-Requester: {requester}\nBreakglass-Environment: {env}\nBreakglass-Role: admin\nBreakglass-Ticket: INC-{i}\nBreakglass-Approved-By: {approved_by}\nBreakglass-Expires: {}\n",
            iso(expires)
        );
        if fast {
            message.push_str(&format!(
                "Breakglass-Review-Due: {}\n",
                iso(granted + TimeDelta::hours(24))
            ));
        }
        let grant = commit(with_request, &[tip, pr], granted, &requester, &message);
        let revert = commit(
            base,
            &[grant],
            expires,
            "breakglass[bot]",
            &format!("breakglass: remove requests/{env}/{id}.yaml\n"),
        );
        let mut message = format!(
            "breakglass: revoke {id} (ttl)\n\nAccess of {requester} to {env}/admin ended.\n\nBreakglass-Revokes: {id}\nBreakglass-Revoked-Reason: ttl\n"
        );
        if fast {
            message.push_str(&format!("Breakglass-Reviewed-By: {approver}\n"));
        }
        tip = commit(
            base,
            &[grant, revert],
            expires + TimeDelta::seconds(20),
            "breakglass[bot]",
            &message,
        );
    }

    let mut walk = repo.revwalk().unwrap();
    walk.push(tip).unwrap();
    let mut pack = repo.packbuilder().unwrap();
    pack.set_threads(0); // as many as there are cores
    pack.insert_walk(&mut walk).unwrap();
    pack.write(&partial.join("objects/pack"), 0).unwrap();
    repo.reference("refs/heads/main", tip, true, "bench")
        .unwrap();
    std::fs::write(partial.join("bench-ready"), b"").unwrap();
    std::fs::rename(&partial, dir).unwrap();
}
