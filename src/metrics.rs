//! Counters and gauges for `GET /metrics` (Prometheus text format), kept as atomics so that the
//! hot paths only do an increment. Gauges that live in the database (grants active, timer lag)
//! are read at scrape time by the server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Labelled counters, e.g. `breakglass_webhooks_total{result="accepted"}`.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    /// Adds one to `name{label="value"}`; `label` is e.g. `result="accepted"`.
    pub fn inc(&self, name: &'static str, label: impl Into<String>) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters.entry((name, label.into())).or_default() += 1;
    }

    /// The value of one counter (tests read it).
    pub fn get(&self, name: &'static str, label: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .get(&(name, label.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The counters in Prometheus text format, with HELP and TYPE lines. Every family in
    /// [`FAMILIES`] is listed from the start, before its first sample: a scrape right after a
    /// start shows what the service counts, and an alert on a family is never on one missing.
    pub fn render_counters(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut families: BTreeMap<&str, Vec<(&str, u64)>> = FAMILIES
            .iter()
            .map(|(name, _)| (*name, Vec::new()))
            .collect();
        for ((name, label), value) in counters.iter() {
            families.entry(name).or_default().push((label, *value));
        }
        let mut out = String::new();
        for (name, samples) in families {
            render_family(&mut out, (name, help(name), "counter"), samples);
        }
        out
    }
}

/// The counter families and their help text.
const FAMILIES: [(&str, &str); 7] = [
    (
        "breakglass_anomalies_total",
        "Anomalies found (a hand merge, an overdue review, a blocked revert...) by kind.",
    ),
    (
        "breakglass_decisions_total",
        "Policy decisions on request PRs by outcome.",
    ),
    ("breakglass_grants_total", "Grants applied."),
    ("breakglass_jobs_total", "Jobs run by kind and result."),
    ("breakglass_revocations_total", "Revocations by result."),
    (
        "breakglass_tampering_total",
        "Foreign commits found on the bot's own branches.",
    ),
    ("breakglass_webhooks_total", "Webhook deliveries by result."),
];

fn help(name: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|(family, _)| *family == name)
        .map_or("breakglass counter.", |(_, help)| help)
}

/// Writes one gauge with its HELP and TYPE lines.
pub fn render_gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let samples = samples.iter().map(|(label, value)| (label.as_str(), value));
    render_family(out, (name, help, "gauge"), samples);
}

/// Writes one metric family, `(name, help, type)`, with its samples (label set, value).
fn render_family<V: std::fmt::Display>(
    out: &mut String,
    (name, help, kind): (&str, &str, &str),
    samples: impl IntoIterator<Item = (impl AsRef<str>, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (label, value) in samples {
        match label.as_ref() {
            "" => {
                let _ = writeln!(out, "{name} {value}");
            }
            label => {
                let _ = writeln!(out, "{name}{{{label}}} {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.inc("breakglass_webhooks_total", "result=\"accepted\"");
        metrics.inc("breakglass_webhooks_total", "result=\"accepted\"");
        metrics.inc("breakglass_webhooks_total", "result=\"bad_signature\"");
        assert_eq!(
            metrics.get("breakglass_webhooks_total", "result=\"accepted\""),
            2
        );
        let text = metrics.render_counters();
        assert!(
            text.ends_with("# HELP breakglass_webhooks_total Webhook deliveries by result.\n# TYPE breakglass_webhooks_total counter\nbreakglass_webhooks_total{result=\"accepted\"} 2\nbreakglass_webhooks_total{result=\"bad_signature\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn every_counter_family_is_listed_before_its_first_sample() {
        let text = Metrics::default().render_counters();
        for (name, help) in FAMILIES {
            assert!(text.contains(&format!("# HELP {name} {help}\n# TYPE {name} counter\n")));
        }
        assert!(!text.lines().any(|line| !line.starts_with('#')), "{text}");
        // Counted once each: every family's lines come right before its samples.
        let metrics = Metrics::default();
        for (name, _) in FAMILIES {
            metrics.inc(name, "kind=\"x\"");
        }
        let text = metrics.render_counters();
        for (name, help) in FAMILIES {
            let family =
                format!("# HELP {name} {help}\n# TYPE {name} counter\n{name}{{kind=\"x\"}} 1\n");
            assert!(text.contains(&family), "{text}");
        }
    }

    /// Every counter the code increments is one of [`FAMILIES`], with its own help text.
    #[test]
    fn every_counter_incremented_is_a_listed_family() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut names = std::collections::BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (at, _) in text.match_indices("\"breakglass_") {
                        let name = text[at + 1..].split('"').next().unwrap_or_default();
                        if name.ends_with("_total") {
                            names.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        assert!(names.len() >= FAMILIES.len(), "{names:?}");
        for name in names {
            assert!(
                FAMILIES.iter().any(|(family, _)| *family == name),
                "{name} is counted but not listed in FAMILIES"
            );
        }
    }
}
