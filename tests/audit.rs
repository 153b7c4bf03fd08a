//! `breakglass audit` as an auditor runs it: real git repositories built with git2 (merge
//! commits with the bot's trailers, reverts, a direct push, a hand merge, a missing and a late
//! revert, a self-approval, a revert without its grant), the real binary, every column, every
//! anomaly, every format, the filters, the exit codes, and a URL cloned first. The last test
//! runs the real bot against the test forge and audits the history it wrote.

mod common;

use std::process::{Command, Output};

use breakglass::audit::{self, AnomalyKind, AuditOptions, ReportOptions, Review};
use breakglass::duration::HumanDuration;
use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use git2::{ObjectType, Oid, Repository, RepositoryInitOptions, Signature, Time};
use serde_json::{Value, json};

/// Every time in a story is minutes after 2026-11-26T00:00:00Z.
fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap() + TimeDelta::minutes(minutes)
}

fn iso(minutes: i64) -> String {
    t(minutes).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "Now" for the story: three days in.
const NOW: i64 = 3 * 24 * 60;

/// A requests repo built commit by commit, the way the forge and the bot build it: request
/// PRs merged with merge commits, first parent the default branch.
struct RequestsRepo {
    dir: tempfile::TempDir,
    repo: Repository,
    branch: String,
}

/// A grant merge's content.
#[derive(Clone, Copy)]
struct Grant<'a> {
    id: &'a str,
    env: &'a str,
    role: &'a str,
    requester: &'a str,
    approved_by: &'a str,
    ticket: Option<&'a str>,
    reason: &'a str,
    /// Duration in minutes.
    minutes: i64,
    /// Absolute review due time, in story minutes (fast path only).
    review_due: Option<i64>,
}

impl RequestsRepo {
    /// A repo on `main` with one commit holding the policies.
    fn new() -> Self {
        Self::on_branch("main")
    }

    fn on_branch(branch: &str) -> Self {
        let this = Self::unborn(branch);
        let tree = this.edit(None, "policies/prod.yaml", Some("environment: prod\n"));
        let root = this.commit(&[], tree, "Initial policies", 0, "carol");
        this.set_tip(root);
        this
    }

    /// A repo whose branch has no commit yet.
    fn unborn(branch: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = RepositoryInitOptions::new();
        options.initial_head(branch);
        let repo = Repository::init_opts(dir.path(), &options).unwrap();
        Self {
            dir,
            repo,
            branch: branch.to_owned(),
        }
    }

    fn path_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn tip(&self) -> Oid {
        self.repo
            .refname_to_id(&format!("refs/heads/{}", self.branch))
            .unwrap()
    }

    fn set_tip(&self, commit: Oid) {
        self.repo
            .reference(&format!("refs/heads/{}", self.branch), commit, true, "test")
            .unwrap();
    }

    /// The tree of `base` (a commit) with `path` set to `content`, or removed for `None`.
    fn edit(&self, base: Option<Oid>, path: &str, content: Option<&str>) -> Oid {
        let base = base.map(|c| self.repo.find_commit(c).unwrap().tree().unwrap());
        let blob = content.map(|c| self.repo.blob(c.as_bytes()).unwrap());
        let parts: Vec<&str> = path.split('/').collect();
        self.edit_tree(base.as_ref(), &parts, blob)
    }

    fn edit_tree(&self, base: Option<&git2::Tree<'_>>, path: &[&str], blob: Option<Oid>) -> Oid {
        let mut builder = self.repo.treebuilder(base).unwrap();
        let (name, rest) = path.split_first().unwrap();
        if rest.is_empty() {
            match blob {
                Some(blob) => {
                    builder.insert(name, blob, 0o100_644).unwrap();
                }
                None => {
                    let _ = builder.remove(name);
                }
            }
        } else {
            let sub = base
                .and_then(|tree| tree.get_name(name))
                .filter(|entry| entry.kind() == Some(ObjectType::Tree))
                .map(|entry| self.repo.find_tree(entry.id()).unwrap());
            let new_sub = self.edit_tree(sub.as_ref(), rest, blob);
            if self.repo.find_tree(new_sub).unwrap().is_empty() {
                let _ = builder.remove(name);
            } else {
                builder.insert(name, new_sub, 0o040_000).unwrap();
            }
        }
        builder.write().unwrap()
    }

    /// A repo on `main` whose first commit holds the policy files `policies` (name, text).
    fn with_policies(policies: &[(&str, &str)]) -> Self {
        let this = Self::unborn("main");
        let files: Vec<(String, Option<&str>)> = policies
            .iter()
            .map(|(name, text)| (format!("policies/{name}"), Some(*text)))
            .collect();
        let files: Vec<(&str, Option<&str>)> =
            files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
        let tree = this.edit_all(None, &files);
        let root = this.commit(&[], tree, "Initial policies", 0, "carol");
        this.set_tip(root);
        this
    }

    /// The tree of `base` (a commit) with each path set to its content, or removed for `None`.
    fn edit_all(&self, base: Option<Oid>, files: &[(&str, Option<&str>)]) -> Oid {
        let mut tree = base.map(|c| self.repo.find_commit(c).unwrap().tree_id());
        for (path, content) in files {
            let base = tree.map(|t| self.repo.find_tree(t).unwrap());
            let blob = content.map(|c| self.repo.blob(c.as_bytes()).unwrap());
            let parts: Vec<&str> = path.split('/').collect();
            tree = Some(self.edit_tree(base.as_ref(), &parts, blob));
        }
        tree.expect("a base or a file")
    }

    /// A PR branch commit changing `files`, merged into the branch with `message` at `at`.
    fn merge_files(&self, at: i64, files: &[(&str, Option<&str>)], message: &str) -> Oid {
        let base = self.tip();
        let tree = self.edit_all(Some(base), files);
        let head = self.commit(&[base], tree, "change files", at - 1, "breakglass[bot]");
        let merge = self.commit(&[base, head], tree, message, at, "breakglass[bot]");
        self.set_tip(merge);
        merge
    }

    /// Someone pushing `files` straight to the branch: one commit, one parent.
    fn push_files(&self, at: i64, files: &[(&str, Option<&str>)], who: &str) -> Oid {
        let base = self.tip();
        let tree = self.edit_all(Some(base), files);
        let commit = self.commit(&[base], tree, "quick fix", at, who);
        self.set_tip(commit);
        commit
    }

    /// A commit by mallory written byte for byte: `tree`, one `parent`, author and committer at
    /// story minute `at`, then the header lines `extra`, then `message`.
    fn raw_commit(&self, parent: Oid, tree: Oid, extra: &str, message: &str, at: i64) -> Oid {
        let time = t(at).timestamp();
        let who = "mallory <mallory@example.com>";
        let raw = format!(
            "tree {tree}\nparent {parent}\nauthor {who} {time} +0000\ncommitter {who} {time} +0000\n{extra}\n{message}"
        );
        let odb = self.repo.odb().unwrap();
        odb.write(ObjectType::Commit, raw.as_bytes()).unwrap()
    }

    /// A commit at story minute `at` (author and committer), not moving any branch.
    fn commit(&self, parents: &[Oid], tree: Oid, message: &str, at: i64, who: &str) -> Oid {
        let signature = Signature::new(
            who,
            &format!("{who}@example.com"),
            &Time::new(t(at).timestamp(), 0),
        )
        .unwrap();
        let tree = self.repo.find_tree(tree).unwrap();
        let parents: Vec<git2::Commit<'_>> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        self.repo
            .commit(None, &signature, &signature, message, &tree, &parents)
            .unwrap()
    }

    /// A PR branch commit changing `path`, merged into the branch with `message` at `at`.
    fn merge(&self, at: i64, path: &str, content: Option<&str>, message: &str, who: &str) -> Oid {
        let base = self.tip();
        let tree = self.edit(Some(base), path, content);
        let head = self.commit(&[base], tree, &format!("change {path}"), at - 1, who);
        let merge = self.commit(&[base, head], tree, message, at, "breakglass[bot]");
        self.set_tip(merge);
        merge
    }

    /// The bot merging a request PR, with the trailers of `src/workflow/trailers.rs`.
    fn grant(&self, at: i64, g: Grant<'_>) -> Oid {
        let path = format!("requests/{}/{}.yaml", g.env, g.id);
        self.merge(
            at,
            &path,
            Some(&request_yaml(&g)),
            &grant_message(at, &g),
            g.requester,
        )
    }

    /// The bot merging the revert PR of `id`.
    fn revoke(&self, at: i64, env: &str, id: &str, reason: &str, reviewer: Option<&str>) -> Oid {
        let path = format!("requests/{env}/{id}.yaml");
        let message = revoke_message(id, reason, reviewer);
        self.merge(at, &path, None, &message, "breakglass[bot]")
    }

    /// A commit on the branch that changes a policy (and no request file) with `message`.
    fn policy_change(&self, at: i64, message: &str) -> Oid {
        let content = format!("environment: prod\nchanged_at: {at}\n");
        self.merge(at, "policies/prod.yaml", Some(&content), message, "mallory")
    }

    /// The bot removing a request file that landed without it.
    fn remove_reconcile(&self, at: i64, env: &str, id: &str) -> Oid {
        let path = format!("requests/{env}/{id}.yaml");
        let message = format!(
            "breakglass: remove {id} (reconcile)\n\nFiles that reached main without breakglass: `{path}`. It was never granted.\n\nBreakglass-Revokes: {id}\nBreakglass-Revoked-Reason: reconcile\n"
        );
        self.merge(at, &path, None, &message, "breakglass[bot]")
    }

    /// Someone pushing a request file straight to the branch.
    fn direct_push(&self, at: i64, env: &str, id: &str, who: &str) -> Oid {
        let base = self.tip();
        let tree = self.edit(
            Some(base),
            &format!("requests/{env}/{id}.yaml"),
            Some("environment: prod\nrole: admin\nduration: 4h\nreason: trust me\n"),
        );
        let commit = self.commit(&[base], tree, "grant myself", at, who);
        self.set_tip(commit);
        commit
    }

    /// Someone merging a request PR by hand (a merge commit without trailers).
    fn hand_merge(&self, at: i64, env: &str, id: &str, who: &str) -> Oid {
        self.merge(
            at,
            &format!("requests/{env}/{id}.yaml"),
            Some("environment: staging\nrole: read\nduration: 1h\nreason: quick look\n"),
            &format!("Merge pull request #7 from acme/{id}\n\nAccess request {id}"),
            who,
        )
    }
}

/// The message of a grant merge, with the trailers of `src/workflow/trailers.rs`.
fn grant_message(at: i64, g: &Grant<'_>) -> String {
    let mut message = format!(
        "breakglass: grant {} ({}/{} for {} to {})\n\n{}\n\nBreakglass-Request: {}\nBreakglass-Requester: {}\nBreakglass-Environment: {}\nBreakglass-Role: {}\n",
        g.id,
        g.env,
        g.role,
        HumanDuration::from_secs(g.minutes as u64 * 60),
        g.requester,
        g.reason,
        g.id,
        g.requester,
        g.env,
        g.role
    );
    if let Some(ticket) = g.ticket {
        message.push_str(&format!("Breakglass-Ticket: {ticket}\n"));
    }
    message.push_str(&format!(
        "Breakglass-Approved-By: {}\nBreakglass-Expires: {}\n",
        g.approved_by,
        iso(at + g.minutes)
    ));
    if let Some(due) = g.review_due {
        message.push_str(&format!("Breakglass-Review-Due: {}\n", iso(due)));
    }
    message
}

/// The message of a revoke merge.
fn revoke_message(id: &str, reason: &str, reviewer: Option<&str>) -> String {
    let mut message = format!(
        "breakglass: revoke {id} ({reason})\n\nAccess ended.\n\nBreakglass-Revokes: {id}\nBreakglass-Revoked-Reason: {reason}\n"
    );
    if reason == "early" {
        message.push_str("Breakglass-Revoked-By: dave\n");
    }
    if let Some(reviewer) = reviewer {
        message.push_str(&format!("Breakglass-Reviewed-By: {reviewer}\n"));
    }
    message
}

/// The request file of a grant.
fn request_yaml(g: &Grant<'_>) -> String {
    format!(
        "environment: {}\nrole: {}\nduration: {}\nreason: {:?}\n",
        g.env,
        g.role,
        HumanDuration::from_secs(g.minutes as u64 * 60),
        g.reason
    )
}

/// The commits of the story, for the assertions.
struct Story {
    repo: RequestsRepo,
    c: std::collections::HashMap<&'static str, Oid>,
}

impl Story {
    fn id(&self, name: &str) -> String {
        self.c[name].to_string()
    }

    fn short(&self, name: &str) -> String {
        self.id(name)[..12].to_owned()
    }
}

const GRANT: Grant<'static> = Grant {
    id: "",
    env: "prod",
    role: "admin",
    requester: "",
    approved_by: "carol",
    ticket: None,
    reason: "",
    minutes: 60,
    review_due: None,
};

/// Every case of the issue in one history, in this order (minutes after 2026-11-26T00:00Z):
///
/// | at   | what |
/// |------|------|
/// | 10   | r-ttl granted (alice, prod/admin, 1h, carol), revoked at the TTL (70) |
/// | 100  | r-early granted (bob, staging/read, 2h, carol and dave), revoked early (130) |
/// | 200  | r-fast-done: fast path sev1 (erin, 45m), revoked at 245, reviewed by carol |
/// | 300  | r-fast-open: fast path sev1 (bob, 30m), revoked at 331, review due 1740: overdue |
/// | 400  | a policy change (not a request: no anomaly) |
/// | 500  | r-pushed pushed straight to main by mallory; the bot removes it (502) |
/// | 600  | r-hand merged by hand by ivan, never removed |
/// | 700  | r-missing granted (gina, 1h), never revoked |
/// | 800  | r-late granted (henry, 1h, dave), revoked at 900: 40 minutes late |
/// | 1000 | r-self granted (ivan, staging/read), approved by ivan and carol, revoked on time |
/// | 1100 | a revoke of r-ghost, which was never granted: it removes no file, its trailers are forged |
/// | 4300 | r-active granted (judy, 1h): still active at "now" (4320) |
fn story() -> Story {
    let repo = RequestsRepo::new();
    let mut c = std::collections::HashMap::new();
    c.insert("root", repo.tip());
    let grants = [
        (
            "r-ttl",
            10,
            Grant {
                id: "r-ttl",
                requester: "alice",
                ticket: Some("INC-1"),
                reason: "incident: INC-1 checkout DB failover",
                ..GRANT
            },
        ),
        (
            "r-early",
            100,
            Grant {
                id: "r-early",
                env: "staging",
                role: "read",
                requester: "bob",
                approved_by: "carol, dave",
                reason: "maintenance: rotate \"db\" creds, then verify",
                minutes: 120,
                ..GRANT
            },
        ),
        (
            "r-fast-done",
            200,
            Grant {
                id: "r-fast-done",
                requester: "erin",
                approved_by: "fast-path:sev1",
                ticket: Some("INC-2"),
                reason: "incident: INC-2 payments down",
                minutes: 45,
                review_due: Some(200 + 24 * 60),
                ..GRANT
            },
        ),
        (
            "r-fast-open",
            300,
            Grant {
                id: "r-fast-open",
                requester: "bob",
                approved_by: "fast-path:sev1",
                ticket: Some("INC-3"),
                reason: "incident: INC-3 queue stuck",
                minutes: 30,
                review_due: Some(300 + 24 * 60),
                ..GRANT
            },
        ),
    ];
    for (name, at, grant) in grants {
        c.insert(name, repo.grant(at, grant));
        let (revoke_at, how, reviewer) = match name {
            "r-ttl" => (70, "ttl", None),
            "r-early" => (130, "early", None),
            "r-fast-done" => (245, "ttl", Some("carol")),
            _ => (331, "ttl", None),
        };
        let revoke = repo.revoke(revoke_at, grant.env, grant.id, how, reviewer);
        c.insert(format!("{name} revoke").leak(), revoke);
    }
    let base = repo.tip();
    let tree = repo.edit(
        Some(base),
        "policies/prod.yaml",
        Some("environment: prod\napprovals: 2\n"),
    );
    let policy = repo.commit(&[base], tree, "Require two approvals in prod", 400, "carol");
    repo.set_tip(policy);
    c.insert("policy", policy);
    c.insert(
        "r-pushed",
        repo.direct_push(500, "prod", "r-pushed", "mallory"),
    );
    c.insert(
        "r-pushed removal",
        repo.remove_reconcile(502, "prod", "r-pushed"),
    );
    c.insert("r-hand", repo.hand_merge(600, "staging", "r-hand", "ivan"));
    c.insert(
        "r-missing",
        repo.grant(
            700,
            Grant {
                id: "r-missing",
                requester: "gina",
                ticket: Some("INC-4"),
                reason: "incident: INC-4 cache",
                ..GRANT
            },
        ),
    );
    c.insert(
        "r-late",
        repo.grant(
            800,
            Grant {
                id: "r-late",
                requester: "henry",
                approved_by: "dave",
                ticket: Some("CHG-5"),
                reason: "maintenance: CHG-5 resize",
                ..GRANT
            },
        ),
    );
    c.insert(
        "r-late revoke",
        repo.revoke(900, "prod", "r-late", "ttl", None),
    );
    c.insert(
        "r-self",
        repo.grant(
            1000,
            Grant {
                id: "r-self",
                env: "staging",
                role: "read",
                requester: "ivan",
                approved_by: "ivan, carol",
                reason: "=HYPERLINK(\"http://evil.example\")",
                ..GRANT
            },
        ),
    );
    c.insert(
        "r-self revoke",
        repo.revoke(1060, "staging", "r-self", "ttl", None),
    );
    c.insert(
        "r-ghost revoke",
        repo.revoke(1100, "prod", "r-ghost", "ttl", None),
    );
    c.insert(
        "r-active",
        repo.grant(
            4300,
            Grant {
                id: "r-active",
                requester: "judy",
                ticket: Some("INC-6"),
                reason: "incident: INC-6 on fire",
                ..GRANT
            },
        ),
    );
    Story { repo, c }
}

fn breakglass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `breakglass audit --repo <repo> --now <NOW> <args>`.
fn audit_cli(repo: &str, args: &[&str]) -> Output {
    let now = iso(NOW);
    let mut all = vec!["audit", "--repo", repo, "--now", &now];
    all.extend_from_slice(args);
    breakglass(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}{}", stdout(output), stderr(output)))
}

fn ids(document: &Value) -> Vec<&str> {
    document["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["request_id"].as_str().unwrap())
        .collect()
}

fn anomaly_kinds(document: &Value) -> Vec<(&str, &str)> {
    document["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap(),
                a["request_id"].as_str().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_grant_is_one_row_with_every_column() {
    let s = story();
    let out = audit_cli(s.repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let document = json_of(&out);
    let review = |status: &str, due: Option<i64>, by: Option<&str>| json!({ "status": status, "due": due.map(iso), "reviewed_by": by });
    let expected = json!([
        {
            "request_id": "r-ttl", "requester": "alice", "environment": "prod", "role": "admin",
            "reason": "incident: INC-1 checkout DB failover", "ticket": "INC-1",
            "approved_by": "carol", "approvers": ["carol"],
            "granted_at": iso(10), "expires_at": iso(70), "revoked_at": iso(70), "revoked_how": "ttl", "revoked_by": null,
            "review": review("not_needed", None, None),
            "grant_commit": s.id("r-ttl"), "revoke_commit": s.id("r-ttl revoke"), "anomalies": []
        },
        {
            "request_id": "r-early", "requester": "bob", "environment": "staging", "role": "read",
            "reason": "maintenance: rotate \"db\" creds, then verify", "ticket": null,
            "approved_by": "carol, dave", "approvers": ["carol", "dave"],
            "granted_at": iso(100), "expires_at": iso(220), "revoked_at": iso(130), "revoked_how": "early", "revoked_by": "dave",
            "review": review("not_needed", None, None),
            "grant_commit": s.id("r-early"), "revoke_commit": s.id("r-early revoke"), "anomalies": []
        },
        {
            "request_id": "r-fast-done", "requester": "erin", "environment": "prod", "role": "admin",
            "reason": "incident: INC-2 payments down", "ticket": "INC-2",
            "approved_by": "fast-path:sev1", "approvers": [],
            "granted_at": iso(200), "expires_at": iso(245), "revoked_at": iso(245), "revoked_how": "ttl", "revoked_by": null,
            "review": review("done", None, Some("carol")),
            "grant_commit": s.id("r-fast-done"), "revoke_commit": s.id("r-fast-done revoke"), "anomalies": []
        },
        {
            "request_id": "r-fast-open", "requester": "bob", "environment": "prod", "role": "admin",
            "reason": "incident: INC-3 queue stuck", "ticket": "INC-3",
            "approved_by": "fast-path:sev1", "approvers": [],
            "granted_at": iso(300), "expires_at": iso(330), "revoked_at": iso(331), "revoked_how": "ttl", "revoked_by": null,
            "review": review("overdue", Some(1740), None),
            "grant_commit": s.id("r-fast-open"), "revoke_commit": s.id("r-fast-open revoke"),
            "anomalies": ["review_overdue"]
        },
        {
            "request_id": "r-missing", "requester": "gina", "environment": "prod", "role": "admin",
            "reason": "incident: INC-4 cache", "ticket": "INC-4",
            "approved_by": "carol", "approvers": ["carol"],
            "granted_at": iso(700), "expires_at": iso(760), "revoked_at": null, "revoked_how": null, "revoked_by": null,
            "review": review("not_needed", None, None),
            "grant_commit": s.id("r-missing"), "revoke_commit": null,
            "anomalies": ["grant_without_revert"]
        },
        {
            "request_id": "r-late", "requester": "henry", "environment": "prod", "role": "admin",
            "reason": "maintenance: CHG-5 resize", "ticket": "CHG-5",
            "approved_by": "dave", "approvers": ["dave"],
            "granted_at": iso(800), "expires_at": iso(860), "revoked_at": iso(900), "revoked_how": "ttl", "revoked_by": null,
            "review": review("not_needed", None, None),
            "grant_commit": s.id("r-late"), "revoke_commit": s.id("r-late revoke"),
            "anomalies": ["late_revert"]
        },
        {
            "request_id": "r-self", "requester": "ivan", "environment": "staging", "role": "read",
            "reason": "=HYPERLINK(\"http://evil.example\")", "ticket": null,
            "approved_by": "ivan, carol", "approvers": ["ivan", "carol"],
            "granted_at": iso(1000), "expires_at": iso(1060), "revoked_at": iso(1060), "revoked_how": "ttl", "revoked_by": null,
            "review": review("not_needed", None, None),
            "grant_commit": s.id("r-self"), "revoke_commit": s.id("r-self revoke"),
            "anomalies": ["self_approved"]
        },
        {
            "request_id": "r-active", "requester": "judy", "environment": "prod", "role": "admin",
            "reason": "incident: INC-6 on fire", "ticket": "INC-6",
            "approved_by": "carol", "approvers": ["carol"],
            "granted_at": iso(4300), "expires_at": iso(4360), "revoked_at": null, "revoked_how": null, "revoked_by": null,
            "review": review("not_needed", None, None),
            "grant_commit": s.id("r-active"), "revoke_commit": null, "anomalies": []
        },
    ]);
    let grants = document["grants"].as_array().unwrap();
    let expected = expected.as_array().unwrap();
    assert_eq!(grants.len(), expected.len(), "{:?}", ids(&document));
    for (got, want) in grants.iter().zip(expected) {
        assert_eq!(got, want, "row {}", want["request_id"]);
    }
}

#[test]
fn every_anomaly_is_listed_in_history_order_with_its_commit_and_detail() {
    let s = story();
    let document = json_of(&audit_cli(s.repo.path_str(), &["--format", "json"]));
    let expected = json!([
        {
            "kind": "review_overdue", "request_id": "r-fast-open", "commit": s.id("r-fast-open"),
            "detail": "fast-path review was due at 2026-11-27T05:00:00Z, 43h ago, and none is recorded"
        },
        {
            "kind": "landed_without_bot", "request_id": "r-pushed", "commit": s.id("r-pushed"),
            "detail": format!(
                "requests/prod/r-pushed.yaml was added without breakglass; removed by {} at 2026-11-26T08:22:00Z (reconcile)",
                s.short("r-pushed removal")
            )
        },
        {
            "kind": "landed_without_bot", "request_id": "r-hand", "commit": s.id("r-hand"),
            "detail": "requests/staging/r-hand.yaml was added without breakglass; no reconcile removal on the branch"
        },
        {
            "kind": "grant_without_revert", "request_id": "r-missing", "commit": s.id("r-missing"),
            "detail": "expired at 2026-11-26T12:40:00Z, 59h20m ago; no revoke merge on main (grace 5m)"
        },
        {
            "kind": "late_revert", "request_id": "r-late", "commit": s.id("r-late revoke"),
            "detail": "revoked at 2026-11-26T15:00:00Z, 40m after the expiry 2026-11-26T14:20:00Z (grace 5m)"
        },
        {
            "kind": "self_approved", "request_id": "r-self", "commit": s.id("r-self"),
            "detail": "requester ivan is among the approvers (ivan, carol)"
        },
        {
            "kind": "forged_trailers", "request_id": "r-ghost", "commit": s.id("r-ghost revoke"),
            "detail": "not counted as a revoke: Breakglass-Revokes: r-ghost (ttl) but the commit does not remove requests/<environment>/r-ghost.yaml"
        },
    ]);
    assert_eq!(document["anomalies"], expected);
}

#[test]
fn the_json_document_has_the_documented_shape() {
    let s = story();
    let out = audit_cli(s.repo.path_str(), &["--format", "json"]);
    let document = json_of(&out);
    let text = stdout(&out);
    // Keys in the documented order, as written (serde_json's `Value` sorts them).
    let keys_in_order = |keys: &[&str], within: &str| {
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| {
                within
                    .find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{k}"))
            })
            .collect();
        assert!(positions.is_sorted(), "{keys:?} at {positions:?}");
    };
    let keys: Vec<&str> = document
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let top = [
        "schema_version",
        "generated_at",
        "repository",
        "branch",
        "head",
        "filters",
        "grants",
        "anomalies",
    ];
    keys_in_order(&top, &text);
    let mut sorted = top.to_vec();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(document["schema_version"], 1);
    assert_eq!(document["generated_at"], iso(NOW));
    assert_eq!(document["repository"], s.repo.path_str());
    assert_eq!(document["branch"], "main");
    assert_eq!(document["head"], s.id("r-active"));
    assert_eq!(
        document["filters"],
        json!({ "since": null, "until": null, "environment": null, "grace": "5m" })
    );
    let row_keys: Vec<&str> = document["grants"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let columns = [
        "request_id",
        "requester",
        "environment",
        "role",
        "reason",
        "ticket",
        "approved_by",
        "approvers",
        "granted_at",
        "expires_at",
        "revoked_at",
        "revoked_how",
        "revoked_by",
        "review",
        "grant_commit",
        "revoke_commit",
        "anomalies",
    ];
    let first_row = &text[text.find("\"grants\"").unwrap()..];
    keys_in_order(&columns, first_row);
    let mut sorted = columns.to_vec();
    sorted.sort();
    assert_eq!(row_keys, sorted);
    assert_eq!(
        document["anomalies"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["commit", "detail", "kind", "request_id"]
    );
}

#[test]
fn the_table_is_aligned_for_a_terminal() {
    let s = story();
    let out = audit_cli(s.repo.path_str(), &[]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out), @r#"
        REQUEST      REQUESTER  ENVIRONMENT  ROLE   APPROVED BY     TICKET  GRANTED AT            EXPIRES AT            REVOKED AT            REVOKED HOW  REVOKED BY  REVIEW                              GRANT         REVOKE        ANOMALIES             REASON
        r-ttl        alice      prod         admin  carol           INC-1   2026-11-26T00:10:00Z  2026-11-26T01:10:00Z  2026-11-26T01:10:00Z  ttl          -           not needed                          f0e5d7a45197  4c95da1cb13b  -                     incident: INC-1 checkout DB failover
        r-early      bob        staging      read   carol, dave     -       2026-11-26T01:40:00Z  2026-11-26T03:40:00Z  2026-11-26T02:10:00Z  early        dave        not needed                          084a1ba1c811  ca70cdac21c6  -                     maintenance: rotate "db" creds, then verify
        r-fast-done  erin       prod         admin  fast-path:sev1  INC-2   2026-11-26T03:20:00Z  2026-11-26T04:05:00Z  2026-11-26T04:05:00Z  ttl          -           done by carol                       13e7f3fcc88d  86a1eb898785  -                     incident: INC-2 payments down
        r-fast-open  bob        prod         admin  fast-path:sev1  INC-3   2026-11-26T05:00:00Z  2026-11-26T05:30:00Z  2026-11-26T05:31:00Z  ttl          -           overdue (due 2026-11-27T05:00:00Z)  b36c0202a049  90fb8f3bbbcc  review_overdue        incident: INC-3 queue stuck
        r-missing    gina       prod         admin  carol           INC-4   2026-11-26T11:40:00Z  2026-11-26T12:40:00Z  -                     -            -           not needed                          a349b2ee22c5  -             grant_without_revert  incident: INC-4 cache
        r-late       henry      prod         admin  dave            CHG-5   2026-11-26T13:20:00Z  2026-11-26T14:20:00Z  2026-11-26T15:00:00Z  ttl          -           not needed                          0f06c384724b  84a2a6a5363a  late_revert           maintenance: CHG-5 resize
        r-self       ivan       staging      read   ivan, carol     -       2026-11-26T16:40:00Z  2026-11-26T17:40:00Z  2026-11-26T17:40:00Z  ttl          -           not needed                          64b1d98f9744  872bb6fcc1df  self_approved         =HYPERLINK("http://evil.example")
        r-active     judy       prod         admin  carol           INC-6   2026-11-28T23:40:00Z  2026-11-29T00:40:00Z  -                     -            -           not needed                          88b2f24c11f8  -             -                     incident: INC-6 on fire

        8 grant(s) on main at 88b2f24c11f8, 7 anomalies

        ANOMALY               REQUEST      COMMIT        DETAIL
        review_overdue        r-fast-open  b36c0202a049  fast-path review was due at 2026-11-27T05:00:00Z, 43h ago, and none is recorded
        landed_without_bot    r-pushed     373871b3f94f  requests/prod/r-pushed.yaml was added without breakglass; removed by 72684d605774 at 2026-11-26T08:22:00Z (reconcile)
        landed_without_bot    r-hand       de21f68768d1  requests/staging/r-hand.yaml was added without breakglass; no reconcile removal on the branch
        grant_without_revert  r-missing    a349b2ee22c5  expired at 2026-11-26T12:40:00Z, 59h20m ago; no revoke merge on main (grace 5m)
        late_revert           r-late       84a2a6a5363a  revoked at 2026-11-26T15:00:00Z, 40m after the expiry 2026-11-26T14:20:00Z (grace 5m)
        self_approved         r-self       64b1d98f9744  requester ivan is among the approvers (ivan, carol)
        forged_trailers       r-ghost      6b6c12e5d19e  not counted as a revoke: Breakglass-Revokes: r-ghost (ttl) but the commit does not remove requests/<environment>/r-ghost.yaml
    "#);
}

#[test]
fn markdown_is_a_table() {
    let s = story();
    let out = audit_cli(s.repo.path_str(), &["--format", "markdown"]);
    assert_eq!(out.status.code(), Some(1));
    // The invisible word joiner that keeps a link inert, shown as `{WJ}`.
    insta::assert_snapshot!(stdout(&out).replace('\u{2060}', "{WJ}"), @r#"
        | Request | Requester | Environment | Role | Approved by | Ticket | Granted at | Expires at | Revoked at | Revoked how | Revoked by | Review | Grant | Revoke | Anomalies | Reason |
        | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
        | r-ttl | alice | prod | admin | carol | INC-1 | 2026-11-26T00:10:00Z | 2026-11-26T01:10:00Z | 2026-11-26T01:10:00Z | ttl | - | not needed | f0e5d7a45197 | 4c95da1cb13b | - | incident: INC-1 checkout DB failover |
        | r-early | bob | staging | read | carol, dave | - | 2026-11-26T01:40:00Z | 2026-11-26T03:40:00Z | 2026-11-26T02:10:00Z | early | dave | not needed | 084a1ba1c811 | ca70cdac21c6 | - | maintenance: rotate "db" creds, then verify |
        | r-fast-done | erin | prod | admin | fast-path:sev1 | INC-2 | 2026-11-26T03:20:00Z | 2026-11-26T04:05:00Z | 2026-11-26T04:05:00Z | ttl | - | done by carol | 13e7f3fcc88d | 86a1eb898785 | - | incident: INC-2 payments down |
        | r-fast-open | bob | prod | admin | fast-path:sev1 | INC-3 | 2026-11-26T05:00:00Z | 2026-11-26T05:30:00Z | 2026-11-26T05:31:00Z | ttl | - | overdue (due 2026-11-27T05:00:00Z) | b36c0202a049 | 90fb8f3bbbcc | review\_overdue | incident: INC-3 queue stuck |
        | r-missing | gina | prod | admin | carol | INC-4 | 2026-11-26T11:40:00Z | 2026-11-26T12:40:00Z | - | - | - | not needed | a349b2ee22c5 | - | grant\_without\_revert | incident: INC-4 cache |
        | r-late | henry | prod | admin | dave | CHG-5 | 2026-11-26T13:20:00Z | 2026-11-26T14:20:00Z | 2026-11-26T15:00:00Z | ttl | - | not needed | 0f06c384724b | 84a2a6a5363a | late\_revert | maintenance: CHG-5 resize |
        | r-self | ivan | staging | read | ivan, carol | - | 2026-11-26T16:40:00Z | 2026-11-26T17:40:00Z | 2026-11-26T17:40:00Z | ttl | - | not needed | 64b1d98f9744 | 872bb6fcc1df | self\_approved | =HYPERLINK("http:{WJ}//evil.example") |
        | r-active | judy | prod | admin | carol | INC-6 | 2026-11-28T23:40:00Z | 2026-11-29T00:40:00Z | - | - | - | not needed | 88b2f24c11f8 | - | - | incident: INC-6 on fire |

        | Anomaly | Request | Commit | Detail |
        | --- | --- | --- | --- |
        | review_overdue | r-fast-open | b36c0202a049 | fast-path review was due at 2026-11-27T05:00:00Z, 43h ago, and none is recorded |
        | landed_without_bot | r-pushed | 373871b3f94f | requests/prod/r-pushed.yaml was added without breakglass; removed by 72684d605774 at 2026-11-26T08:22:00Z (reconcile) |
        | landed_without_bot | r-hand | de21f68768d1 | requests/staging/r-hand.yaml was added without breakglass; no reconcile removal on the branch |
        | grant_without_revert | r-missing | a349b2ee22c5 | expired at 2026-11-26T12:40:00Z, 59h20m ago; no revoke merge on main (grace 5m) |
        | late_revert | r-late | 84a2a6a5363a | revoked at 2026-11-26T15:00:00Z, 40m after the expiry 2026-11-26T14:20:00Z (grace 5m) |
        | self_approved | r-self | 64b1d98f9744 | requester ivan is among the approvers (ivan, carol) |
        | forged_trailers | r-ghost | 6b6c12e5d19e | not counted as a revoke: Breakglass-Revokes: r-ghost (ttl) but the commit does not remove requests/\<environment\>/r-ghost.yaml |
    "#);
}

/// A minimal RFC 4180 reader: quoted fields, doubled quotes, CRLF record ends (and it fails
/// on a bare LF outside quotes, which a strict spreadsheet import would misread).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("a bare LF outside quotes"),
            c => field.push(c),
        }
    }
    assert!(
        record.is_empty() && field.is_empty() && !quoted,
        "the last record ends with CRLF"
    );
    records
}

#[test]
fn csv_loads_as_is_and_round_trips() {
    let s = story();
    let out = audit_cli(s.repo.path_str(), &["--format", "csv"]);
    assert_eq!(out.status.code(), Some(1));
    let records = parse_csv(&stdout(&out));
    let document = json_of(&audit_cli(s.repo.path_str(), &["--format", "json"]));
    let header = &records[0];
    assert_eq!(
        header,
        &[
            "request_id",
            "requester",
            "environment",
            "role",
            "reason",
            "ticket",
            "approved_by",
            "granted_at",
            "expires_at",
            "revoked_at",
            "revoked_how",
            "revoked_by",
            "review",
            "grant_commit",
            "revoke_commit",
            "anomalies"
        ]
    );
    let grants = document["grants"].as_array().unwrap();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    // One record per grant, then one per anomaly that no grant carries (as the JSON's
    // anomalies list them, in history order), only its request and kind filled.
    let on_a_grant = |anomaly: &Value| {
        grants.iter().any(|g| {
            g["request_id"] == anomaly["request_id"]
                && g["anomalies"]
                    .as_array()
                    .unwrap()
                    .contains(&anomaly["kind"])
        })
    };
    let loose: Vec<(String, String)> = document["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !on_a_grant(a))
        .map(|a| (text(&a["request_id"]), text(&a["kind"])))
        .collect();
    assert!(
        loose.contains(&("r-hand".into(), "landed_without_bot".into())),
        "{loose:?}"
    );
    assert_eq!(records.len() - 1, grants.len() + loose.len());
    for (record, (id, kind)) in records[1 + grants.len()..].iter().zip(&loose) {
        let filled: Vec<&str> = record
            .iter()
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(filled, [id.as_str(), kind.as_str()], "{record:?}");
    }
    for (record, grant) in records[1..].iter().zip(grants) {
        assert_eq!(record.len(), header.len());
        for (key, cell) in header.iter().zip(record) {
            let expected = match key.as_str() {
                "review" => continue,
                "anomalies" => grant["anomalies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(";"),
                // A spreadsheet would run it as a formula: it is defused with a leading '.
                "reason" if text(&grant[key]).starts_with('=') => {
                    format!("'{}", text(&grant[key]))
                }
                key => text(&grant[key]),
            };
            assert_eq!(cell, &expected, "{key} of {}", grant["request_id"]);
        }
    }
    let review: Vec<&str> = records[1..=grants.len()]
        .iter()
        .map(|r| r[12].as_str())
        .collect();
    assert_eq!(
        review,
        [
            "not needed",
            "not needed",
            "done by carol",
            "overdue (due 2026-11-27T05:00:00Z)",
            "not needed",
            "not needed",
            "not needed",
            "not needed"
        ]
    );
    assert_eq!(
        records[2][4], "maintenance: rotate \"db\" creds, then verify",
        "quotes and commas survive"
    );
    assert_eq!(records[7][4], "'=HYPERLINK(\"http://evil.example\")");
}

#[test]
fn filters_by_period_and_environment() {
    let s = story();
    let path = s.repo.path_str();
    let run = |args: &[&str]| {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = audit_cli(path, &all);
        let code = out.status.code();
        (json_of(&out), code)
    };

    let (document, code) = run(&["--environment", "staging"]);
    assert_eq!(ids(&document), ["r-early", "r-self"]);
    assert_eq!(
        anomaly_kinds(&document),
        [
            ("landed_without_bot", "r-hand"),
            ("self_approved", "r-self"),
            // Forged trailers name no trustworthy environment: no filter rules them out.
            ("forged_trailers", "r-ghost"),
        ]
    );
    assert_eq!(document["filters"]["environment"], "staging");
    assert_eq!(code, Some(1));

    // r-missing was granted before the period and never reverted: still there in it. So is
    // r-hand's file, which landed before it and was never removed.
    let (document, _) = run(&["--since", "2026-11-26T16:00:00Z", "--until", "2026-11-28"]);
    assert_eq!(ids(&document), ["r-missing", "r-self", "r-active"]);
    assert_eq!(
        anomaly_kinds(&document),
        [
            ("landed_without_bot", "r-hand"),
            ("grant_without_revert", "r-missing"),
            ("self_approved", "r-self"),
            ("forged_trailers", "r-ghost"), // at 18:20, inside the period
        ]
    );

    let (document, code) = run(&["--until", "2026-11-26T02:00:00Z"]);
    assert_eq!(ids(&document), ["r-ttl", "r-early"]);
    assert_eq!(anomaly_kinds(&document), []);
    assert_eq!(code, Some(0), "no anomaly in the period");

    // A nightly audit keeps reporting a grant still wrong: r-missing, granted the day before
    // and never reverted; and a file that landed without the bot and is still there.
    let (document, code) = run(&["--since", "2026-11-27"]);
    assert_eq!(ids(&document), ["r-missing", "r-active"]);
    assert_eq!(
        anomaly_kinds(&document),
        [
            ("landed_without_bot", "r-hand"),
            ("grant_without_revert", "r-missing")
        ]
    );
    assert_eq!(document["filters"]["since"], "2026-11-27T00:00:00Z");
    assert_eq!(code, Some(1));
    // A time before the report's: the last two days of the story (three days in).
    let (document, _) = run(&["--since", "2d"]);
    assert_eq!(document["filters"]["since"], "2026-11-27T00:00:00Z");
    assert_eq!(ids(&document), ["r-missing", "r-active"]);

    // A date alone for --until means through the end of that day.
    let (document, _) = run(&["--until", "2026-11-26"]);
    assert_eq!(document["filters"]["until"], "2026-11-26T23:59:59Z");
    assert_eq!(ids(&document).len(), 7, "all but r-active");

    // Bounds are inclusive: r-fast-open was granted at 05:00:00 exactly.
    let (document, _) = run(&["--environment", "prod", "--since", "2026-11-26T05:00:00Z"]);
    assert_eq!(
        ids(&document),
        ["r-fast-open", "r-missing", "r-late", "r-active"]
    );
    assert_eq!(
        anomaly_kinds(&document),
        [
            ("review_overdue", "r-fast-open"),
            ("landed_without_bot", "r-pushed"),
            ("grant_without_revert", "r-missing"),
            ("late_revert", "r-late"),
            ("forged_trailers", "r-ghost"),
        ]
    );
}

#[test]
fn the_grace_and_now_decide_what_is_late_or_overdue() {
    let s = story();
    let path = s.repo.path_str();
    let out = audit_cli(path, &["--format", "json", "--grace", "1h"]);
    let document = json_of(&out);
    assert!(
        !anomaly_kinds(&document).contains(&("late_revert", "r-late")),
        "40 minutes late is within a 1h grace"
    );
    assert_eq!(document["filters"]["grace"], "1h");

    let earlier = iso(1000);
    let out = breakglass(&[
        "audit", "--repo", path, "--now", &earlier, "--format", "json",
    ]);
    let document = json_of(&out);
    assert_eq!(
        document["grants"][3]["review"],
        json!({ "status": "pending", "due": iso(1740), "reviewed_by": null })
    );
    assert!(!anomaly_kinds(&document).contains(&("review_overdue", "r-fast-open")));

    let out = audit_cli(path, &["--grace", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--grace"), "{}", stderr(&out));
}

#[test]
fn exit_codes() {
    let clean = RequestsRepo::new();
    clean.grant(
        10,
        Grant {
            id: "r-1",
            requester: "alice",
            reason: "incident: INC-1",
            ..GRANT
        },
    );
    clean.revoke(70, "prod", "r-1", "ttl", None);
    let out = audit_cli(clean.path_str(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 grant(s) on main"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("0 anomalies"), "{}", stdout(&out));

    let s = story();
    assert_eq!(audit_cli(s.repo.path_str(), &[]).status.code(), Some(1));

    let not_a_repo = tempfile::tempdir().unwrap();
    let out = audit_cli(not_a_repo.path().to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot open the repository"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    let out = audit_cli(s.repo.path_str(), &["--branch", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("branch `nope` not found"),
        "{}",
        stderr(&out)
    );

    let out = audit_cli(s.repo.path_str(), &["--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("YYYY-MM-DD"), "{}", stderr(&out));

    // An empty window is a mistake, not a clean report.
    let out = audit_cli(
        s.repo.path_str(),
        &["--since", "2026-11-27", "--until", "2026-11-26"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--since (2026-11-27T00:00:00Z) is after --until (2026-11-26T"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_url_is_cloned_first() {
    let s = story();
    let url = format!("file://{}", s.repo.path_str());
    let local = json_of(&audit_cli(s.repo.path_str(), &["--format", "json"]));
    for extra in [&[][..], &["--branch", "main"][..]] {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let out = audit_cli(&url, &args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let mut cloned = json_of(&out);
        assert_eq!(cloned["repository"], url.as_str());
        cloned["repository"] = local["repository"].clone();
        assert_eq!(cloned, local, "the clone reads the same history");
    }

    let missing = tempfile::tempdir().unwrap();
    let url = format!("file://{}/nothing-here", missing.path().display());
    let out = audit_cli(&url, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot clone"), "{}", stderr(&out));
}

#[test]
fn the_default_branch_is_the_head_branch() {
    let repo = RequestsRepo::on_branch("trunk");
    repo.grant(
        10,
        Grant {
            id: "r-1",
            requester: "alice",
            reason: "incident: INC-1",
            ..GRANT
        },
    );
    repo.revoke(70, "prod", "r-1", "ttl", None);
    let root = repo
        .repo
        .find_commit(repo.tip())
        .unwrap()
        .parent(0)
        .unwrap()
        .parent(0)
        .unwrap();
    repo.repo.branch("other", &root, false).unwrap();

    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(document["branch"], "trunk");
    assert_eq!(ids(&document), ["r-1"]);

    let document = json_of(&audit_cli(
        repo.path_str(),
        &["--format", "json", "--branch", "other"],
    ));
    assert_eq!(document["branch"], "other");
    assert_eq!(ids(&document), Vec::<&str>::new());
}

#[test]
fn an_empty_history_has_no_grants() {
    let repo = RequestsRepo::new();
    let out = audit_cli(repo.path_str(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @r#"
    no grants on main

    0 grant(s) on main at fabf7ffd0ddc, 0 anomalies
    "#);

    let unborn = RequestsRepo::unborn("main");
    let out = audit_cli(unborn.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let document = json_of(&out);
    assert_eq!(document["head"], Value::Null);
    assert_eq!(document["grants"], json!([]));

    let out = audit_cli(repo.path_str(), &["--format", "markdown"]);
    assert_eq!(stdout(&out), "No grants on main.\n\nNo anomalies.\n");
    let out = audit_cli(repo.path_str(), &["--format", "csv"]);
    assert_eq!(parse_csv(&stdout(&out)).len(), 1, "the header alone");
}

#[test]
fn a_request_file_in_the_first_commit_landed_without_the_bot() {
    let repo = RequestsRepo::unborn("main");
    let tree = repo.edit(None, "requests/prod/r-root.yaml", Some("role: admin\n"));
    let root = repo.commit(&[], tree, "import", 0, "mallory");
    repo.set_tip(root);
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(anomaly_kinds(&document), [("landed_without_bot", "r-root")]);
    assert_eq!(document["anomalies"][0]["commit"], root.to_string());
}

#[test]
fn a_shallow_clone_is_refused() {
    let s = story();
    let shallow = tempfile::tempdir().unwrap();
    let target = shallow.path().join("shallow");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--depth", "2"])
        .arg(format!("file://{}", s.repo.path_str()))
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    let out = audit_cli(target.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("shallow clone"), "{}", stderr(&out));
}

#[test]
fn odd_commit_messages_are_read_or_ignored_never_fatal() {
    let repo = RequestsRepo::new();
    // CRLF line ends and trailers the bot does not write, around the ones it does.
    let base = repo.tip();
    let tree = repo.edit(
        Some(base),
        "requests/prod/r-crlf.yaml",
        Some("role: admin\n"),
    );
    let head = repo.commit(&[base], tree, "request", 9, "alice");
    let message = "breakglass: grant r-crlf (prod/admin for 1h to alice)\r\n\r\nincident: INC-7 \r\n\r\nSigned-off-by: Alice <alice@example.com>\r\nBreakglass-Request: r-crlf\r\nBreakglass-Requester: alice\r\nBreakglass-Environment: prod\r\nBreakglass-Role: admin\r\nbreakglass-approved-by: carol\r\nBreakglass-Expires: 2026-11-26T01:10:00Z\r\nCo-authored-by: Bob <bob@example.com>\r\n";
    let grant = repo.commit(&[base, head], tree, message, 10, "breakglass[bot]");
    repo.set_tip(grant);
    // A message that is not UTF-8, and a huge one: neither is the bot's.
    let odb = repo.repo.odb().unwrap();
    let mut raw = format!(
        "tree {}\nparent {}\nauthor x <x@x> {} +0000\ncommitter x <x@x> {} +0000\nencoding ISO-8859-1\n\n",
        repo.repo.find_commit(grant).unwrap().tree_id(),
        grant,
        t(20).timestamp(),
        t(20).timestamp()
    )
    .into_bytes();
    raw.extend_from_slice(b"caf\xE9 \xFF\n\nBreakglass-Request\xFF: x\n");
    let latin1 = odb.write(ObjectType::Commit, &raw).unwrap();
    repo.set_tip(latin1);
    let huge = format!("notes\n\n{}\n\nBreakglass-Note: x\n", "y".repeat(4 << 20));
    let tree = repo.repo.find_commit(latin1).unwrap().tree_id();
    let huge = repo.commit(&[latin1], tree, &huge, 30, "carol");
    repo.set_tip(huge);
    repo.revoke(70, "prod", "r-crlf", "ttl", None);

    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let document = json_of(&out);
    let row = &document["grants"][0];
    assert_eq!(row["request_id"], "r-crlf");
    assert_eq!(row["reason"], "incident: INC-7");
    assert_eq!(row["approved_by"], "carol");
    assert_eq!(row["expires_at"], iso(70));
    assert_eq!(row["revoked_how"], "ttl");
    assert_eq!(document["anomalies"], json!([]));
}

#[test]
fn a_grant_with_broken_trailers_is_reported_not_dropped() {
    let repo = RequestsRepo::new();
    let message = "breakglass: grant r-odd\n\nwhy\n\nBreakglass-Request: r-odd\nBreakglass-Requester: alice\nBreakglass-Expires: next tuesday\n";
    repo.merge(10, "requests/prod/r-odd.yaml", Some("x: y\n"), message, "x");
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(document["grants"][0]["expires_at"], Value::Null);
    // The environment comes from the file's directory; the file names no role.
    assert_eq!(document["grants"][0]["environment"], "prod");
    assert_eq!(document["grants"][0]["role"], "");
    assert_eq!(
        document["anomalies"],
        json!([{
            "kind": "malformed_trailers",
            "request_id": "r-odd",
            "commit": repo.tip().to_string(),
            "detail": "missing Breakglass-Role, Breakglass-Approved-By; requests/prod/r-odd.yaml names no role (line 1, column 1: unknown field `x`, expected one of environment, role, duration, reason, ticket, requester); Breakglass-Expires `next tuesday` is not an ISO 8601 time"
        }])
    );
}

#[test]
fn the_library_gives_typed_rows() {
    let s = story();
    let options = AuditOptions {
        branch: None,
        policies: None,
        report: ReportOptions::new(t(NOW)),
    };
    let report = audit::run(s.repo.path_str(), &options).unwrap();
    assert_eq!(report.branch, "main");
    assert_eq!(report.head, Some(s.c["r-active"]));
    assert_eq!(report.grants.len(), 8);
    assert_eq!(report.grants[2].review, Review::Done { by: "carol".into() });
    assert_eq!(report.grants[2].fast_path_rule(), Some("sev1"));
    assert_eq!(
        report.anomalies.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [
            AnomalyKind::ReviewOverdue,
            AnomalyKind::LandedWithoutBot,
            AnomalyKind::LandedWithoutBot,
            AnomalyKind::GrantWithoutRevert,
            AnomalyKind::LateRevert,
            AnomalyKind::SelfApproved,
            AnomalyKind::ForgedTrailers,
        ]
    );
    assert_eq!(report.exit_code(), 1);
    let mut json = Vec::new();
    audit::render::render(&report, audit::Format::Json, &mut json).unwrap();
    let cli = audit_cli(s.repo.path_str(), &["--format", "json"]);
    assert_eq!(json, cli.stdout, "the CLI prints what the library renders");
}

/// The real bot against the test forge: what it merges is what the audit reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_reads_what_the_bot_writes() {
    use breakglass::clock::Clock as _;
    use common::*;
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    // alice asks, carol approves, the TTL passes.
    let pr = s.open_request(&s.people.alice, "prod", "r-story", &prod_request("1h"));
    s.settle().await;
    s.approve(pr, &s.people.carol);
    s.settle().await;
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    // bob, on call, takes the sev1 fast path.
    let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 payments down\nticket: INC-9\n";
    s.forge.push_files(
        REPO,
        "b-sev1",
        &s.people.bob,
        &[("requests/prod/r-sev1.yaml", yaml)],
        "request",
    );
    let sev1 = s.before_the_bot_hears(|| {
        let sev1 = s.forge.open_pr(REPO, &s.people.bob, "b-sev1", "sev1", "");
        s.forge.label(REPO, sev1, &s.people.bob, "sev1");
        sev1
    });
    s.settle().await;
    s.advance(TimeDelta::minutes(45));
    s.settle().await;
    // mallory pushes a request straight to main; the bot removes it.
    s.mallory_pushes_a_request_to_main();
    s.settle().await;
    let story = [
        "✅ **Request `r-story` is allowed**",
        "🔓 **Access granted.**",
        "🔒 **Access revoked**",
    ];
    s.expect_bot_comments(pr, &story);
    // On a fast path the verdict is said with the grant.
    let fast = ["🔓 **Access granted.**", "🔒 **Access revoked**"];
    s.expect_bot_comments(sev1, &fast);
    // The bot's own removal change, the one after the sev1 request's revert.
    let removal = sev1 + 2;
    assert!(
        s.change(removal).title.contains("sneaky"),
        "{:?}",
        s.change(removal)
    );
    s.expect_bot_comments(removal, &["🚨 **Request files reached the default branch without breakglass**: `requests/prod/sneaky.yaml`"]);

    let report = audit_of_forge(&s, s.clock.now()).await;
    assert_eq!(report.branch, "main");
    let [story, fast] = &report.grants[..] else {
        panic!("two grants: {:#?}", report.grants);
    };
    assert_eq!(
        (
            story.request_id.as_str(),
            story.requester.as_str(),
            story.environment.as_str(),
            story.role.as_str(),
            story.reason.as_str(),
            story.ticket.as_deref(),
            story.approved_by.as_str(),
            story.revoked_how.as_deref(),
        ),
        (
            "r-story",
            "alice",
            "prod",
            "admin",
            "incident: INC-1234 checkout DB failover",
            Some("INC-1234"),
            "carol",
            Some("ttl")
        )
    );
    let expires = story.expires_at.expect("an expiry");
    let off = (expires - (story.granted_at + TimeDelta::hours(1))).num_seconds();
    assert!(
        off.abs() <= 60,
        "expiry is the merge time + 1h ({off}s off)"
    );
    let revoked = story.revoked_at.expect("revoked");
    assert!(revoked >= expires && revoked <= expires + TimeDelta::minutes(5));
    assert_eq!(story.review, Review::NotNeeded);
    assert!(story.revoke_commit.is_some());

    assert_eq!(fast.request_id, "r-sev1");
    assert_eq!(fast.requester, "bob");
    assert_eq!(fast.approved_by, "fast-path:sev1");
    assert_eq!(fast.revoked_how.as_deref(), Some("ttl"));
    let Review::Pending { due: Some(due) } = fast.review else {
        panic!("a pending review: {:?}", fast.review);
    };
    assert!(
        (due - (fast.granted_at + TimeDelta::hours(24)))
            .num_seconds()
            .abs()
            <= 60
    );

    assert_eq!(
        report
            .anomalies
            .iter()
            .map(|a| (a.kind, a.request_id.as_str()))
            .collect::<Vec<_>>(),
        [(AnomalyKind::LandedWithoutBot, "sneaky")],
        "{:#?}",
        report.anomalies
    );
    assert!(
        report.anomalies[0].detail.ends_with("(reconcile)"),
        "{}",
        report.anomalies[0].detail
    );

    // A day later, git still records no review of the fast-path grant.
    let later = audit_of_forge(&s, s.clock.now() + TimeDelta::hours(25)).await;
    assert_eq!(
        later.grants[1].anomalies,
        [AnomalyKind::ReviewOverdue],
        "{:#?}",
        later.grants[1]
    );
}

/// A grant of r-1 to alice (prod/admin, 1h from minute 10).
fn r1() -> Grant<'static> {
    Grant {
        id: "r-1",
        requester: "alice",
        reason: "incident: INC-1",
        ..GRANT
    }
}

/// The audit of a branch whose tip `pushed` is a one-parent commit with r-1's grant trailers
/// and request file: no grant, its trailers forged, its file landed without the bot.
fn audit_finds_a_one_parent_grant_forged_and_landed(repo: &RequestsRepo, pushed: Oid) {
    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let document = json_of(&out);
    assert_eq!(ids(&document), Vec::<&str>::new(), "not counted as a grant");
    assert_eq!(
        anomaly_kinds(&document),
        [("forged_trailers", "r-1"), ("landed_without_bot", "r-1")]
    );
    assert_eq!(
        document["anomalies"][0]["detail"],
        "not counted as a grant: Breakglass-Request: r-1 on a commit with one parent, but breakglass lands every grant and revoke with a merge commit"
    );
    assert_eq!(document["anomalies"][1]["commit"], pushed.to_string());
}

/// A commit's header may carry a `parent` line after `committer`: git ignores it (a header it
/// does not know) and shows a commit with one parent. The audit reads it as git does: such a
/// direct push with a grant merge's trailers, whose stray line names a commit adding the
/// request file, is forged and landed without the bot, not a genuine grant merge; and a
/// stray line naming no object at all does not stop the audit.
#[test]
fn a_parent_line_git_ignores_makes_no_merge_and_no_dead_end() {
    let repo = RequestsRepo::new();
    let g = r1();
    let base = repo.tip();
    let path = "requests/prod/r-1.yaml";
    let tree = repo.edit(Some(base), path, Some(&request_yaml(&g)));
    let side = repo.commit(&[base], tree, "change requests/prod/r-1.yaml", 9, "mallory");
    let stray = format!("parent {side}\n");
    let pushed = repo.raw_commit(base, tree, &stray, &grant_message(10, &g), 10);
    repo.set_tip(pushed);
    audit_finds_a_one_parent_grant_forged_and_landed(&repo, pushed);

    let repo = RequestsRepo::new();
    let base = repo.tip();
    let tree = repo.edit(Some(base), "README.md", Some("notes\n"));
    let nowhere = "parent 1111111111111111111111111111111111111111\n";
    let pushed = repo.raw_commit(base, tree, nowhere, "notes\n", 10);
    repo.set_tip(pushed);
    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["anomalies"], json!([]));
}

#[test]
fn grant_trailers_on_a_commit_that_adds_no_request_file_are_forged() {
    let repo = RequestsRepo::new();
    let forged = repo.policy_change(10, &grant_message(10, &r1()));
    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let document = json_of(&out);
    assert_eq!(
        ids(&document),
        Vec::<&str>::new(),
        "no row for a forged grant"
    );
    assert_eq!(
        document["anomalies"],
        json!([{
            "kind": "forged_trailers", "request_id": "r-1", "commit": forged.to_string(),
            "detail": "not counted as a grant: Breakglass-Request: r-1 but the commit does not add requests/prod/r-1.yaml"
        }]),
        "and no grant_without_revert long after its claimed expiry"
    );
}

/// A member who can push to the default branch writes a commit by hand that adds the request
/// file and carries every trailer a grant merge has. Its files bear the claim out, but the bot
/// lands grants only with a merge commit: the audit counts no grant, says the trailers are
/// forged and that the file landed without the bot.
#[test]
fn a_direct_push_with_a_grant_merges_trailers_is_forged_and_landed_without_the_bot() {
    let repo = RequestsRepo::new();
    let g = r1();
    let base = repo.tip();
    let tree = repo.edit(
        Some(base),
        "requests/prod/r-1.yaml",
        Some(&request_yaml(&g)),
    );
    let pushed = repo.commit(&[base], tree, &grant_message(10, &g), 10, "mallory");
    repo.set_tip(pushed);
    audit_finds_a_one_parent_grant_forged_and_landed(&repo, pushed);
}

/// A member who can push to the default branch hides its grants from the first-parent walk
/// ("foxtrot"): a commit with main's very tree on an older line, merged with main as its
/// *second* parent, pushed as a fast-forward. The first-parent line then runs through the
/// older line and adds no file, so before, the audit listed no grant and no anomaly at all.
#[test]
fn grants_a_push_put_off_the_first_parent_line_are_anomalies() {
    // Titled as any merge, or as the bot's removal (a title proves nothing).
    for title in [
        "Merge branch 'main'",
        "breakglass: remove requests/prod/x.yaml (reconcile)",
    ] {
        let repo = RequestsRepo::new();
        let root = repo.tip();
        let grant = repo.grant(10, r1());
        let revoke = repo.revoke(80, "prod", "r-1", "ttl", None);
        let main = repo.tip();
        let tree = repo.repo.find_commit(main).unwrap().tree_id();
        let older_line = repo.commit(&[root], tree, "tidy up", 90, "mallory");
        let foxtrot = repo.commit(&[older_line, main], tree, title, 91, "mallory");
        repo.set_tip(foxtrot);

        let out = audit_cli(repo.path_str(), &["--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{title}: {}", stderr(&out));
        let document = json_of(&out);
        assert_eq!(ids(&document), Vec::<&str>::new(), "off the line, no row");
        assert_eq!(
            anomaly_kinds(&document),
            [("off_first_parent", "r-1"), ("off_first_parent", "r-1")],
            "{title}"
        );
        let commits: Vec<&str> = document["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["commit"].as_str().unwrap())
            .collect();
        assert_eq!(commits, [grant.to_string(), revoke.to_string()]);
        let short = &foxtrot.to_string()[..12];
        assert_eq!(
            document["anomalies"][0]["detail"],
            format!(
                "not counted as a grant: Breakglass-Request: r-1 on a commit that is not on main's first-parent history; merge {short} (not breakglass's) reaches it through another parent, as after a push that put an older line first; `breakglass audit verify` compares the bot's event log with git"
            )
        );
        assert!(
            document["anomalies"][1]["detail"]
                .as_str()
                .unwrap()
                .starts_with("not counted as a revoke: Breakglass-Revokes: r-1 on a commit"),
            "{}",
            document["anomalies"][1]
        );
    }
}

/// A member's branch that took main in (with the bot's merges on it) and was then merged
/// into main by hand is ordinary history: its other parent meets the line again, and
/// nothing on it is off the line.
#[test]
fn a_hand_merged_branch_that_took_main_in_hides_nothing() {
    let repo = RequestsRepo::new();
    let fork = repo.tip();
    let feature = repo.commit(
        &[fork],
        repo.edit(Some(fork), "docs/README.md", Some("hello\n")),
        "docs",
        5,
        "erin",
    );
    repo.grant(10, r1());
    let main = repo.tip();
    let took_main = repo.commit(
        &[feature, main],
        repo.edit(Some(main), "docs/README.md", Some("hello\n")),
        "Merge branch 'main' into docs",
        20,
        "erin",
    );
    let tree = repo.repo.find_commit(took_main).unwrap().tree_id();
    let merged = repo.commit(
        &[main, took_main],
        tree,
        "Merge pull request #9 from acme/docs",
        30,
        "erin",
    );
    repo.set_tip(merged);
    repo.revoke(70, "prod", "r-1", "ttl", None);

    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    let document = json_of(&out);
    assert_eq!(ids(&document), ["r-1"]);
    assert_eq!(anomaly_kinds(&document), Vec::<(&str, &str)>::new());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_revoke_that_does_not_delete_the_file_is_forged_and_the_grant_stays_open() {
    let repo = RequestsRepo::new();
    let grant = repo.grant(10, r1());
    let forged = repo.policy_change(30, &revoke_message("r-1", "early", None));
    let audit_at = |now: i64| {
        let now = iso(now);
        json_of(&breakglass(&[
            "audit",
            "--repo",
            repo.path_str(),
            "--now",
            &now,
            "--format",
            "json",
        ]))
    };

    let during = audit_at(40);
    assert_eq!(
        during["grants"][0]["revoked_at"],
        Value::Null,
        "still active"
    );
    assert_eq!(during["grants"][0]["revoke_commit"], Value::Null);
    assert_eq!(
        during["anomalies"],
        json!([{
            "kind": "forged_trailers", "request_id": "r-1", "commit": forged.to_string(),
            "detail": "not counted as a revoke: Breakglass-Revokes: r-1 (early) but the commit does not remove requests/<environment>/r-1.yaml"
        }])
    );

    let after = audit_at(NOW);
    assert_eq!(
        anomaly_kinds(&after),
        [("grant_without_revert", "r-1"), ("forged_trailers", "r-1")]
    );
    assert_eq!(after["anomalies"][0]["commit"], grant.to_string());
}

#[test]
fn a_grant_merge_with_the_four_spec_trailers_takes_environment_role_and_ticket_from_its_file() {
    let repo = RequestsRepo::new();
    let g = Grant {
        env: "staging",
        role: "read",
        ..r1()
    };
    let message = format!(
        "breakglass: grant r-1\n\nincident: INC-1\n\nBreakglass-Request: r-1\nBreakglass-Requester: alice\nBreakglass-Approved-By: carol\nBreakglass-Expires: {}\n",
        iso(70)
    );
    let grant = repo.merge(
        10,
        "requests/staging/r-1.yaml",
        Some(&format!("{}ticket: INC-1\n", request_yaml(&g))),
        &message,
        "alice",
    );
    repo.revoke(70, "staging", "r-1", "ttl", None);
    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let document = json_of(&out);
    assert_eq!(document["anomalies"], json!([]));
    let row = &document["grants"][0];
    assert_eq!(
        (&row["environment"], &row["role"], &row["grant_commit"]),
        (&json!("staging"), &json!("read"), &json!(grant.to_string()))
    );
    assert_eq!(row["ticket"], "INC-1");
    assert_eq!(row["revoked_how"], "ttl");
    let staging = audit_cli(
        repo.path_str(),
        &["--format", "json", "--environment", "staging"],
    );
    assert_eq!(
        ids(&json_of(&staging)),
        ["r-1"],
        "filtered by the file's environment"
    );
}

/// SPEC's four trailers give no reason, and the bot's title neither: the audit reads it from
/// the request file the merge adds, as it reads the role and the ticket (on one line, as the
/// bot writes a reason into a merge message). A message that has a reason keeps it.
#[test]
fn a_grant_merge_with_the_four_spec_trailers_takes_its_reason_from_its_file() {
    let repo = RequestsRepo::new();
    let yaml = "environment: prod\nrole: admin\nduration: 1h\nreason: \"incident: INC-1\\n  db down\"\nticket: INC-1\n";
    let four = |id: &str| {
        format!(
            "breakglass: grant {id}\n\nBreakglass-Request: {id}\nBreakglass-Requester: alice\nBreakglass-Approved-By: carol\nBreakglass-Expires: {}\n",
            iso(70)
        )
    };
    repo.merge(
        10,
        "requests/prod/r-1.yaml",
        Some(yaml),
        &four("r-1"),
        "alice",
    );
    let with_body = four("r-2").replacen("\n\n", "\n\nfrom the message\n\n", 1);
    repo.merge(
        11,
        "requests/prod/r-2.yaml",
        Some(yaml),
        &with_body,
        "alice",
    );
    let now = iso(30);
    let out = breakglass(&[
        "audit",
        "--repo",
        repo.path_str(),
        "--now",
        &now,
        "--format",
        "json",
    ]);
    let document = json_of(&out);
    assert_eq!(document["anomalies"], json!([]), "{}", stdout(&out));
    assert_eq!(document["grants"][0]["reason"], "incident: INC-1 db down");
    assert_eq!(document["grants"][1]["reason"], "from the message");
}

/// A grant of 1h that the bot makes at (its) minute 100, expiring at 160, and its revoke
/// merged at the bot's minute `revoked`, on a forge whose clock is `skew` minutes ahead of
/// the bot's (behind when negative): both merge commits bear the forge's time.
fn skewed_grant_and_revoke(skew: i64, revoked: i64) -> (RequestsRepo, Oid) {
    let repo = RequestsRepo::new();
    let g = r1();
    repo.merge(
        100 + skew,
        "requests/prod/r-1.yaml",
        Some(&request_yaml(&g)),
        &grant_message(100, &g),
        "alice",
    );
    let revoke = repo.revoke(revoked + skew, "prod", "r-1", "ttl", None);
    (repo, revoke)
}

/// One clock per comparison: the expiry is on the bot's clock, a merge commit's time on the
/// forge's. The revoke's lateness is judged on the bot's clock, the forge's offset read from
/// the grant merge (its committer time against the bot's grant time, `Breakglass-Expires`
/// less the duration in its title).
#[test]
fn a_revoke_is_judged_late_on_the_bots_clock_whatever_the_forges() {
    let late = |skew: i64, revoked: i64| {
        let (repo, revoke) = skewed_grant_and_revoke(skew, revoked);
        let out = audit_cli(repo.path_str(), &["--format", "json"]);
        (json_of(&out)["anomalies"].clone(), revoke)
    };
    // On time by the bot's clock (a minute after the expiry), the forge an hour ahead.
    let (anomalies, _) = late(60, 161);
    assert_eq!(anomalies, json!([]), "an on-time revoke is not late");
    // 40 minutes late, the forge an hour behind (its commit says minute 140, before 160).
    let (anomalies, revoke) = late(-60, 200);
    assert_eq!(
        anomalies,
        json!([{
            "kind": "late_revert", "request_id": "r-1", "commit": revoke.to_string(),
            "detail": format!("revoked at {}, 40m after the expiry {} (grace 5m)", iso(200), iso(160))
        }])
    );
    // The same two with the clocks together.
    assert_eq!(late(0, 161).0, json!([]));
    assert_eq!(late(0, 200).0[0]["kind"], "late_revert");
}

/// The real bot against the test forge, whose clock is `skew_secs` ahead of the bot's (behind
/// when negative): alice's 1h grant and its revoke, on time or, with the bot down past the
/// expiry, 40 minutes late. The audit's `late_revert` for it, if any.
async fn late_revert_of_the_bots_revoke(skew_secs: i64, bot_down: bool) -> Option<String> {
    use breakglass::clock::Clock as _;
    use common::*;
    let setup = Setup {
        forge_skew_secs: skew_secs,
        ..Setup::default()
    };
    let mut s = Scenario::start_with(Backend::Sqlite, setup).await?;
    let pr = s.granted("r1", "1h").await;
    if bot_down {
        s.crash().await;
        s.advance(TimeDelta::minutes(100));
        s.start_service().await;
    } else {
        s.advance(TimeDelta::hours(1));
    }
    s.settle().await;
    s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    let report = audit_of_forge(&s, s.clock.now()).await;
    assert_eq!(report.grants.len(), 1, "{:#?}", report.grants);
    let late: Vec<_> = report
        .anomalies
        .iter()
        .filter(|a| a.kind == AnomalyKind::LateRevert)
        .map(|a| a.detail.clone())
        .collect();
    assert!(late.len() <= 1, "{late:#?}");
    late.into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_on_time_revoke_is_not_late_with_the_forge_an_hour_ahead() {
    let late = late_revert_of_the_bots_revoke(3600, false).await;
    assert_eq!(late, None, "a revoke on time flagged late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_late_revoke_is_flagged_with_the_forge_an_hour_behind() {
    let late = late_revert_of_the_bots_revoke(-3600, true).await;
    let late = late.expect("a revoke 40m past the expiry is late_revert");
    assert!(late.contains(", 40m"), "{late}");
}

/// The control of the two above: the same stories with the clocks together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_revoke_is_judged_late_or_not_with_the_clocks_together() {
    assert_eq!(late_revert_of_the_bots_revoke(0, false).await, None);
    let late = late_revert_of_the_bots_revoke(0, true).await;
    let late = late.expect("a revoke 40m past the expiry is late_revert");
    assert!(late.contains(", 40m"), "{late}");
}

#[test]
fn an_environment_trailer_that_contradicts_the_added_file_is_forged() {
    let repo = RequestsRepo::new();
    let claimed = r1(); // Breakglass-Environment: prod
    let actual = Grant {
        env: "staging",
        ..claimed
    };
    let forged = repo.merge(
        10,
        "requests/staging/r-1.yaml",
        Some(&request_yaml(&actual)),
        &grant_message(10, &claimed),
        "alice",
    );
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(ids(&document), Vec::<&str>::new());
    assert_eq!(
        document["anomalies"],
        json!([
            {
                "kind": "forged_trailers", "request_id": "r-1", "commit": forged.to_string(),
                "detail": "not counted as a grant: Breakglass-Request: r-1 and Breakglass-Environment: prod, but the commit adds requests/staging/r-1.yaml, not requests/prod/r-1.yaml"
            },
            {
                // Not granted by the bot, yet on the branch: it landed without it.
                "kind": "landed_without_bot", "request_id": "r-1", "commit": forged.to_string(),
                "detail": "requests/staging/r-1.yaml was added without breakglass; no reconcile removal on the branch"
            }
        ])
    );
}

#[test]
fn a_revoke_that_removes_a_file_no_grant_added_is_a_revert_without_grant() {
    let repo = RequestsRepo::new();
    let landed = repo.hand_merge(10, "staging", "r-hand", "ivan");
    let revoke = repo.revoke(20, "staging", "r-hand", "ttl", None);
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(
        document["anomalies"],
        json!([
            {
                "kind": "landed_without_bot", "request_id": "r-hand", "commit": landed.to_string(),
                "detail": "requests/staging/r-hand.yaml was added without breakglass; no reconcile removal on the branch"
            },
            {
                "kind": "revert_without_grant", "request_id": "r-hand", "commit": revoke.to_string(),
                "detail": "Breakglass-Revokes: r-hand (ttl) but no grant merge for r-hand on main before it"
            }
        ])
    );
}

// A person's merge titled and trailed like the bot's grant of `r-1` that also adds another
// request file and loosens a policy: the bot's merge guard lets nothing but the request's own
// files through, so its trailers are forged, and both request files landed without the bot.
#[test]
fn a_grant_merge_that_changes_more_than_its_requests_files_is_forged() {
    let repo = RequestsRepo::new();
    let grant = Grant {
        id: "r-1",
        requester: "alice",
        reason: "fix the db",
        ..GRANT
    };
    let own = format!("requests/prod/{}.yaml", grant.id);
    let own_text = request_yaml(&grant);
    let merge = repo.merge_files(
        10,
        &[
            (own.as_str(), Some(own_text.as_str())),
            ("requests/prod/r-extra.yaml", Some(own_text.as_str())),
            ("policies/prod.yaml", Some("approvals: 0\n")),
        ],
        &grant_message(10, &grant),
    );
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    let anomalies = document["anomalies"].as_array().unwrap();
    let forged = anomalies
        .iter()
        .find(|a| a["kind"] == "forged_trailers")
        .unwrap_or_else(|| panic!("{anomalies:#?}"));
    assert_eq!(forged["request_id"], grant.id);
    assert_eq!(forged["commit"], merge.to_string());
    let detail = forged["detail"].as_str().unwrap();
    assert!(
        detail.contains("`policies/prod.yaml`") && detail.contains("`requests/prod/r-extra.yaml`"),
        "{detail}"
    );
    for id in [grant.id, "r-extra"] {
        assert!(
            anomalies
                .iter()
                .any(|a| a["kind"] == "landed_without_bot" && a["request_id"] == id),
            "{id}: {anomalies:#?}"
        );
    }
    assert!(
        document["grants"].as_array().is_none_or(|g| g.is_empty()),
        "no grant: {}",
        document["grants"]
    );
}

/// A genuine grant of r-1 in prod; mallory then pushes `requests/prod/r-1.yml` and
/// `requests/staging/r-1.yaml` in one commit, and the bot removes both in one removal whose
/// trailers name r-1 (one request, two files). That removal took staging's request file, not
/// the prod grant's: the genuine grant keeps its row, and both pushed files are flagged.
#[test]
fn a_removal_of_a_namesakes_files_elsewhere_does_not_disown_the_genuine_grant() {
    let repo = RequestsRepo::new();
    let granted = repo.grant(10, r1());
    let paths = ["requests/prod/r-1.yml", "requests/staging/r-1.yaml"];
    let pushed = repo.push_files(
        20,
        &[
            (paths[0], Some("role: admin\n")),
            (paths[1], Some("role: admin\n")),
        ],
        "mallory",
    );
    let base = repo.tip();
    let tree = repo.edit_all(Some(base), &[(paths[0], None), (paths[1], None)]);
    let head = repo.commit(&[base], tree, "remove", 29, "breakglass[bot]");
    let message = removal_message("r-1", &paths, Some("r-1"));
    let removal = repo.commit(&[base, head], tree, &message, 30, "breakglass[bot]");
    repo.set_tip(removal);
    let revoked = repo.revoke(70, "prod", "r-1", "ttl", None);
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(
        ids(&document),
        ["r-1"],
        "the grant is not disowned: {document:#}"
    );
    let row = &document["grants"][0];
    assert_eq!(row["grant_commit"], granted.to_string());
    assert_eq!(row["revoke_commit"], revoked.to_string());
    let removed = format!(
        "without breakglass; removed by {} at {} (reconcile)",
        &removal.to_string()[..12],
        iso(30)
    );
    assert_eq!(
        document["anomalies"],
        json!([
            landed(pushed, "r-1", format!("{} was added {removed}", paths[0])),
            landed(pushed, "r-1", format!("{} was added {removed}", paths[1])),
        ])
    );
}

#[test]
fn the_bots_removal_of_a_landed_yml_file_passes_the_file_check() {
    let repo = RequestsRepo::new();
    let path = "requests/prod/r-yml.yml";
    let landed = repo.merge(10, path, Some("role: admin\n"), "grant myself", "mallory");
    let message = format!(
        "breakglass: remove r-yml (reconcile)\n\nFiles that reached main without breakglass: `{path}`. It was never granted.\n\nBreakglass-Revokes: r-yml\nBreakglass-Revoked-Reason: reconcile\n"
    );
    let removal = repo.merge(12, path, None, &message, "breakglass[bot]");
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(
        document["anomalies"],
        json!([{
            "kind": "landed_without_bot", "request_id": "r-yml", "commit": landed.to_string(),
            "detail": format!(
                "{path} was added without breakglass; removed by {} at {} (reconcile)",
                &removal.to_string()[..12],
                iso(12)
            )
        }])
    );
}

/// The network policy of these tests: two `iac` roles, one rendering under `grants/`, one under
/// `k8s/` (a grant root only this policy names).
const IAC_POLICY: &str = "environment: network\nmax_duration: 2h\nrequesters: [alice]\napprovers: [carol]\nroles:\n  dns-admin:\n    provider: iac\n    template: iac/aws-role-policy.tf.j2\n    output: \"grants/{{ environment }}/{{ id }}.tf\"\n  k8s-admin:\n    provider: iac\n    template: iac/k8s-rolebinding.yaml.j2\n    output: \"k8s/{{ environment }}/{{ id }}.yaml\"\n";

/// An AdministratorAccess attachment: what a grant file pushed past the bot would apply.
const ADMIN_TF: &str = "resource \"aws_iam_role_policy_attachment\" \"mallory\" {\n  role       = \"breakglass-mallory\"\n  policy_arn = \"arn:aws:iam::aws:policy/AdministratorAccess\"\n}\n";

fn iac_repo() -> RequestsRepo {
    RequestsRepo::with_policies(&[("network.yaml", IAC_POLICY)])
}

/// The message of the bot's removal of files that landed without it: with the trailers of a
/// reconcile revoke when a request file is among them, without any when they are grant files
/// alone (`src/workflow/trailers.rs`, `removal_message`).
fn removal_message(subject: &str, paths: &[&str], request: Option<&str>) -> String {
    let shown: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
    let files = format!(
        "breakglass: remove {subject} (reconcile)\n\nFiles that reached main without breakglass: {}.",
        shown.join(", ")
    );
    match request {
        Some(id) => format!(
            "{files} It was never granted.\n\nBreakglass-Revokes: {id}\nBreakglass-Revoked-Reason: reconcile\n"
        ),
        None => format!("{files}\n"),
    }
}

fn landed(commit: Oid, id: &str, detail: String) -> Value {
    json!({
        "kind": "landed_without_bot", "request_id": id, "commit": commit.to_string(),
        "detail": detail
    })
}

const DNS_REQUEST: &str = "requests/network/r-dns.yaml";
const DNS_GRANT_FILE: &str = "grants/network/r-dns.tf";

fn dns_grant() -> Grant<'static> {
    Grant {
        id: "r-dns",
        env: "network",
        role: "dns-admin",
        requester: "alice",
        reason: "incident: INC-7 move the apex record",
        ..GRANT
    }
}

/// The bot's grant of r-dns with its request file and its rendered grant file at 10, what
/// mallory pushes straight to main at 20 (`hers`), the bot's revoke at 70: the audit (exit 1,
/// the one grant row) and her commit.
fn dns_grant_around(repo: &RequestsRepo, hers: &[(&str, Option<&str>)]) -> (Value, Oid) {
    let g = dns_grant();
    let request = request_yaml(&g);
    let files = [
        (DNS_REQUEST, Some(request.as_str())),
        (DNS_GRANT_FILE, Some("resource \"x\" \"dns\" {}\n")),
    ];
    repo.merge_files(10, &files, &grant_message(10, &g));
    let pushed = repo.push_files(20, hers, "mallory");
    let gone = files.map(|(path, _)| (path, None));
    repo.merge_files(70, &gone, &revoke_message("r-dns", "ttl", None));
    let out = audit_cli(repo.path_str(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let document = json_of(&out);
    assert_eq!(ids(&document), ["r-dns"]);
    (document, pushed)
}

/// mallory pushes an admin grant file under `grants/` straight to main, beside a grant the bot
/// merged with its own grant file: only the pushed file is an anomaly.
#[test]
fn a_grant_file_pushed_past_the_bot_landed_without_it_and_the_bots_own_did_not() {
    let repo = iac_repo();
    let evil = [("grants/network/evil.tf", Some(ADMIN_TF))];
    let (document, pushed) = dns_grant_around(&repo, &evil);
    assert_eq!(document["grants"][0]["anomalies"], json!([]));
    assert_eq!(
        document["anomalies"],
        json!([landed(
            pushed,
            "evil",
            "grants/network/evil.tf was added without breakglass; no reconcile removal on the branch".into()
        )])
    );
}

/// mallory's direct push dates its commit years back (its committer time is hers to set): the
/// file it adds is still on the branch, so a report of a later period still flags it; once
/// the bot's removal has taken it out before the period, that report does not.
#[test]
fn a_backdated_push_is_flagged_in_every_period_its_file_is_there() {
    let repo = RequestsRepo::new();
    let years_back = -5_000_000; // story minutes: 2017
    let pushed = repo.direct_push(years_back, "prod", "r-old", "mallory");
    let period = ["--format", "json", "--since", "2026-11-26T00:30:00Z"];
    let document = json_of(&audit_cli(repo.path_str(), &period));
    assert_eq!(anomaly_kinds(&document), [("landed_without_bot", "r-old")]);
    assert_eq!(document["anomalies"][0]["commit"], pushed.to_string());
    let path = "requests/prod/r-old.yaml";
    let message = removal_message("r-old", &[path], Some("r-old"));
    repo.merge(20, path, None, &message, "breakglass[bot]");
    let document = json_of(&audit_cli(repo.path_str(), &period));
    assert_eq!(anomaly_kinds(&document), [], "gone before the period");
    let all = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(anomaly_kinds(&all), [("landed_without_bot", "r-old")]);
}

/// mallory's hand-made commits carry forged grant trailers and are dated far off, one in 2036,
/// one in 2017, between two genuine grants merged at 00:10 and 00:50: each is reported in the
/// period it landed in (between those merges, whose times the forge set), not at its date.
#[test]
fn forged_commits_dated_far_off_are_reported_where_they_landed() {
    for (far_off, id) in [(5_000_000, "r-future"), (-5_000_000, "r-past")] {
        let repo = RequestsRepo::new();
        let first = Grant {
            id: "r-a",
            requester: "alice",
            reason: "incident: INC-1",
            ..GRANT
        };
        repo.grant(10, first);
        let ghost = Grant {
            id,
            requester: "mallory",
            reason: "trust me",
            ..GRANT
        };
        repo.policy_change(far_off, &grant_message(far_off, &ghost));
        let second = Grant {
            id: "r-b",
            requester: "bob",
            reason: "incident: INC-2",
            ..GRANT
        };
        repo.grant(50, second);
        repo.revoke(70, "prod", "r-a", "ttl", None);
        repo.revoke(110, "prod", "r-b", "ttl", None);
        let period = [
            "--format",
            "json",
            "--since",
            "2026-11-26T00:05:00Z",
            "--until",
            "2026-11-26T00:55:00Z",
        ];
        let document = json_of(&audit_cli(repo.path_str(), &period));
        assert_eq!(anomaly_kinds(&document), [("forged_trailers", id)], "{id}");
        let later = ["--format", "json", "--since", "2026-11-26T02:00:00Z"];
        let document = json_of(&audit_cli(repo.path_str(), &later));
        assert_eq!(anomaly_kinds(&document), [], "{id} is not after 02:00");
    }
}

/// While the bot's grant is live, mallory edits its rendered grant file in place (attaching
/// AdministratorAccess) and its request file (a longer duration), straight on the branch: the
/// IaC pipeline applies what she wrote, so both are flagged as changed without breakglass;
/// the grant keeps its row.
#[test]
fn a_granted_file_edited_by_hand_is_flagged_as_changed_without_the_bot() {
    let repo = iac_repo();
    let longer = request_yaml(&dns_grant()).replace("duration: 1h", "duration: 9h");
    let edits = [
        (DNS_GRANT_FILE, Some(ADMIN_TF)),
        (DNS_REQUEST, Some(longer.as_str())),
    ];
    let (document, pushed) = dns_grant_around(&repo, &edits);
    let fate = "without breakglass; no reconcile removal on the branch";
    assert_eq!(
        document["anomalies"],
        json!([
            landed(pushed, "r-dns", format!("{DNS_REQUEST} was changed {fate}")),
            landed(
                pushed,
                "r-dns",
                format!("{DNS_GRANT_FILE} was changed {fate}")
            ),
        ])
    );
}

/// `k8s/` is a grant root because a role of the policies on the branch renders there; the
/// environment in its path (`network`, an environment of the policies) places it for
/// `--environment`.
#[test]
fn a_root_named_by_an_iac_roles_output_is_covered() {
    let repo = iac_repo();
    let pushed = repo.push_files(
        10,
        &[
            ("k8s/network/evil.yaml", Some("kind: ClusterRoleBinding\n")),
            ("docs/runbook.md", Some("not a grant\n")),
        ],
        "mallory",
    );
    let anomalies = |args: &[&str]| {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        json_of(&audit_cli(repo.path_str(), &all))["anomalies"].clone()
    };
    let flagged = json!([landed(
        pushed,
        "evil",
        "k8s/network/evil.yaml was added without breakglass; no reconcile removal on the branch"
            .into()
    )]);
    assert_eq!(anomalies(&[]), flagged);
    assert_eq!(anomalies(&["--environment", "network"]), flagged);
    assert_eq!(anomalies(&["--environment", "prod"]), json!([]));
}

/// mallory pushes a binding under `k8s/`, a root of the `k8s-admin` role, and a later policy
/// change drops that role ("remove the unused k8s role"), then she edits her binding. Both
/// are still flagged: the roots are those of every version of the policies the branch had,
/// not only of its tip's.
#[test]
fn a_root_a_later_policy_dropped_still_covers_what_landed_under_it() {
    let repo = iac_repo();
    let evil = "k8s/network/evil.yaml";
    let pushed = repo.push_files(10, &[(evil, Some("kind: ClusterRoleBinding\n"))], "mallory");
    let without_k8s = IAC_POLICY.split("  k8s-admin:").next().unwrap();
    assert!(!without_k8s.contains("k8s"), "{without_k8s}");
    let path = "policies/network.yaml";
    repo.merge(
        20,
        path,
        Some(without_k8s),
        "drop the unused k8s role",
        "carol",
    );
    let edited = repo.push_files(30, &[(evil, Some("kind: ClusterRole\n"))], "mallory");
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    let fate = "without breakglass; no reconcile removal on the branch";
    assert_eq!(
        document["anomalies"],
        json!([
            landed(pushed, "evil", format!("{evil} was added {fate}")),
            landed(edited, "evil", format!("{evil} was changed {fate}")),
        ])
    );
}

/// A repo whose policies live elsewhere (`policies_path = "infra/policies"`): `--policies`
/// points the audit at them, and the roots their `iac` roles name are watched; without it the
/// audit finds no policies there and watches `grants/` alone.
#[test]
fn the_policies_named_by_policies_are_the_ones_whose_grant_roots_are_watched() {
    let repo = RequestsRepo::new();
    repo.push_files(
        5,
        &[("infra/policies/network.yaml", Some(IAC_POLICY))],
        "carol",
    );
    let pushed = repo.push_files(
        10,
        &[("k8s/network/evil.yaml", Some("kind: ClusterRoleBinding\n"))],
        "mallory",
    );
    let anomalies = |args: &[&str]| {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        json_of(&audit_cli(repo.path_str(), &all))["anomalies"].clone()
    };
    let flagged = json!([landed(
        pushed,
        "evil",
        "k8s/network/evil.yaml was added without breakglass; no reconcile removal on the branch"
            .into()
    )]);
    assert_eq!(anomalies(&["--policies", "infra/policies"]), flagged);
    assert_eq!(anomalies(&["--policies", "infra/policies/"]), flagged);
    assert_eq!(anomalies(&[]), json!([]), "policies/ holds none here");
}

/// Policies that do not parse (here a policy with only `environment:`) leave `grants/` alone
/// watched; a grant file there whose path names no environment of the policies shows under
/// every `--environment`.
#[test]
fn without_readable_policies_grants_alone_is_watched() {
    let repo = RequestsRepo::new();
    let pushed = repo.push_files(
        10,
        &[
            ("grants/evil.tf", Some(ADMIN_TF)),
            ("k8s/prod/evil.yaml", Some("kind: ClusterRoleBinding\n")),
        ],
        "mallory",
    );
    let flagged = json!([landed(
        pushed,
        "evil",
        "grants/evil.tf was added without breakglass; no reconcile removal on the branch".into()
    )]);
    for filter in [&[][..], &["--environment", "staging"][..]] {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(filter);
        let document = json_of(&audit_cli(repo.path_str(), &args));
        assert_eq!(document["anomalies"], flagged, "{filter:?}");
    }
}

/// The bot removes what landed without it, one change per request: a grant file alone by a
/// merge without trailers, a grant file with its request file by a reconcile revoke. Each
/// anomaly names the removal that deleted that very path; a file deleted by hand was not
/// removed by the bot.
#[test]
fn the_bots_reconcile_removal_of_a_pushed_grant_file_is_named() {
    let repo = iac_repo();
    let evil = "grants/network/evil.tf";
    let alone = repo.push_files(10, &[(evil, Some(ADMIN_TF))], "mallory");
    let removed_alone =
        repo.merge_files(12, &[(evil, None)], &removal_message("evil", &[evil], None));
    let (request, grant) = ("requests/network/r-x.yaml", "grants/network/r-x.tf");
    let pair = [
        (
            request,
            Some("environment: network\nrole: dns-admin\nduration: 2h\nreason: trust me\n"),
        ),
        (grant, Some(ADMIN_TF)),
    ];
    let together = repo.push_files(20, &pair, "mallory");
    let removed_together = repo.merge_files(
        22,
        &pair.map(|(path, _)| (path, None)),
        &removal_message("r-x", &[grant, request], Some("r-x")),
    );
    let by_hand = repo.push_files(30, &[("k8s/network/other.yaml", Some("x: 1\n"))], "mallory");
    repo.push_files(31, &[("k8s/network/other.yaml", None)], "carol");
    let removed = |what: &str, commit: Oid, at: i64| {
        format!(
            "{what} was added without breakglass; removed by {} at {} (reconcile)",
            &commit.to_string()[..12],
            iso(at)
        )
    };
    let document = json_of(&audit_cli(repo.path_str(), &["--format", "json"]));
    assert_eq!(
        document["anomalies"],
        json!([
            landed(alone, "evil", removed(evil, removed_alone, 12)),
            landed(together, "r-x", removed(request, removed_together, 22)),
            landed(together, "r-x", removed(grant, removed_together, 22)),
            landed(
                by_hand,
                "other",
                "k8s/network/other.yaml was added without breakglass; no reconcile removal on the branch".into()
            ),
        ])
    );
    assert_eq!(ids(&document), Vec::<&str>::new(), "nothing was granted");
}

/// The real bot: its own iac grant merge adds a grant file (no anomaly); mallory's grant file
/// pushed to main is removed by the bot, and the audit flags it and names that removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_flags_a_grant_file_pushed_past_the_bot_and_names_the_bots_removal() {
    use breakglass::clock::Clock as _;
    use common::*;
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.lenient();
    s.iac_granted("r-dns").await;
    assert!(
        s.forge
            .file_on(REPO, "main", "grants/network/r-dns.tf")
            .is_some()
    );
    let evil = "grants/network/evil.tf";
    s.forge
        .push_direct(REPO, &s.people.mallory, &[(evil, ADMIN_TF)], "grant myself");
    s.settle().await;
    assert!(
        s.forge.file_on(REPO, "main", evil).is_none(),
        "the bot removed it"
    );

    let report = audit_of_forge(&s, s.clock.now()).await;
    assert_eq!(report.grants.len(), 1, "{:#?}", report.grants);
    assert_eq!(report.grants[0].request_id, "r-dns");
    let [anomaly] = &report.anomalies[..] else {
        panic!("one anomaly: {:#?}", report.anomalies);
    };
    assert_eq!(
        (anomaly.kind, anomaly.request_id.as_str()),
        (AnomalyKind::LandedWithoutBot, "evil")
    );
    assert!(
        anomaly
            .detail
            .starts_with("grants/network/evil.tf was added without breakglass; removed by ")
            && anomaly.detail.ends_with("(reconcile)"),
        "{}",
        anomaly.detail
    );
}

/// Files under `requests/` that are no request file (at its top, a directory too deep, not
/// YAML) pushed to main: the bot takes them out, and the audit flags each and names that
/// removal (a review found them passed over, as if nothing had landed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_flags_stray_files_pushed_under_requests_and_names_the_bots_removal() {
    use breakglass::clock::Clock as _;
    use common::*;
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.lenient();
    let strays = [
        "requests/top.yaml",
        "requests/prod/deeper/r-deep.yaml",
        "requests/prod/notes.txt",
    ];
    let files: Vec<(&str, &str)> = strays.iter().map(|p| (*p, "role: admin\n")).collect();
    s.forge
        .push_direct(REPO, &s.people.mallory, &files, "park some files");
    s.settle().await;
    for path in strays {
        assert!(
            s.forge.file_on(REPO, "main", path).is_none(),
            "the bot removed {path}"
        );
    }
    let report = audit_of_forge(&s, s.clock.now()).await;
    let mut found: Vec<(AnomalyKind, &str)> = report
        .anomalies
        .iter()
        .map(|a| (a.kind, a.request_id.as_str()))
        .collect();
    found.sort_by_key(|(_, id)| *id);
    assert_eq!(
        found,
        [
            (AnomalyKind::LandedWithoutBot, "notes"),
            (AnomalyKind::LandedWithoutBot, "r-deep"),
            (AnomalyKind::LandedWithoutBot, "top"),
        ],
        "{:#?}",
        report.anomalies
    );
    for anomaly in &report.anomalies {
        assert!(
            anomaly
                .detail
                .contains("was added without breakglass; removed by ")
                && anomaly.detail.ends_with("(reconcile)"),
            "{}",
            anomaly.detail
        );
    }
}

/// A request file spelt `.yml` pushed to main: the bot removes it (by a removal without
/// trailers, as it names no request), and the audit names that removal as its fate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yml_request_file_the_bot_removed_is_said_removed() {
    use breakglass::clock::Clock as _;
    use common::*;
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.lenient();
    let yaml = prod_request("1h");
    let path = "requests/prod/r-yml.yml";
    s.forge.push_direct(
        REPO,
        &s.people.mallory,
        &[(path, yaml.as_str())],
        "spelt .yml",
    );
    s.settle().await;
    assert!(
        s.forge.file_on(REPO, "main", path).is_none(),
        "the bot removed it"
    );
    let report = audit_of_forge(&s, s.clock.now()).await;
    let [anomaly] = &report.anomalies[..] else {
        panic!("one anomaly: {:#?}", report.anomalies);
    };
    assert_eq!(anomaly.kind, AnomalyKind::LandedWithoutBot);
    assert!(
        anomaly.detail.contains("removed by ") && anomaly.detail.ends_with("(reconcile)"),
        "{}",
        anomaly.detail
    );
}

/// A request file and a stray file of the same name (`requests/r-x.yaml`) pushed together:
/// the bot removes both by one removal trailed for `r-x`, which is its own, not a forgery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_file_removed_with_its_namesake_request_leaves_the_bots_merge_genuine() {
    use breakglass::clock::Clock as _;
    use common::*;
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.lenient();
    let yaml = prod_request("1h");
    let files = [
        ("requests/prod/r-x.yaml", yaml.as_str()),
        ("requests/r-x.yaml", yaml.as_str()),
    ];
    s.forge
        .push_direct(REPO, &s.people.mallory, &files, "a request and a stray");
    s.settle().await;
    for (path, _) in files {
        assert!(
            s.forge.file_on(REPO, "main", path).is_none(),
            "{path} removed"
        );
    }
    let report = audit_of_forge(&s, s.clock.now()).await;
    let kinds: Vec<_> = report.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [AnomalyKind::LandedWithoutBot, AnomalyKind::LandedWithoutBot],
        "{:#?}",
        report.anomalies
    );
    assert!(
        report
            .anomalies
            .iter()
            .all(|a| a.detail.contains("removed by ")),
        "{:#?}",
        report.anomalies
    );
}

/// An iac role whose output puts the id in a directory (`grants/network/r-dns/main.tf`): the
/// bot's genuine grant merge is a grant, not forged trailers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_whose_output_names_the_id_in_a_directory_is_a_genuine_grant() {
    use breakglass::clock::Clock as _;
    use common::*;
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.lenient();
    s.edit_policy(&s.people.erin, "network", |p| {
        p.replace(
            "output: \"grants/{{ environment }}/{{ id }}.tf\"",
            "output: \"grants/{{ environment }}/{{ id }}/main.tf\"",
        )
    });
    s.settle().await;
    s.iac_granted("r-dns").await;
    let path = "grants/network/r-dns/main.tf";
    assert!(s.forge.file_on(REPO, "main", path).is_some(), "{path}");
    let report = audit_of_forge(&s, s.clock.now()).await;
    assert_eq!(report.anomalies, [], "{:#?}", report.anomalies);
    assert_eq!(report.grants.len(), 1);
}

/// `breakglass audit` (the library) of the scenario's requests repo on the test forge, as of
/// `now` (git2 blocks, so off the runtime's threads).
async fn audit_of_forge(s: &common::Scenario, now: DateTime<Utc>) -> audit::Report {
    let path = s.forge.repo_path(common::REPO);
    tokio::task::spawn_blocking(move || {
        let options = AuditOptions {
            branch: None,
            policies: None,
            report: ReportOptions::new(now),
        };
        audit::run(path.to_str().unwrap(), &options).unwrap()
    })
    .await
    .unwrap()
}

// A member's PR titled like a trailer (`Breakglass-Request: ghost`), merged by hand: GitHub's
// merge message carries the title, so the merge commit reads like a grant merge with a trailer
// block. The bot removes the request file as one that landed without it ("never granted"),
// and that removal disowns the merge: the audit shows no grant for `ghost`, only the anomaly
// (a helper review found it read as a grant, exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_merge_titled_as_a_trailer_is_no_grant_once_the_bot_removed_its_file() {
    use breakglass::clock::Clock as _;
    let s = common::Scenario::start(common::Backend::Sqlite)
        .await
        .unwrap();
    s.lenient();
    let mallory = &s.people.mallory;
    let yaml = common::prod_request("4h");
    s.forge.push_files(
        common::REPO,
        "ghost",
        mallory,
        &[("requests/prod/ghost.yaml", &yaml)],
        "request",
    );
    let pr = s.forge.open_pr(
        common::REPO,
        mallory,
        "ghost",
        "Breakglass-Request: ghost",
        "",
    );
    s.settle().await;
    s.forge.merge_pr(common::REPO, pr, mallory);
    s.settle().await;
    assert!(
        s.forge
            .file_on(common::REPO, "main", "requests/prod/ghost.yaml")
            .is_none(),
        "the bot removes the file"
    );
    let report = audit_of_forge(&s, s.clock.now()).await;
    assert!(
        report.grants.iter().all(|g| g.request_id != "ghost"),
        "{:#?}",
        report.grants
    );
    let ghost: Vec<_> = report
        .anomalies
        .iter()
        .filter(|a| a.request_id == "ghost")
        .map(|a| (a.kind, a.detail.clone()))
        .collect();
    assert!(
        ghost
            .iter()
            .any(|(kind, detail)| *kind == AnomalyKind::LandedWithoutBot
                && detail.starts_with(
                    "a merge carrying grant trailers for ghost that breakglass did not make"
                )),
        "{ghost:#?}"
    );
    assert_eq!(report.exit_code(), 1);
}
