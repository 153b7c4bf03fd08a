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
            let _ = writeln!(out, "# HELP {name} {}", help(name));
            let _ = writeln!(out, "# TYPE {name} counter");
            for (label, value) in samples {
                if label.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{label}}} {value}");
                }
            }
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
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (label, value) in samples {
        if label.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{label}}} {value}");
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
    }
}
