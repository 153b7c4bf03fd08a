//! GitHub's JSON shapes, rendered from the model. REST answers and webhook payloads share these,
//! as on GitHub, so a shape fixed for octocrab is also fixed for the bot's webhook parser.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::git;
use crate::state::{
    CheckRunRec, CommentRec, ForgeState, IssueRec, LabelRec, PrRec, ReactionRec, RepoRec,
    ReviewRec, StatusRec,
};

/// GitHub's timestamp format: seconds, `Z`.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

/// Escapes what a URL path segment may not hold raw (bot logins have brackets).
pub(crate) fn url_seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' | '/' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

fn node_id(kind: &str, id: u64) -> String {
    format!("{kind}_kgDO{id:08}")
}

/// A user or organization account (the `simple-user` shape).
pub(crate) fn account(st: &ForgeState, login: &str) -> Value {
    let b = &st.base_url;
    let (id, kind) = match st.users.get(login) {
        Some(u) => (u.id, u.kind.as_str()),
        // Repository owners that are not users are organizations.
        None => (org_id(login), "Organization"),
    };
    let l = url_seg(login);
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", id),
        "avatar_url": format!("{b}/avatars/u/{id}?v=4"),
        "gravatar_id": "",
        "url": format!("{b}/users/{l}"),
        "html_url": format!("{b}/{l}"),
        "followers_url": format!("{b}/users/{l}/followers"),
        "following_url": format!("{b}/users/{l}/following{{/other_user}}"),
        "gists_url": format!("{b}/users/{l}/gists{{/gist_id}}"),
        "starred_url": format!("{b}/users/{l}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{b}/users/{l}/subscriptions"),
        "organizations_url": format!("{b}/users/{l}/orgs"),
        "repos_url": format!("{b}/users/{l}/repos"),
        "events_url": format!("{b}/users/{l}/events{{/privacy}}"),
        "received_events_url": format!("{b}/users/{l}/received_events"),
        "type": kind,
        "site_admin": false,
    })
}

/// The `organization` object of payloads for org-owned repositories.
pub(crate) fn organization(st: &ForgeState, login: &str) -> Value {
    let b = &st.base_url;
    let id = org_id(login);
    let l = url_seg(login);
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("O", id),
        "url": format!("{b}/orgs/{l}"),
        "repos_url": format!("{b}/orgs/{l}/repos"),
        "events_url": format!("{b}/orgs/{l}/events"),
        "hooks_url": format!("{b}/orgs/{l}/hooks"),
        "issues_url": format!("{b}/orgs/{l}/issues"),
        "members_url": format!("{b}/orgs/{l}/members{{/member}}"),
        "public_members_url": format!("{b}/orgs/{l}/public_members{{/member}}"),
        "avatar_url": format!("{b}/avatars/u/{id}?v=4"),
        "description": "",
    })
}

/// The stable id of an organization (owners that are not users).
pub(crate) fn org_id(login: &str) -> u64 {
    let mut h: u64 = 0x811c_9dc5;
    for b in login.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0193);
    }
    100_000_000 + h % 9_000_000
}

/// The full profile of `GET /users/{login}` and `GET /user`.
pub(crate) fn profile(st: &ForgeState, login: &str) -> Value {
    let mut v = account(st, login);
    let created = st
        .users
        .get(login)
        .map(|u| u.created_at)
        .unwrap_or_else(|| st.now());
    if let Value::Object(m) = &mut v {
        for (k, val) in [
            ("name", json!(login)),
            ("company", Value::Null),
            ("blog", json!("")),
            ("location", Value::Null),
            ("email", Value::Null),
            ("hireable", Value::Null),
            ("bio", Value::Null),
            ("twitter_username", Value::Null),
            ("public_repos", json!(0)),
            ("public_gists", json!(0)),
            ("followers", json!(0)),
            ("following", json!(0)),
            ("created_at", json!(ts(created))),
            ("updated_at", json!(ts(created))),
        ] {
            m.insert(k.to_owned(), val);
        }
    }
    v
}

/// What the `repository` object says about a repository (the forge's own, or a fork of it).
struct RepoFacts<'a> {
    id: u64,
    owner: &'a str,
    name: &'a str,
    default_branch: &'a str,
    created_at: DateTime<Utc>,
    pushed_at: DateTime<Utc>,
    open_issues: usize,
    fork: bool,
    delete_branch_on_merge: bool,
}

/// When the default branch last moved (its tip's commit time).
fn pushed_at(r: &RepoRec) -> DateTime<Utc> {
    r.git
        .find_reference(&format!("refs/heads/{}", r.default_branch))
        .ok()
        .and_then(|rf| rf.peel_to_commit().ok())
        .map(|c| c.time().seconds())
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or(r.created_at)
}

/// The `repository` object.
pub(crate) fn repo(st: &ForgeState, r: &RepoRec) -> Value {
    repo_json(
        st,
        &RepoFacts {
            id: r.id,
            owner: &r.owner,
            name: &r.name,
            default_branch: &r.default_branch,
            created_at: r.created_at,
            pushed_at: pushed_at(r),
            open_issues: r.issues.values().filter(|i| i.open).count(),
            fork: false,
            delete_branch_on_merge: r.delete_branch_on_merge,
        },
    )
}

/// The `repository` object of `fork` (`owner/name`), a fork of `base` that the forge does not
/// hold as a repository: only pull requests from it exist (`head.repo`).
pub(crate) fn fork_repo(st: &ForgeState, base: &RepoRec, fork: &str) -> Value {
    let (owner, name) = fork.split_once('/').unwrap_or((fork, fork));
    repo_json(
        st,
        &RepoFacts {
            id: fork_id(fork),
            owner,
            name,
            default_branch: &base.default_branch,
            created_at: base.created_at,
            pushed_at: pushed_at(base),
            open_issues: 0,
            fork: true,
            delete_branch_on_merge: false,
        },
    )
}

/// A stable id for a fork, apart from the forge's own (small, sequential) repository ids.
fn fork_id(full: &str) -> u64 {
    200_000_000 + org_id(full) % 100_000_000
}

fn repo_json(st: &ForgeState, f: &RepoFacts<'_>) -> Value {
    let b = &st.base_url;
    let full = format!("{}/{}", f.owner, f.name);
    let api = format!("{b}/repos/{full}");
    let html = format!("{b}/{full}");
    let (open, pushed) = (f.open_issues, f.pushed_at);
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("id", json!(f.id));
    put("node_id", json!(node_id("R", f.id)));
    put("name", json!(f.name));
    put("full_name", json!(full));
    put("private", json!(false));
    put("owner", account(st, f.owner));
    put("html_url", json!(html));
    put("description", Value::Null);
    put("fork", json!(f.fork));
    put("url", json!(api));
    for (key, suffix) in [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ] {
        put(key, json!(format!("{api}{suffix}")));
    }
    put("created_at", json!(ts(f.created_at)));
    put("updated_at", json!(ts(pushed)));
    put("pushed_at", json!(ts(pushed)));
    put("git_url", json!(format!("git://{}/{full}.git", host(b))));
    put("ssh_url", json!(format!("git@{}:{full}.git", host(b))));
    put("clone_url", json!(format!("{html}.git")));
    put("svn_url", json!(html));
    put("homepage", Value::Null);
    put("size", json!(0));
    put("stargazers_count", json!(0));
    put("watchers_count", json!(0));
    put("language", Value::Null);
    put("has_issues", json!(true));
    put("has_projects", json!(false));
    put("has_downloads", json!(true));
    put("has_wiki", json!(false));
    put("has_pages", json!(false));
    put("has_discussions", json!(false));
    put("forks_count", json!(0));
    put("mirror_url", Value::Null);
    put("archived", json!(false));
    put("disabled", json!(false));
    put("open_issues_count", json!(open));
    put("license", Value::Null);
    put("allow_forking", json!(true));
    put("is_template", json!(false));
    put("web_commit_signoff_required", json!(false));
    put("topics", json!([]));
    put("visibility", json!("public"));
    put("forks", json!(0));
    put("open_issues", json!(open));
    put("watchers", json!(0));
    put("default_branch", json!(f.default_branch));
    put("delete_branch_on_merge", json!(f.delete_branch_on_merge));
    put("custom_properties", json!({}));
    Value::Object(m)
}

fn host(base: &str) -> &str {
    base.trim_start_matches("http://")
        .trim_start_matches("https://")
}

/// A label; labels a test never created explicitly get GitHub's grey.
pub(crate) fn label(st: &ForgeState, r: &RepoRec, name: &str) -> Value {
    let api = format!("{}/repos/{}", st.base_url, r.full_name());
    match r.labels.get(name) {
        Some(LabelRec {
            id,
            color,
            description,
            ..
        }) => json!({
            "id": id,
            "node_id": node_id("LA", *id),
            "url": format!("{api}/labels/{}", url_seg(name)),
            "name": name,
            "color": color,
            "default": false,
            "description": description,
        }),
        None => json!({
            "id": 0,
            "node_id": node_id("LA", 0),
            "url": format!("{api}/labels/{}", url_seg(name)),
            "name": name,
            "color": "ededed",
            "default": false,
            "description": null,
        }),
    }
}

fn labels(st: &ForgeState, r: &RepoRec, issue: &IssueRec) -> Value {
    Value::Array(issue.labels.iter().map(|l| label(st, r, l)).collect())
}

/// The reactions summary object of issues and comments.
fn reactions_summary(url: String, reactions: &[ReactionRec]) -> Value {
    let mut m = Map::new();
    m.insert("url".into(), json!(url));
    m.insert("total_count".into(), json!(reactions.len()));
    for c in crate::routes::REACTIONS {
        let n = reactions.iter().filter(|r| r.content == *c).count();
        m.insert((*c).into(), json!(n));
    }
    Value::Object(m)
}

/// `OWNER`, `MEMBER` (in a team of the owning org) or `CONTRIBUTOR`.
fn association(st: &ForgeState, r: &RepoRec, login: &str) -> &'static str {
    if login == r.owner {
        return "OWNER";
    }
    let prefix = format!("{}/", r.owner);
    let member = st
        .teams
        .iter()
        .any(|(team, members)| team.starts_with(&prefix) && members.contains(login));
    if member { "MEMBER" } else { "CONTRIBUTOR" }
}

/// An issue (or a PR seen through the issues API, with its `pull_request` key).
pub(crate) fn issue(st: &ForgeState, r: &RepoRec, i: &IssueRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let api = format!("{b}/repos/{full}/issues/{}", i.number);
    let comments = r
        .comments
        .values()
        .filter(|c| c.issue_number == i.number)
        .count();
    let mut v = json!({
        "url": api,
        "repository_url": format!("{b}/repos/{full}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": format!("{b}/{full}/{}/{}", if i.pr.is_some() { "pull" } else { "issues" }, i.number),
        "id": i.id,
        "node_id": node_id("I", i.id),
        "number": i.number,
        "title": i.title,
        "user": account(st, &i.user),
        "labels": labels(st, r, i),
        "state": if i.open { "open" } else { "closed" },
        "locked": false,
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "comments": comments,
        "created_at": ts(i.created_at),
        "updated_at": ts(i.updated_at),
        "closed_at": opt_ts(i.closed_at),
        "author_association": association(st, r, &i.user),
        "active_lock_reason": null,
        "draft": i.pr.as_ref().is_some_and(|p| p.draft),
        "body": i.body,
        "reactions": reactions_summary(format!("{api}/reactions"), &i.reactions),
        "timeline_url": format!("{api}/timeline"),
        "performed_via_github_app": null,
        "state_reason": if i.open { Value::Null } else { json!("completed") },
    });
    if let (Some(pr), Value::Object(m)) = (&i.pr, &mut v) {
        m.insert(
            "pull_request".into(),
            json!({
                "url": format!("{b}/repos/{full}/pulls/{}", i.number),
                "html_url": format!("{b}/{full}/pull/{}", i.number),
                "diff_url": format!("{b}/{full}/pull/{}.diff", i.number),
                "patch_url": format!("{b}/{full}/pull/{}.patch", i.number),
                "merged_at": opt_ts(pr.merged_at),
            }),
        );
    }
    v
}

/// `base` or `head` of a pull request: a branch of `repo`, owned by `owner`.
fn branch_side(st: &ForgeState, owner: &str, repo: Value, branch: &str, sha: &str) -> Value {
    json!({
        "label": format!("{owner}:{branch}"),
        "ref": branch,
        "sha": sha,
        "user": account(st, owner),
        "repo": repo,
    })
}

/// The head of a pull request: a branch of this repository, or of the fork it came from.
fn head_side(st: &ForgeState, r: &RepoRec, pr: &PrRec) -> Value {
    let repo_json = match &pr.head_repo {
        Some(_) if pr.fork_deleted => Value::Null,
        Some(fork) => fork_repo(st, r, fork),
        None => repo(st, r),
    };
    branch_side(
        st,
        pr.head_owner(&r.owner),
        repo_json,
        &pr.head_ref,
        &pr.head_sha,
    )
}

/// `mergeable` and `mergeable_state` of an open pull request: a real trial merge (or the
/// test's conflict flag) first, then draft, then the base branch's protection.
fn mergeability(
    st: &ForgeState,
    r: &RepoRec,
    pr: &PrRec,
    base: git2::Oid,
    head: git2::Oid,
) -> (bool, &'static str) {
    let clean = !pr.conflicting && git::merges_cleanly(&r.git, base, head).unwrap_or(false);
    let state = if !clean {
        "dirty"
    } else if pr.draft {
        "draft"
    } else if crate::ops::protection::unmet(st, r, pr, None).is_some() {
        "blocked"
    } else {
        "clean"
    };
    (clean, state)
}

/// A pull request, with `mergeable` computed by a real trial merge.
pub(crate) fn pull(st: &ForgeState, r: &RepoRec, i: &IssueRec, pr: &PrRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let api = format!("{b}/repos/{full}/pulls/{}", i.number);
    let issue_api = format!("{b}/repos/{full}/issues/{}", i.number);
    let html = format!("{b}/{full}/pull/{}", i.number);
    let base_tip = git::branch_tip(&r.git, &pr.base_ref);
    let head = git2::Oid::from_str(&pr.head_sha).ok();
    let (mut commits, mut additions, mut deletions, mut changed) = (0, 0, 0, 0);
    let mut mergeable = Value::Null;
    let mut mergeable_state = "unknown";
    if let (Some(base), Some(head)) = (base_tip, head) {
        let from = if pr.merged_at.is_some() {
            // After the merge the base contains the head: measure against the old fork point.
            r.git
                .find_commit(head)
                .ok()
                .and_then(|_| merge_commit_first_parent(r, pr))
                .and_then(|p| git::merge_base(&r.git, p, head))
        } else {
            git::merge_base(&r.git, base, head)
        };
        if let Some(from) = from {
            commits = git::commits_between(&r.git, from, head)
                .map(|c| c.len())
                .unwrap_or(0);
            if let Ok(files) = git::diff(&r.git, from, head) {
                changed = files.len();
                additions = files.iter().map(|f| f.additions).sum();
                deletions = files.iter().map(|f| f.deletions).sum();
            }
        }
        if i.open {
            let (clean, state) = mergeability(st, r, pr, base, head);
            mergeable = json!(clean);
            mergeable_state = state;
        }
    }
    let base_sha = base_tip.map(|o| o.to_string()).unwrap_or_default();
    let comments = r
        .comments
        .values()
        .filter(|c| c.issue_number == i.number)
        .count();
    json!({
        "url": api,
        "id": pr.id,
        "node_id": node_id("PR", pr.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": issue_api,
        "number": i.number,
        "state": if i.open { "open" } else { "closed" },
        "locked": false,
        "title": i.title,
        "user": account(st, &i.user),
        "body": i.body,
        "created_at": ts(i.created_at),
        "updated_at": ts(i.updated_at),
        "closed_at": opt_ts(i.closed_at),
        "merged_at": opt_ts(pr.merged_at),
        "merge_commit_sha": pr.merge_commit_sha,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "labels": labels(st, r, i),
        "milestone": null,
        "draft": pr.draft,
        "commits_url": format!("{api}/commits"),
        "review_comments_url": format!("{api}/comments"),
        "review_comment_url": format!("{b}/repos/{full}/pulls/comments{{/number}}"),
        "comments_url": format!("{issue_api}/comments"),
        "statuses_url": format!("{b}/repos/{full}/statuses/{}", pr.head_sha),
        "head": head_side(st, r, pr),
        "base": branch_side(st, &r.owner, repo(st, r), &pr.base_ref, &base_sha),
        "_links": {
            "self": {"href": api},
            "html": {"href": html},
            "issue": {"href": issue_api},
            "comments": {"href": format!("{issue_api}/comments")},
            "review_comments": {"href": format!("{api}/comments")},
            "review_comment": {"href": format!("{b}/repos/{full}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{api}/commits")},
            "statuses": {"href": format!("{b}/repos/{full}/statuses/{}", pr.head_sha)},
        },
        "author_association": association(st, r, &i.user),
        "auto_merge": null,
        "active_lock_reason": null,
        "merged": pr.merged_at.is_some(),
        "mergeable": mergeable,
        "rebaseable": mergeable,
        "mergeable_state": mergeable_state,
        "merged_by": pr.merged_by.as_deref().map(|l| account(st, l)),
        "comments": comments,
        "review_comments": 0,
        "maintainer_can_modify": false,
        "commits": commits,
        "additions": additions,
        "deletions": deletions,
        "changed_files": changed,
    })
}

fn merge_commit_first_parent(r: &RepoRec, pr: &PrRec) -> Option<git2::Oid> {
    let sha = pr.merge_commit_sha.as_deref()?;
    let c = r.git.find_commit(git2::Oid::from_str(sha).ok()?).ok()?;
    c.parent_id(0).ok()
}

/// An issue comment.
pub(crate) fn comment(st: &ForgeState, r: &RepoRec, c: &CommentRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let api = format!("{b}/repos/{full}/issues/comments/{}", c.id);
    let kind = match r.issues.get(&c.issue_number) {
        Some(i) if i.pr.is_some() => "pull",
        _ => "issues",
    };
    json!({
        "url": api,
        "html_url": format!("{b}/{full}/{kind}/{}#issuecomment-{}", c.issue_number, c.id),
        "issue_url": format!("{b}/repos/{full}/issues/{}", c.issue_number),
        "id": c.id,
        "node_id": node_id("IC", c.id),
        "user": account(st, &c.user),
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
        "author_association": association(st, r, &c.user),
        "performed_via_github_app": null,
        "body": c.body,
        "reactions": reactions_summary(format!("{api}/reactions"), &c.reactions),
    })
}

/// A reaction.
pub(crate) fn reaction(st: &ForgeState, x: &ReactionRec) -> Value {
    json!({
        "id": x.id,
        "node_id": node_id("REA", x.id),
        "user": account(st, &x.user),
        "content": x.content,
        "created_at": ts(x.created_at),
    })
}

/// A review; `webhook` selects the lower-case state of payloads over the REST upper case.
pub(crate) fn review(
    st: &ForgeState,
    r: &RepoRec,
    number: u64,
    x: &ReviewRec,
    webhook: bool,
) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let html = format!("{b}/{full}/pull/{number}#pullrequestreview-{}", x.id);
    let pr_api = format!("{b}/repos/{full}/pulls/{number}");
    json!({
        "id": x.id,
        "node_id": node_id("PRR", x.id),
        "user": account(st, &x.user),
        "body": if x.body.is_empty() && webhook { Value::Null } else { json!(x.body) },
        "commit_id": x.commit_id,
        "submitted_at": ts(x.submitted_at),
        "state": if webhook { x.state.as_webhook() } else { x.state.as_rest() },
        "html_url": html,
        "pull_request_url": pr_api,
        "author_association": association(st, r, &x.user),
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_api}},
    })
}

/// A commit status.
pub(crate) fn status(st: &ForgeState, r: &RepoRec, s: &StatusRec) -> Value {
    let b = &st.base_url;
    json!({
        "url": format!("{b}/repos/{}/statuses/{}", r.full_name(), s.sha),
        "avatar_url": null,
        "id": s.id,
        "node_id": node_id("SC", s.id),
        "state": s.state,
        "description": s.description,
        "target_url": s.target_url,
        "context": s.context,
        "created_at": ts(s.created_at),
        "updated_at": ts(s.created_at),
        "creator": account(st, &s.creator),
    })
}

/// A check run.
pub(crate) fn check_run(st: &ForgeState, r: &RepoRec, c: &CheckRunRec) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    json!({
        "id": c.id,
        "node_id": node_id("CR", c.id),
        "head_sha": c.head_sha,
        "external_id": c.external_id.clone().unwrap_or_default(),
        "url": format!("{b}/repos/{full}/check-runs/{}", c.id),
        "html_url": format!("{b}/{full}/runs/{}", c.id),
        "details_url": c.details_url,
        "status": c.status,
        "conclusion": c.conclusion,
        "started_at": ts(c.started_at),
        "completed_at": opt_ts(c.completed_at),
        "output": {
            "title": c.title,
            "summary": c.summary,
            "text": c.text,
            "annotations_count": 0,
            "annotations_url": format!("{b}/repos/{full}/check-runs/{}/annotations", c.id),
        },
        "name": c.name,
        "check_suite": {"id": c.id},
        "app": null,
        "pull_requests": [],
    })
}

/// A commit in the shape of `GET /repos/{o}/{r}/commits/{sha}` (also used inside compare).
pub(crate) fn commit(st: &ForgeState, r: &RepoRec, d: &git::CommitDetail) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let api = format!("{b}/repos/{full}/commits/{}", d.sha);
    let author_account = if st.users.contains_key(&d.author_name) {
        account(st, &d.author_name)
    } else {
        Value::Null
    };
    json!({
        "url": api,
        "sha": d.sha,
        "node_id": node_id("C", 0),
        "html_url": format!("{b}/{full}/commit/{}", d.sha),
        "comments_url": format!("{api}/comments"),
        "commit": {
            "url": format!("{b}/repos/{full}/git/commits/{}", d.sha),
            "author": {"name": d.author_name, "email": d.author_email, "date": ts(d.author_time)},
            "committer": {"name": d.committer_name, "email": d.committer_email, "date": ts(d.committer_time)},
            "message": d.message,
            "tree": {"sha": d.tree, "url": format!("{b}/repos/{full}/git/trees/{}", d.tree)},
            "comment_count": 0,
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
        },
        "author": author_account,
        "committer": null,
        "parents": d.parents.iter().map(|p| json!({
            "sha": p,
            "url": format!("{b}/repos/{full}/commits/{p}"),
            "html_url": format!("{b}/{full}/commit/{p}"),
        })).collect::<Vec<_>>(),
    })
}

/// A changed file as in `pulls/{n}/files` and `compare`.
pub(crate) fn file_diff(st: &ForgeState, r: &RepoRec, head: &str, f: &git::FileDiff) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    let path = url_seg(&f.filename);
    let mut v = json!({
        "sha": f.sha,
        "filename": f.filename,
        "status": f.status,
        "additions": f.additions,
        "deletions": f.deletions,
        "changes": f.additions + f.deletions,
        "blob_url": format!("{b}/{full}/blob/{head}/{path}"),
        "raw_url": format!("{b}/{full}/raw/{head}/{path}"),
        "contents_url": format!("{b}/repos/{full}/contents/{path}?ref={head}"),
    });
    if let Value::Object(m) = &mut v {
        if let Some(p) = &f.patch {
            m.insert("patch".into(), json!(p));
        }
        if let Some(prev) = &f.previous_filename {
            m.insert("previous_filename".into(), json!(prev));
        }
    }
    v
}

/// A git ref object.
pub(crate) fn git_ref(st: &ForgeState, r: &RepoRec, branch: &str, sha: &str) -> Value {
    let b = &st.base_url;
    let full = r.full_name();
    json!({
        "ref": format!("refs/heads/{branch}"),
        "node_id": node_id("REF", 0),
        "url": format!("{b}/repos/{full}/git/refs/heads/{}", url_seg(branch)),
        "object": {
            "type": "commit",
            "sha": sha,
            "url": format!("{b}/repos/{full}/git/commits/{sha}"),
        },
    })
}

/// Base64 the way the contents API sends it: wrapped at 60 characters.
pub(crate) fn wrapped_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(raw.len() + raw.len() / 60 + 1);
    for chunk in raw.as_bytes().chunks(60) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Where a contents-API entry lives.
#[derive(Clone, Copy)]
pub(crate) struct ContentRef<'a> {
    pub git_ref: &'a str,
    pub path: &'a str,
    pub sha: &'a str,
    pub kind: &'a str,
    pub size: usize,
}

/// A contents-API answer for a symbolic link GitHub does not follow: its link text as
/// `target`, no `content`.
pub(crate) fn symlink_entry(
    st: &ForgeState,
    r: &RepoRec,
    at: &ContentRef<'_>,
    target: &str,
) -> Value {
    let mut v = content_entry(st, r, at, None);
    if let Value::Object(m) = &mut v {
        m.insert("target".into(), json!(target));
    }
    v
}

/// A contents-API entry (file with content, or a directory entry without).
pub(crate) fn content_entry(
    st: &ForgeState,
    r: &RepoRec,
    at: &ContentRef<'_>,
    content: Option<&[u8]>,
) -> Value {
    let ContentRef {
        git_ref,
        path,
        sha,
        kind,
        size,
    } = *at;
    let b = &st.base_url;
    let full = r.full_name();
    let name = path.rsplit('/').next().unwrap_or(path);
    let p = url_seg(path);
    let url = format!("{b}/repos/{full}/contents/{p}?ref={}", url_seg(git_ref));
    let git_url = if kind == "dir" {
        format!("{b}/repos/{full}/git/trees/{sha}")
    } else {
        format!("{b}/repos/{full}/git/blobs/{sha}")
    };
    let html = format!(
        "{b}/{full}/{}/{}/{p}",
        if kind == "dir" { "tree" } else { "blob" },
        url_seg(git_ref)
    );
    let mut v = json!({
        "type": kind,
        "size": size,
        "name": name,
        "path": path,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html,
        "download_url": if kind == "dir" { Value::Null } else { json!(format!("{b}/{full}/raw/{}/{p}", url_seg(git_ref))) },
        "_links": {"self": url, "git": git_url, "html": html},
    });
    if let (Some(bytes), Value::Object(m)) = (content, &mut v) {
        m.insert("content".into(), json!(wrapped_base64(bytes)));
        m.insert("encoding".into(), json!("base64"));
    }
    v
}
