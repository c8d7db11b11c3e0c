//! The serving nodes on the cluster's store: one row per live process, marked with the
//! database's clock (the nodes' own clocks may disagree), forgotten when it leaves or stops
//! marking itself.

use std::time::Duration;

use super::PgStore;
use crate::StoreError;
use crate::traits::Members;

impl Members for PgStore {
    fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>, StoreError> {
        let instance = instance.to_string();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.run(move |mut client| async move {
            // One transaction: `now()` is the same instant for the mark and the expiry.
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO members (instance, seen) VALUES ($1, now()) \
                 ON CONFLICT (instance) DO UPDATE SET seen = now()",
                &[&instance],
            )
            .await?;
            tx.execute(
                "DELETE FROM members WHERE seen < now() - $1::bigint * interval '1 millisecond'",
                &[&ttl_ms],
            )
            .await?;
            let live = tx
                .query("SELECT instance FROM members ORDER BY instance", &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            tx.commit().await?;
            Ok(live)
        })
    }

    fn leave(&self, instance: &str) -> Result<(), StoreError> {
        let instance = instance.to_string();
        self.run(move |client| async move {
            client
                .execute("DELETE FROM members WHERE instance = $1", &[&instance])
                .await?;
            Ok(())
        })
    }
}
