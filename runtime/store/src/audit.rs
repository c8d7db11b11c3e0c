//! The audit trail's storage on sled: [`AuditLog`] for [`Store`].
//!
//! Three trees, named as the trail has always named them, so data dirs written before this
//! module existed open unchanged:
//! - `audit`: the records, keyed by sequence number (u64 big-endian);
//! - `audit-index`: the index entries, as the trail makes them;
//! - `audit-meta`: `chain` (the chain id) and `checkpointed` (u64 big-endian).

use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::records::Stored;
use crate::traits::{AuditAppend, AuditLog, IndexEntry, Rows};
use crate::{Store, StoreError};

const RECORDS: &str = "audit";
const INDEX: &str = "audit-index";
pub(crate) const META: &str = "audit-meta";
const CHAIN_KEY: &[u8] = b"chain";
const CHECKPOINTED_KEY: &[u8] = b"checkpointed";

/// The trail's trees, opened once per opening of the database: an append does not look them
/// up again.
#[derive(Clone)]
pub(crate) struct AuditTrees {
    records: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
}

/// Why a record write was rolled back: this sequence number is taken.
struct Taken(u64);

impl Store {
    /// The trail's trees, opened (and created) on first use, so a store that never holds a
    /// trail gets none.
    fn audit(&self) -> Result<AuditTrees, StoreError> {
        let db = self.db()?;
        if let Some(trees) = db.audit.get() {
            return Ok(trees.clone());
        }
        let trees = AuditTrees {
            records: db.open_tree(RECORDS)?,
            index: db.open_tree(INDEX)?,
            meta: db.open_tree(META)?,
        };
        Ok(db.audit.get_or_init(|| trees).clone())
    }
}

impl AuditLog for Store {
    fn audit_chain(&self, fresh: &str) -> Result<String, StoreError> {
        let _pass = self.writing();
        let meta = self.audit()?.meta;
        let stored = match meta.compare_and_swap(CHAIN_KEY, None as Option<&[u8]>, Some(fresh))? {
            Ok(()) => {
                self.db()?.flush()?;
                return Ok(fresh.to_string());
            }
            Err(lost) => lost.current,
        };
        let stored = stored.ok_or_else(|| corrupt("audit chain id"))?;
        String::from_utf8(stored.to_vec()).map_err(|_| corrupt("audit chain id"))
    }

    fn append_audit(&self, records: &[AuditAppend<'_>]) -> Result<(), StoreError> {
        let _pass = self.writing();
        let trees = self.audit()?;
        // Inserting returns what was there: a taken number rolls the whole write back.
        let written = (&trees.records, &trees.index).transaction(|(stored, entries)| {
            for record in records {
                if stored
                    .insert(&record.seq.to_be_bytes(), record.line)?
                    .is_some()
                {
                    return Err(ConflictableTransactionError::Abort(Taken(record.seq)));
                }
                for (k, v) in record.index {
                    entries.insert(*k, *v)?;
                }
            }
            Ok(())
        });
        match written {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(Taken(seq))) => Err(StoreError::Exists {
                what: format!("audit record {seq}"),
            }),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn put_audit_index(&self, entries: &[IndexEntry<'_>]) -> Result<(), StoreError> {
        let _pass = self.writing();
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(*key, *value);
        }
        Ok(self.audit()?.index.apply_batch(batch)?)
    }

    fn flush_audit(&self) -> Result<(), StoreError> {
        self.db()?.flush()?;
        Ok(())
    }

    fn audit_record(&self, seq: u64) -> Result<Option<Stored>, StoreError> {
        let line = self.audit()?.records.get(seq.to_be_bytes())?;
        Ok(line.map(Stored::sled))
    }

    fn last_audit_record(&self) -> Result<Option<(u64, Stored)>, StoreError> {
        match self.audit()?.records.last()? {
            Some((key, line)) => Ok(Some((seq_of(&key)?, Stored::sled(line)))),
            None => Ok(None),
        }
    }

    fn audit_records(&self, first: u64) -> Rows<(u64, Stored)> {
        let records = match self.audit() {
            Ok(trees) => trees.records.range(first.to_be_bytes()..),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(records.map(|entry| {
            let (key, line) = entry?;
            Ok((seq_of(&key)?, Stored::sled(line)))
        }))
    }

    fn audit_index_entry(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        Ok(self.audit()?.index.get(key)?.map(Stored::sled))
    }

    fn audit_index(&self, prefix: &[u8], from: &[u8]) -> Rows<(Stored, Stored)> {
        let index = match self.audit() {
            Ok(trees) => trees.index.range(from.max(prefix)..),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let prefix = prefix.to_vec();
        Box::new(
            index
                .take_while(move |entry| {
                    entry.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))
                })
                .map(|entry| {
                    let (key, value) = entry?;
                    Ok((Stored::sled(key), Stored::sled(value)))
                }),
        )
    }

    fn last_audit_index_entry(
        &self,
        prefix: &[u8],
    ) -> Result<Option<(Stored, Stored)>, StoreError> {
        match self.audit()?.index.scan_prefix(prefix).next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                Ok(Some((Stored::sled(key), Stored::sled(value))))
            }
            None => Ok(None),
        }
    }

    fn audit_checkpointed(&self) -> Result<u64, StoreError> {
        match self.audit()?.meta.get(CHECKPOINTED_KEY)? {
            Some(count) => number(&count).ok_or_else(|| corrupt("audit checkpoint count")),
            None => Ok(0),
        }
    }

    fn set_audit_checkpointed(&self, count: u64) -> Result<(), StoreError> {
        let _pass = self.writing();
        // Atomic read-modify-write: of racing nodes, the highest count stays.
        self.audit()?
            .meta
            .fetch_and_update(CHECKPOINTED_KEY, |stored| {
                let stored = stored.and_then(number).unwrap_or(0);
                Some(stored.max(count).to_be_bytes().to_vec())
            })?;
        Ok(())
    }
}

/// The audit trail's metadata as the backup held it, which a restore does not put back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredTrail {
    /// The chain id the records were written under (none if the store had no trail).
    pub chain: Option<String>,
    /// How many records the original's checkpoints covered when the backup was taken.
    pub checkpointed: u64,
}

/// Takes one record of the trail's metadata tree ([`META`]) from a backup into `trail`: a
/// restore reads the chain id and checkpoint count but does not put them back (see
/// [`crate::backup`]).
pub(crate) fn restored_meta(
    trail: &mut RestoredTrail,
    key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    match key {
        CHAIN_KEY => {
            let chain = std::str::from_utf8(value).map_err(|_| corrupt("audit chain id"))?;
            trail.chain = Some(chain.to_string());
        }
        CHECKPOINTED_KEY => {
            trail.checkpointed = number(value).ok_or_else(|| corrupt("audit checkpoint count"))?;
        }
        _ => {}
    }
    Ok(())
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    number(key).ok_or_else(|| corrupt("audit record key"))
}

fn number(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt { what: what.into() }
}
