//! The schema migrations, embedded in the binary: `migrations/sqlite/` and
//! `migrations/postgres/`, one directory per dialect.
//!
//! sqlx's `migrate!` macro needs its `macros` feature, which the build leaves off (it would
//! pull in the compile-time query machinery), so the files are listed here with
//! `include_str!`. Versions and checksums are computed exactly as sqlx computes them, so the
//! `_sqlx_migrations` table stays compatible with `sqlx migrate` and `migrate!`. A test checks
//! that every file in the directories is listed.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

/// `(version, description, sql)`; file names are `<version>_<description>.sql`.
type Source = (i64, &'static str, &'static str);

const SQLITE: &[Source] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "trust_boundary",
        include_str!("../../migrations/sqlite/0002_trust_boundary.sql"),
    ),
    (
        3,
        "intake",
        include_str!("../../migrations/sqlite/0003_intake.sql"),
    ),
    (
        4,
        "revocation",
        include_str!("../../migrations/sqlite/0004_revocation.sql"),
    ),
    (
        5,
        "cache_epochs",
        include_str!("../../migrations/sqlite/0005_cache_epochs.sql"),
    ),
    (
        6,
        "comment_effects",
        include_str!("../../migrations/sqlite/0006_comment_effects.sql"),
    ),
    (
        7,
        "change_blobs",
        include_str!("../../migrations/sqlite/0007_change_blobs.sql"),
    ),
    (
        8,
        "claim_order",
        include_str!("../../migrations/sqlite/0008_claim_order.sql"),
    ),
    (
        9,
        "job_rescheduled",
        include_str!("../../migrations/sqlite/0009_job_rescheduled.sql"),
    ),
    (
        10,
        "comment_thread",
        include_str!("../../migrations/sqlite/0010_comment_thread.sql"),
    ),
    (
        11,
        "comment_answered",
        include_str!("../../migrations/sqlite/0011_comment_answered.sql"),
    ),
    (
        12,
        "requests_by_requester",
        include_str!("../../migrations/sqlite/0012_requests_by_requester.sql"),
    ),
    (
        13,
        "applied_request_blob",
        include_str!("../../migrations/sqlite/0013_applied_request_blob.sql"),
    ),
    (
        14,
        "revoked_by",
        include_str!("../../migrations/sqlite/0014_revoked_by.sql"),
    ),
    (
        15,
        "pr_locks",
        include_str!("../../migrations/sqlite/0015_pr_locks.sql"),
    ),
];

const POSTGRES: &[Source] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "trust_boundary",
        include_str!("../../migrations/postgres/0002_trust_boundary.sql"),
    ),
    (
        3,
        "intake",
        include_str!("../../migrations/postgres/0003_intake.sql"),
    ),
    (
        4,
        "revocation",
        include_str!("../../migrations/postgres/0004_revocation.sql"),
    ),
    (
        5,
        "cache_epochs",
        include_str!("../../migrations/postgres/0005_cache_epochs.sql"),
    ),
    (
        6,
        "comment_effects",
        include_str!("../../migrations/postgres/0006_comment_effects.sql"),
    ),
    (
        7,
        "change_blobs",
        include_str!("../../migrations/postgres/0007_change_blobs.sql"),
    ),
    (
        8,
        "claim_order",
        include_str!("../../migrations/postgres/0008_claim_order.sql"),
    ),
    (
        9,
        "job_rescheduled",
        include_str!("../../migrations/postgres/0009_job_rescheduled.sql"),
    ),
    (
        10,
        "comment_thread",
        include_str!("../../migrations/postgres/0010_comment_thread.sql"),
    ),
    (
        11,
        "comment_answered",
        include_str!("../../migrations/postgres/0011_comment_answered.sql"),
    ),
    (
        12,
        "requests_by_requester",
        include_str!("../../migrations/postgres/0012_requests_by_requester.sql"),
    ),
    (
        13,
        "applied_request_blob",
        include_str!("../../migrations/postgres/0013_applied_request_blob.sql"),
    ),
    (
        14,
        "revoked_by",
        include_str!("../../migrations/postgres/0014_revoked_by.sql"),
    ),
    (
        15,
        "pr_locks",
        include_str!("../../migrations/postgres/0015_pr_locks.sql"),
    ),
];

/// The migrations of one backend.
fn sources(backend: Backend) -> &'static [Source] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// The migrator for one backend.
pub(crate) fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        sources(backend)
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// A name for the schema that this backend's migrations build: the same for the same
/// migrations, another as soon as one is added or changed (tests copy a database migrated
/// once per schema, see [`super::testing`]).
pub(crate) fn schema_fingerprint(backend: Backend) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (version, description, sql) in sources(backend) {
        hasher.update(format!("{version}\0{description}\0{}\0", sql.len()));
        hasher.update(sql.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(dir: &str, sources: &[Source]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut files: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let expected: Vec<String> = sources
            .iter()
            .map(|(version, description, _)| format!("{version:04}_{description}.sql"))
            .collect();
        assert_eq!(
            files, expected,
            "list every file of migrations/{dir} in migrations.rs"
        );
    }

    #[test]
    fn every_migration_file_is_embedded() {
        listed("sqlite", SQLITE);
        listed("postgres", POSTGRES);
        assert_eq!(
            SQLITE.iter().map(|s| s.0).collect::<Vec<_>>(),
            POSTGRES.iter().map(|s| s.0).collect::<Vec<_>>(),
            "both dialects must have the same migration versions"
        );
    }
}
