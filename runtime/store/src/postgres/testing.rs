//! Fresh databases for tests, on the PostgreSQL server `AIRLOCK_TEST_POSTGRES` names (a URL
//! whose role may create databases; `scripts/test` starts a throwaway one and sets it).
//!
//! Without it the PostgreSQL tests are skipped and say why, unless `AIRLOCK_REQUIRE_POSTGRES`
//! is set (as `scripts/test` and CI do): then a missing database fails them.

use std::path::Path;

use rand::Rng as _;

use super::{PgStore, Schema, StoreUrl};
use crate::StoreError;

/// The server tests make their databases on.
pub const SERVER_ENV: &str = "AIRLOCK_TEST_POSTGRES";
/// Set when the PostgreSQL tests must run, never skip.
pub const REQUIRE_ENV: &str = "AIRLOCK_REQUIRE_POSTGRES";

/// A database made for one test, dropped (with whatever is still connected) when this is.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// The database's URL.
    pub url: String,
}

impl TestDatabase {
    /// A fresh, empty database; `None` (with a line saying why) when there is no server to
    /// make it on and the PostgreSQL tests may be skipped.
    pub fn create(test: &str) -> Option<Self> {
        let Ok(admin) = std::env::var(SERVER_ENV) else {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{REQUIRE_ENV} is set but {SERVER_ENV} is not: no PostgreSQL to test on");
            }
            eprintln!(
                "skipped {test}: no PostgreSQL ({SERVER_ENV} is not set; scripts/test starts one)"
            );
            return None;
        };
        let name = format!("airlock_test_{:016x}", rand::rng().random::<u64>());
        let mut url = url::Url::parse(&admin).expect("AIRLOCK_TEST_POSTGRES is a URL");
        url.set_path(&name);
        let database = Self {
            admin,
            url: url.to_string(),
            name,
        };
        database
            .admin_sql(&format!("CREATE DATABASE {}", database.name))
            .expect("the test database is created");
        Some(database)
    }

    /// A store on this database, its schema migrated, its master key at `master_key`.
    pub fn store(&self, master_key: &Path) -> PgStore {
        let url: StoreUrl = self.url.parse().expect("a test database URL");
        PgStore::connect(&url, master_key, Schema::Migrate).expect("the test database opens")
    }

    /// Runs `sql` on the server's admin database.
    pub fn admin_sql(&self, sql: &str) -> Result<(), StoreError> {
        let url: StoreUrl = self.admin.parse().expect("AIRLOCK_TEST_POSTGRES is a URL");
        // The admin connection seals nothing: its master key is never read.
        let admin = PgStore::connect(&url, Path::new("/nonexistent"), Schema::AsItIs)?;
        let sql = sql.to_string();
        admin.run(move |client| async move {
            client.batch_execute(&sql).await?;
            Ok(())
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Never a panic in a drop: a database left behind only costs the throwaway server.
        if let Err(e) = self.admin_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            eprintln!("test database {} was not dropped: {e}", self.name);
        }
    }
}

/// Every row of `table`, as text (bytea as hex).
pub fn rows_as_text(store: &PgStore, table: &str) -> String {
    let sql = format!("SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t");
    store
        .run(move |client| async move { Ok(client.query_one(&sql, &[]).await?.get(0)) })
        .expect("rows")
}

/// How many rows of `table` belong to `tenant`.
pub fn rows_of(store: &PgStore, table: &str, tenant: &str) -> i64 {
    let (sql, tenant) = (
        format!("SELECT count(*) FROM {table} WHERE tenant = $1"),
        tenant.to_string(),
    );
    store
        .run(move |client| async move { Ok(client.query_one(&sql, &[&tenant]).await?.get(0)) })
        .expect("count")
}

/// Whether `text` (as [`rows_as_text`] renders rows) holds `needle`, in clear or as bytes.
pub fn shows(text: &str, needle: &str) -> bool {
    text.contains(needle) || text.contains(&hex::encode(needle))
}
