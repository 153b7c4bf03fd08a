//! The fuzz targets' smoke run, for CI: neither nightly nor cargo-fuzz. Every
//! `breakglass::fuzzing` function runs over its seeds (`fuzz/seeds/<target>/`, plus the forges'
//! published webhook examples from `../shared/fixtures` when that folder exists) and over a few
//! thousand mutations of them (bit flips, interesting bytes, tokens, truncations,
//! duplications, splices) drawn from a seeded PRNG, so every run tries the same inputs.
//!
//! The functions assert their own invariants; a panic names the target, the mutation and the
//! input. The seeds must also *parse*, checked here through the public parsers, so that the
//! smoke never passes by feeding the fuzz functions nothing but garbage. The long runs are
//! `cargo +nightly fuzz run <target>` (docs/reliability.md).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use breakglass::audit::trailers::BotTrailers;
use breakglass::command::parse_commands;
use breakglass::forge::{ForgeEvent, github, gitlab};
use breakglass::fuzzing;
use breakglass::policy::{PolicyFile, lint};
use breakglass::request::{AccessRequest, RequestPath};

/// Mutations per target: enough to reach past the seeds' happy paths, few enough for a debug
/// build to finish each target in well under a couple of seconds.
const MUTATIONS: usize = 1_000;

/// No single input may take this long, even unoptimised: a hang or a quadratic blow-up.
const SLOWEST_ALLOWED: Duration = Duration::from_secs(2);

/// Bytes and tokens that the parsers treat specially, for insertions.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\n\n",
    b" ",
    b"\t",
    b":",
    b"\"",
    b"'",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"null",
    b"-1",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b">",
    b"`",
    b"```",
    b"<!--",
    b"/breakglass ",
    b"-- ",
    b"Breakglass-Request: ",
    b"Breakglass-Revokes: ",
    b"Signed-off-by: ",
    b"#",
    b"- ",
    b"&a ",
    b"*a",
    b"!!str ",
    b"---\n",
    b"\xc3\xa9",
    b"\xf0\x9f\xa6\x80",
    b"\xff",
    b"\x00",
    b"K",
    b"\xe2\x84\xaa",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The committed seeds of a target, and for the webhook targets the shared fixtures with
/// their event header line, as `fuzz/seed.sh` builds them for the long runs.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds = files_in(&root().join("fuzz/seeds").join(target));
    let fixtures = root().join("../shared/fixtures");
    // `issue_comment.created.payload.json` holds an `issue_comment` event; GitLab's examples
    // are named after what they show.
    let header = |name: &str| -> Option<String> {
        let event = match target {
            "github_webhook" => name.strip_suffix(".payload.json")?.split('.').next()?,
            _ => match name.strip_suffix(".json")? {
                "push" => "Push Hook",
                "merge_request" => "Merge Request Hook",
                "note_issue" | "note_merge_request" => "Note Hook",
                "emoji" => "Emoji Hook",
                _ => return None,
            },
        };
        Some(event.to_owned())
    };
    let dir = match target {
        "github_webhook" => fixtures.join("github"),
        "gitlab_webhook" => fixtures.join("gitlab"),
        _ => return seeds,
    };
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: {} is missing; only the committed seeds run",
            dir.display()
        );
        return seeds;
    }
    for (name, body) in files_in(&dir) {
        if let Some(event) = header(&name) {
            seeds.push((
                format!("fixture {name}"),
                [event.as_bytes(), b"\n", &body].concat(),
            ));
        }
    }
    seeds
}

/// xorshift64*: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four edits of a seed; the first line (a webhook's event header) is as exposed to
/// them as the rest.
fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            2 => data.truncate(at),
            3 => {
                let end = (at + rng.below(64)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy.iter().copied().cycle().take(copy.len() * 8));
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())].1;
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ if !data.is_empty() => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            _ => {}
        }
    }
    data
}

/// Runs `target` over the seeds and [`MUTATIONS`] mutations; panics with the input that
/// failed, and if the slowest input took too long.
fn smoke(name: &str, target: fn(&[u8]), seeds: &[(String, Vec<u8>)]) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let mut slowest = (Duration::ZERO, String::new());
    let started = Instant::now();
    let inputs = seeds
        .iter()
        .map(|(label, data)| (format!("seed {label}"), data.clone()))
        .chain((0..MUTATIONS).map(|i| (format!("mutation {i}"), mutate(&mut rng, seeds))));
    for (label, data) in inputs {
        let start = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            panic!(
                "fuzzing::{name} panicked on {label}: {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        let took = start.elapsed();
        if took > slowest.0 {
            slowest = (took, label);
        }
    }
    eprintln!(
        "{name}: {} seeds + {MUTATIONS} mutations in {:?}; slowest {:?} ({})",
        seeds.len(),
        started.elapsed(),
        slowest.0,
        slowest.1
    );
    assert!(
        slowest.0 < SLOWEST_ALLOWED,
        "{name}: {} took {:?}",
        slowest.1,
        slowest.0
    );
}

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).expect("seeds are UTF-8")
}

fn split_header(data: &[u8]) -> (&str, &[u8]) {
    let end = data
        .iter()
        .position(|&b| b == b'\n')
        .expect("an event line");
    (text(&data[..end]), &data[end + 1..])
}

#[test]
fn github_webhook_survives_its_seeds_and_mutations() {
    let seeds = seeds("github_webhook");
    for (label, data) in &seeds {
        let (event, body) = split_header(data);
        let delivery =
            github::webhook::parse("seed", event, body).unwrap_or_else(|e| panic!("{label}: {e}"));
        let ignored = matches!(delivery.event, ForgeEvent::Ignored { .. });
        // Deleted comments and the like are ignored by design; the seeds must reach past that.
        assert!(!ignored || label.contains("fixture"), "{label} is ignored");
    }
    smoke("github_webhook", fuzzing::github_webhook, &seeds);
}

#[test]
fn gitlab_webhook_survives_its_seeds_and_mutations() {
    let seeds = seeds("gitlab_webhook");
    for (label, data) in &seeds {
        let (event, body) = split_header(data);
        let delivery =
            gitlab::webhook::parse("seed", event, body).unwrap_or_else(|e| panic!("{label}: {e}"));
        let ignored = matches!(delivery.event, ForgeEvent::Ignored { .. });
        // GitLab's emoji example is an award on a note, which the bot ignores by design.
        assert!(!ignored || label.contains("fixture"), "{label} is ignored");
    }
    smoke("gitlab_webhook", fuzzing::gitlab_webhook, &seeds);
}

#[test]
fn slash_commands_survive_their_seeds_and_mutations() {
    let seeds = seeds("slash_commands");
    for (label, data) in &seeds {
        let commands = parse_commands(text(data));
        assert!(!commands.is_empty(), "{label}: no command read");
    }
    smoke("slash_commands", fuzzing::slash_commands, &seeds);
}

#[test]
fn request_yaml_survives_its_seeds_and_mutations() {
    let seeds = seeds("request_yaml");
    for (label, data) in &seeds {
        let parsed = AccessRequest::from_yaml(text(data)).is_ok();
        let path = RequestPath::parse(text(data)).is_some();
        assert!(
            parsed || path,
            "{label} is neither a request nor a request path"
        );
    }
    smoke("request_yaml", fuzzing::request_yaml, &seeds);
}

#[test]
fn policy_yaml_survives_its_seeds_and_mutations() {
    let seeds = seeds("policy_yaml");
    for (label, data) in &seeds {
        let file = PolicyFile {
            path: format!("policies/{label}").into(),
            text: text(data).to_owned(),
        };
        assert_eq!(lint(&[file]), [], "{label}");
    }
    smoke("policy_yaml", fuzzing::policy_yaml, &seeds);
}

#[test]
fn trailers_survive_their_seeds_and_mutations() {
    let seeds = seeds("trailers");
    for (label, data) in &seeds {
        assert!(BotTrailers::parse(text(data)).any, "{label}");
    }
    smoke("trailers", fuzzing::trailers, &seeds);
}

#[test]
fn audit_commit_survives_its_seeds_and_mutations() {
    let seeds = seeds("audit_commit");
    for (label, data) in &seeds {
        let (header, message) = text(data)
            .split_once("\n\n")
            .expect("a header and a message");
        assert!(
            header.lines().any(|l| l.starts_with("committer ")),
            "{label}"
        );
        assert!(!message.is_empty(), "{label}");
    }
    smoke("audit_commit", fuzzing::audit_commit, &seeds);
}
