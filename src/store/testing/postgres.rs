//! Test databases on the PostgreSQL server named by `BREAKGLASS_TEST_DATABASE_URL`, leased
//! from a pool that outlives the test processes.
//!
//! Every test used to create a database and drop it at its end. Each creation writes some 300
//! files (the system catalogs) and each drop deletes them: in a profile of the suite the
//! server's file creation alone (ext4 looking for a free inode among those recently deleted)
//! was 13.5 % of the machine's CPU. So a test now leases a slot
//! `breakglass_pool_<schema>_<n>` by a session advisory lock (let go when the test's
//! connection closes, even if the process dies), empties it, and uses it. A slot is a copy of
//! `breakglass_template_<schema>`, migrated once for each set of migrations (the `<schema>`
//! fingerprint); both stay on the server and can be dropped by hand at any time.
//!
//! Emptying a slot ends the sessions a previous test left behind, lets connections in again
//! (a test may have turned them off), deletes every row but the migrations' and restarts the
//! sequences. A slot whose schema a test changed (a trigger dropped, say) is dropped and
//! copied again: the schema's fingerprint taken when the slot was copied is kept as the
//! database's comment and compared before each lease.
//!
//! What this gives up: a test's database used to disappear with it, so a task it left running
//! could only fail. Now connections to the slot are turned off and its sessions ended when
//! the test lets go, and kept out while the next lease empties it; a task of the last
//! holder's still running after that could connect again. `cargo nextest` (what
//! `scripts/test` uses) runs every test in a process of its own, which ends with it.

use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor};

use super::DATABASE_URL_VAR;
use crate::store::{Backend, Store, migrations};

/// How many slots the pool may grow to: one per test running at once, whatever the machine.
const SLOTS: i32 = 512;
/// The first key of the slots' advisory locks ("bgdb"); the second is the slot's number.
const SLOT_LOCK: i32 = 0x6267_6462;
/// The advisory lock of building a template ("brkglass").
const TEMPLATE_LOCK: i64 = 0x6272_6b67_6c61_7373;

/// A PostgreSQL database leased by one test: empty and migrated when leased, given back when
/// this is dropped.
pub struct PostgresDatabase {
    server_url: String,
    name: String,
    url: String,
    /// The session that holds the slot's lock: closing it gives the slot back.
    _lease: AnyConnection,
}

impl std::fmt::Debug for PostgresDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDatabase")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PostgresDatabase {
    /// The database's own URL (e.g. to open a second store on it, as a second replica).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PostgresDatabase {
    /// Turns connections to the slot off and ends the sessions the test left open before the
    /// slot is given back, so that a task the test left running cannot reconnect and write
    /// into the next test's database (the next lease turns them on again once it has emptied
    /// the slot). Drop is synchronous and may run inside a runtime that must not be blocked
    /// on, so this runs on a thread of its own with its own small runtime.
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let ended = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = AnyConnection::connect(&server_url).await.ok()?;
                allow_connections(&mut conn, &name, false).await.ok()?;
                let ended = end_sessions(&mut conn, &name, 0).await;
                conn.close().await.ok()?;
                ended.then_some(())
            })
        })
        .join();
        if !matches!(ended, Ok(Some(()))) {
            eprintln!(
                "note: could not end the sessions left on test database {}",
                self.name
            );
        }
    }
}

/// A migrated store on an empty PostgreSQL database, or `None` when
/// `BREAKGLASS_TEST_DATABASE_URL` is not set.
pub async fn postgres_store() -> Option<(Store, PostgresDatabase)> {
    let server_url = std::env::var(DATABASE_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())?;
    sqlx::any::install_default_drivers();
    let mut lease = AnyConnection::connect(&server_url)
        .await
        .unwrap_or_else(|err| panic!("connect to {DATABASE_URL_VAR}: {err}"));
    let schema = migrations::schema_fingerprint(Backend::Postgres);
    let template = migrated_template(&mut lease, &server_url, &schema).await;
    let name = lease_slot(&mut lease, &server_url, &schema, &template).await;
    let database = PostgresDatabase {
        url: database_url(&server_url, &name),
        server_url,
        name,
        _lease: lease,
    };
    let store = Store::connect(database.url())
        .await
        .expect("open the PostgreSQL test database");
    // A no-op on a copy of the template, but it checks the migrations did not change.
    store
        .migrate()
        .await
        .expect("migrate the PostgreSQL test database");
    Some((store, database))
}

/// Takes the first free slot of the pool, copied from `template` and emptied, and returns
/// its name; `admin` holds the slot's lock from then on.
async fn lease_slot(
    admin: &mut AnyConnection,
    server_url: &str,
    schema: &str,
    template: &str,
) -> String {
    for slot in 0..SLOTS {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(SLOT_LOCK)
            .bind(slot)
            .fetch_one(&mut *admin)
            .await
            .expect("lock a test database slot");
        if !taken {
            continue;
        }
        let name = format!("breakglass_pool_{schema}_{slot}");
        if !database_exists(admin, &name).await || !empty_slot(admin, server_url, &name).await {
            copy_slot(admin, server_url, template, &name).await;
        }
        return name;
    }
    panic!("all {SLOTS} test databases are in use");
}

/// Empties a leased slot; `false` when it cannot be trusted to be as copied (its schema
/// changed, or emptying it failed).
async fn empty_slot(admin: &mut AnyConnection, server_url: &str, name: &str) -> bool {
    // Turned off by the last holder (or by a test): on for as long as this connection takes.
    if allow_connections(admin, name, true).await.is_err() {
        return false;
    }
    let Ok(mut conn) = AnyConnection::connect(&database_url(server_url, name)).await else {
        return false;
    };
    let emptied = empty_with(admin, &mut conn, name).await;
    let _ = conn.close().await;
    emptied && allow_connections(admin, name, true).await.is_ok()
}

/// Empties slot `name` through `conn`, with every other session ended and kept out
/// meanwhile (a task of the last holder's still running could get in while connections were
/// on).
async fn empty_with(admin: &mut AnyConnection, conn: &mut AnyConnection, name: &str) -> bool {
    let Ok(own) = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
    else {
        return false;
    };
    if allow_connections(admin, name, false).await.is_err() || !end_sessions(admin, name, own).await
    {
        return false;
    }
    let expected: Option<String> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_one(&mut *admin)
    .await
    .unwrap_or_default();
    match schema_fingerprint(conn).await {
        Ok(found) if Some(&found) == expected.as_ref() => delete_all_rows(conn).await.is_ok(),
        _ => false,
    }
}

async fn allow_connections(
    admin: &mut AnyConnection,
    name: &str,
    allow: bool,
) -> Result<(), sqlx::Error> {
    admin
        .execute(AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allow}"
        )))
        .await
        .map(drop)
}

/// Ends every session on `name` but `keep`'s (and the asker's) and waits until they are gone.
async fn end_sessions(admin: &mut AnyConnection, name: &str, keep: i32) -> bool {
    for _ in 0..250 {
        let left: i64 = match sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> $2",
        )
        .bind(name)
        .bind(keep)
        .fetch_one(&mut *admin)
        .await
        {
            Ok(left) => left,
            Err(_) => return false,
        };
        if left == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Deletes every row but the migrations' and restarts every sequence, in one transaction.
/// Triggers (the event log's append-only guard, the foreign keys') do not fire for a session
/// in the `replica` role.
async fn delete_all_rows(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables \
         WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let sequences: Vec<String> = sqlx::query_scalar(
        "SELECT sequencename::text FROM pg_sequences WHERE schemaname = 'public'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut sql = String::from("BEGIN; SET LOCAL session_replication_role = replica;");
    for table in &tables {
        sql.push_str(&format!(" DELETE FROM \"{table}\";"));
    }
    for sequence in &sequences {
        sql.push_str(&format!(" SELECT setval('\"{sequence}\"', 1, false);"));
    }
    sql.push_str(" COMMIT;");
    conn.execute(AssertSqlSafe(sql)).await.map(drop)
}

/// Drops what is left of slot `name` and copies it again from `template`, noting the copy's
/// schema fingerprint as the database's comment.
async fn copy_slot(admin: &mut AnyConnection, server_url: &str, template: &str, name: &str) {
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await
        .unwrap_or_else(|err| panic!("drop test database {name}: {err}"));
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        )))
        .await
        .unwrap_or_else(|err| panic!("create test database {name}: {err}"));
    let mut conn = AnyConnection::connect(&database_url(server_url, name))
        .await
        .unwrap_or_else(|err| panic!("open test database {name}: {err}"));
    let fingerprint = schema_fingerprint(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("read the schema of {name}: {err}"));
    let _ = conn.close().await;
    admin
        .execute(AssertSqlSafe(format!(
            "COMMENT ON DATABASE \"{name}\" IS '{fingerprint}'"
        )))
        .await
        .unwrap_or_else(|err| panic!("note the schema of {name}: {err}"));
}

/// A digest of everything a test could change in the schema: columns, indexes, constraints,
/// triggers (and whether they are enabled), functions and the migrations applied.
async fn schema_fingerprint(conn: &mut AnyConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT md5(string_agg(part, ',' ORDER BY part)) FROM ( \
           SELECT 'c:' || table_name || '.' || column_name || ':' || data_type || ':' \
                  || coalesce(column_default, '') || ':' || is_nullable AS part \
             FROM information_schema.columns WHERE table_schema = 'public' \
           UNION ALL SELECT 'i:' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
           UNION ALL SELECT 'k:' || conname || ':' || pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
           UNION ALL SELECT 't:' || c.relname || '.' || t.tgname || ':' || t.tgenabled::text \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal \
           UNION ALL SELECT 'f:' || proname || ':' || md5(prosrc) \
             FROM pg_proc WHERE pronamespace = 'public'::regnamespace \
           UNION ALL SELECT 'm:' || version || ':' || encode(checksum, 'hex') \
             FROM _sqlx_migrations \
         ) parts",
    )
    .fetch_one(&mut *conn)
    .await
}

/// The name of a database on the test server that holds this build's migrations, creating
/// it the first time. The name carries the migrations' fingerprint, so a changed migration
/// gets a template (and slots) of its own; it is built under another name and renamed when
/// complete, so a test that dies half-way leaves no half-migrated template behind, and an
/// advisory lock lets one test process build it while those starting beside it wait.
async fn migrated_template(admin: &mut AnyConnection, server_url: &str, schema: &str) -> String {
    let template = format!("breakglass_template_{schema}");
    if database_exists(admin, &template).await {
        return template;
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut *admin)
        .await
        .expect("lock template building");
    if !database_exists(admin, &template).await {
        let building = format!("{template}_building_{:08x}", rand::random::<u32>());
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{building}\"")))
            .await
            .unwrap_or_else(|err| panic!("create template database {building}: {err}"));
        let store = Store::connect(&database_url(server_url, &building))
            .await
            .expect("open the template database");
        store
            .migrate()
            .await
            .expect("migrate the template database");
        store.close().await;
        rename_database(admin, &building, &template).await;
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut *admin)
        .await
        .expect("unlock template building");
    template
}

/// Renames a database once the sessions of a closed pool on it have ended (the server ends
/// them a moment after the pool says goodbye, and a database in use cannot be renamed).
async fn rename_database(admin: &mut AnyConnection, from: &str, to: &str) {
    let rename = format!("ALTER DATABASE \"{from}\" RENAME TO \"{to}\"");
    let mut attempts = 0;
    while let Err(err) = admin.execute(AssertSqlSafe(rename.clone())).await {
        attempts += 1;
        assert!(attempts < 100, "rename database {from} to {to}: {err}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn database_exists(admin: &mut AnyConnection, name: &str) -> bool {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|err| panic!("look for database {name}: {err}"));
    count > 0
}

/// `server_url` with its database replaced by `name`.
fn database_url(server_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(server_url)
        .unwrap_or_else(|err| panic!("{DATABASE_URL_VAR} is not a URL: {err}"));
    url.set_path(name);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next holder of a slot finds it empty (rows deleted, sequences restarted, the last
    /// holder's sessions ended), and a slot whose schema a test changed is copied again.
    #[tokio::test]
    async fn a_slot_is_emptied_for_its_next_holder_and_copied_again_when_its_schema_changed() {
        let Some((store, database)) = postgres_store().await else {
            eprintln!("SKIPPED postgres: {DATABASE_URL_VAR} not set");
            return;
        };
        let (server_url, name) = (database.server_url.clone(), database.name.clone());
        sqlx::query("INSERT INTO pr_locks VALUES ('github', 'acme/requests', 1, 'a', 0)")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("SELECT nextval('jobs_id_seq')")
            .execute(store.pool())
            .await
            .unwrap();
        // The store stays open, as a test's leftover pool would.
        let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let mut admin = AnyConnection::connect(&server_url).await.unwrap();
        assert!(
            empty_slot(&mut admin, &server_url, &name).await,
            "emptied in place"
        );
        let mut conn = AnyConnection::connect(&database_url(&server_url, &name))
            .await
            .unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pr_locks")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows, 0, "the last holder's rows are gone");
        let next: i64 = sqlx::query_scalar("SELECT nextval('jobs_id_seq')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(next, 1, "sequences start again");
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(holder)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left, 0, "the last holder's session was ended");

        conn.execute("DROP TRIGGER events_append_only ON events")
            .await
            .unwrap();
        assert!(
            !empty_slot(&mut admin, &server_url, &name).await,
            "a changed schema is not trusted"
        );
        let schema = migrations::schema_fingerprint(Backend::Postgres);
        let template = migrated_template(&mut admin, &server_url, &schema).await;
        copy_slot(&mut admin, &server_url, &template, &name).await;
        assert!(
            empty_slot(&mut admin, &server_url, &name).await,
            "the copy is as the template was"
        );
        store.close().await;
    }
}
