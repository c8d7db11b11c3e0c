//! Pages of records, for `airlock audit list`, `audit privileges` and `GET /v1/audit`.
//!
//! A page is read through the index: the entries of the caller's tenant (or of the security
//! events, or the chain itself for the operator's unfiltered view) from the first record the
//! query can match, so a page costs what it returns whatever else the trail holds. Every record
//! returned is opened and checked against its own hash first, and checked again against the
//! filters, so a wrong index entry can hide a record but never show one to the wrong tenant
//! (`airlock audit verify` reports missing entries). Reads are blocking: the server runs them
//! on its blocking pool.

use super::record::{self, Record};
use super::trail::seq_of;
use super::{AuditError, AuditTrail, index};

/// What to read. Filters narrow; `since` and `after` say where to start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only records about this tenant.
    pub tenant: Option<String>,
    /// Only security events.
    pub security: bool,
    /// From the first record written at or after this time (ms since the epoch) on, in
    /// sequence order: a record written after a clock regression is never skipped.
    pub since_ms: Option<u64>,
    /// Only records after this sequence number (the previous page's `next`).
    pub after: Option<u64>,
}

/// One record of a page.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A record that opens, with its stored line.
    Record { line: Vec<u8>, record: Box<Record> },
    /// A record that does not open (shown only to the operator, without a tenant filter).
    Damaged { seq: u64 },
}

impl Entry {
    pub fn seq(&self) -> u64 {
        match self {
            Self::Record { record, .. } => record.envelope.seq,
            Self::Damaged { seq } => *seq,
        }
    }
}

/// One page of a query's records, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Where the next page starts (pass it as `after`), when there are more.
    pub next: Option<u64>,
    /// How many stored records this page read and checked.
    pub examined: u64,
}

impl AuditTrail {
    /// Up to `limit` (at least 1) records matching `query`, in sequence order.
    pub fn page(&self, query: &Query, limit: usize) -> Result<Page, AuditError> {
        let limit = limit.max(1);
        let log = self.log();
        let mut first = query.after.map_or(0, |seq| seq.saturating_add(1));
        if let Some(ms) = query.since_ms {
            let marked = log
                .audit_index(index::TIME_PREFIX, &index::time_key(ms))
                .next()
                .transpose()?;
            match marked {
                Some((_, seq)) => first = first.max(seq_of(&seq)?),
                // Nothing was written at or after that time.
                None => return Ok(Page::default()),
            }
        }
        // Sequence numbers of the records the query may match, from `first` on.
        let candidates: Box<dyn Iterator<Item = Result<u64, AuditError>>> =
            match index::prefix(query.tenant.as_deref(), query.security) {
                None => Box::new(log.audit_records(first).map(|row| Ok(row?.0))),
                Some(prefix) => Box::new(
                    log.audit_index(&prefix, &index::key(&prefix, first))
                        .map(|row| index::number(&row?.0).ok_or(AuditError::Meta)),
                ),
            };
        let mut page = Page::default();
        for seq in candidates {
            let seq = seq?;
            if page.entries.len() == limit {
                page.next = page.entries.last().map(Entry::seq);
                break;
            }
            page.examined += 1;
            let opened = log
                .audit_record(seq)?
                .map(|line| (record::open(&line), line.to_vec()));
            match opened {
                Some((Ok(record), line)) if matches(query, &record) => {
                    let record = Box::new(record);
                    page.entries.push(Entry::Record { line, record });
                }
                Some((Ok(_), _)) => {}
                // A damaged record has no trustworthy tenant: only the operator sees it.
                _ if query.tenant.is_none() => page.entries.push(Entry::Damaged { seq }),
                _ => {}
            }
        }
        Ok(page)
    }

    /// Records the index misses: each would be hidden from a filtered view. Checks every
    /// record that opens (for `airlock audit verify`).
    pub fn unindexed(&self) -> Result<Vec<u64>, AuditError> {
        let log = self.log();
        let mut missing = Vec::new();
        for row in log.audit_records(0) {
            let (seq, line) = row?;
            let Ok(record) = record::open(&line) else {
                continue;
            };
            for key in index::keys(seq, &record.envelope) {
                if log.audit_index_entry(&key)?.is_none() {
                    missing.push(seq);
                    break;
                }
            }
        }
        Ok(missing)
    }
}

/// Whether an opened record passes the query's filters (the index already chose it; this
/// keeps a wrong entry from widening a view).
fn matches(query: &Query, record: &Record) -> bool {
    let envelope = &record.envelope;
    (!query.security || envelope.security)
        && query
            .tenant
            .as_deref()
            .is_none_or(|tenant| envelope.event.tenant() == Some(tenant))
}
