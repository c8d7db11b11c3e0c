//! The audit trail's records, index and chain metadata, shared by every node.
//!
//! One chain for the cluster (docs/audit.md, "Many nodes"): the record's sequence number is
//! the primary key, so of two nodes writing the same number one fails and re-chains after the
//! other's record. A group of records and their index entries commit in one transaction, so
//! the flush the trail calls after it has nothing left to do.

use std::collections::VecDeque;

use super::{PgStore, bigint, unsigned};
use crate::StoreError;
use crate::records::Stored;
use crate::traits::{AuditAppend, AuditLog, IndexEntry, Rows};

/// The `meta` rows of the chain's id and of the count its checkpoints cover.
const CHAIN: &str = "audit-chain";
const CHECKPOINTED: &str = "audit-checkpointed";

/// Rows fetched per query while a reader walks the records or the index.
const PAGE: i64 = 512;

/// A record to append, as the connection's task takes it: sequence number, line, index entries.
type OwnedRecord = (i64, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

fn owned(index: &[IndexEntry<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    index
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// Writes index entries in `client`'s transaction (an entry written again is replaced, as on
/// sled).
async fn put_index(
    tx: &deadpool_postgres::Transaction<'_>,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO audit_index (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = $2",
        )
        .await?;
    for (key, value) in entries {
        tx.execute(&statement, &[key, value]).await?;
    }
    Ok(())
}

/// The first key after every key starting with `prefix`; `None` when there is none (the
/// prefix is empty or all 0xff).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

impl AuditLog for PgStore {
    fn audit_chain(&self, fresh: &str) -> Result<String, StoreError> {
        let fresh = fresh.as_bytes().to_vec();
        let stored: Vec<u8> = self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&CHAIN, &fresh],
                )
                .await?;
            Ok(client
                .query_one("SELECT value FROM meta WHERE key = $1", &[&CHAIN])
                .await?
                .get(0))
        })?;
        String::from_utf8(stored).map_err(|_| StoreError::Corrupt {
            what: "audit chain id".into(),
        })
    }

    fn append_audit(&self, records: &[AuditAppend<'_>]) -> Result<(), StoreError> {
        let records: Vec<OwnedRecord> = records
            .iter()
            .map(|r| (bigint(r.seq), r.line.to_vec(), owned(r.index)))
            .collect();
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO audit_records (seq, line) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            for (seq, line, entries) in &records {
                // A taken number fails here and the transaction writes nothing.
                if tx.execute(&insert, &[seq, line]).await? == 0 {
                    return Err(StoreError::Exists {
                        what: format!("audit record {seq}"),
                    });
                }
                put_index(&tx, entries).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn put_audit_index(&self, entries: &[IndexEntry<'_>]) -> Result<(), StoreError> {
        let entries = owned(entries);
        self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            put_index(&tx, &entries).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every write committed before it returned: nothing is left to flush.
    fn flush_audit(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn audit_record(&self, seq: u64) -> Result<Option<Stored>, StoreError> {
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT line FROM audit_records WHERE seq = $1",
                    &[&bigint(seq)],
                )
                .await?
                .map(|row| Stored::from(row.get::<_, Vec<u8>>(0))))
        })
    }

    fn last_audit_record(&self) -> Result<Option<(u64, Stored)>, StoreError> {
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT seq, line FROM audit_records ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await?
                .map(|row| (unsigned(row.get(0)), Stored::from(row.get::<_, Vec<u8>>(1)))))
        })
    }

    fn audit_records(&self, first: u64) -> Rows<(u64, Stored)> {
        let store = self.clone();
        let mut next = Some(bigint(first));
        Box::new(Pages::new(move || {
            let Some(from) = next else {
                return Ok(Vec::new());
            };
            let rows: Vec<(i64, Vec<u8>)> = store.run(move |client| async move {
                Ok(client
                    .query(
                        "SELECT seq, line FROM audit_records WHERE seq >= $1 \
                         ORDER BY seq LIMIT $2",
                        &[&from, &PAGE],
                    )
                    .await?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect())
            })?;
            next = rows.last().and_then(|(seq, _)| seq.checked_add(1));
            Ok(rows
                .into_iter()
                .map(|(seq, line)| (unsigned(seq), Stored::from(line)))
                .collect())
        }))
    }

    fn audit_index_entry(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        let key = key.to_vec();
        self.run(move |client| async move {
            Ok(client
                .query_opt("SELECT value FROM audit_index WHERE key = $1", &[&key])
                .await?
                .map(|row| Stored::from(row.get::<_, Vec<u8>>(0))))
        })
    }

    fn audit_index(&self, prefix: &[u8], from: &[u8]) -> Rows<(Stored, Stored)> {
        let store = self.clone();
        let end = successor(prefix);
        // The first page starts at `from` itself; later ones after the last key read.
        let mut next = Some((from.max(prefix).to_vec(), true));
        Box::new(Pages::new(move || {
            let Some((start, inclusive)) = next.take() else {
                return Ok(Vec::new());
            };
            let end = end.clone();
            let rows: Vec<(Vec<u8>, Vec<u8>)> = store.run(move |client| async move {
                let query = if inclusive {
                    "SELECT key, value FROM audit_index \
                     WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) ORDER BY key LIMIT $3"
                } else {
                    "SELECT key, value FROM audit_index \
                     WHERE key > $1 AND ($2::bytea IS NULL OR key < $2) ORDER BY key LIMIT $3"
                };
                Ok(client
                    .query(query, &[&start, &end, &PAGE])
                    .await?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect())
            })?;
            next = rows.last().map(|(key, _)| (key.clone(), false));
            Ok(rows
                .into_iter()
                .map(|(key, value)| (Stored::from(key), Stored::from(value)))
                .collect())
        }))
    }

    fn last_audit_index_entry(
        &self,
        prefix: &[u8],
    ) -> Result<Option<(Stored, Stored)>, StoreError> {
        let (start, end) = (prefix.to_vec(), successor(prefix));
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT key, value FROM audit_index \
                     WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) \
                     ORDER BY key DESC LIMIT 1",
                    &[&start, &end],
                )
                .await?
                .map(|row| {
                    (
                        Stored::from(row.get::<_, Vec<u8>>(0)),
                        Stored::from(row.get::<_, Vec<u8>>(1)),
                    )
                }))
        })
    }

    fn audit_checkpointed(&self) -> Result<u64, StoreError> {
        self.run(move |client| async move {
            Ok(client
                .query_opt(
                    "SELECT value FROM counters WHERE name = $1",
                    &[&CHECKPOINTED],
                )
                .await?
                .map_or(0, |row| unsigned(row.get(0))))
        })
    }

    fn set_audit_checkpointed(&self, count: u64) -> Result<(), StoreError> {
        // One statement: of racing nodes, the highest count stays.
        self.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO counters (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, $2)",
                    &[&CHECKPOINTED, &bigint(count)],
                )
                .await?;
            Ok(())
        })
    }
}

/// Rows read a page at a time: `fetch` gives the next page, empty at the end.
struct Pages<T, F> {
    fetch: F,
    page: VecDeque<T>,
    done: bool,
}

impl<T, F> Pages<T, F> {
    fn new(fetch: F) -> Self {
        Self {
            fetch,
            page: VecDeque::new(),
            done: false,
        }
    }
}

impl<T, F> Iterator for Pages<T, F>
where
    F: FnMut() -> Result<Vec<T>, StoreError>,
{
    type Item = Result<T, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            match (self.fetch)() {
                Ok(rows) if rows.is_empty() => self.done = true,
                Ok(rows) => self.page = rows.into(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::successor;

    #[test]
    fn a_prefix_successor_is_the_first_key_past_the_prefix() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(successor(&[0xff, 0xff]), None);
        assert_eq!(successor(b""), None);
    }
}
