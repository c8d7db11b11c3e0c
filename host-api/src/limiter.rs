//! Enforces an invocation's memory ceiling and records its peak, for every memory of the store.

use wasmtime::ResourceLimiter;

use crate::policy::units::ByteSize;

/// Which limit the limiter refused, remembered so the runtime can classify the trap without
/// depending on how wasmtime wraps the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitTripped {
    Memory,
    Table,
}

/// A guest tried to grow past its memory limit; the growth traps instead of returning -1.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} exceeded: the guest asked for {requested} in total")]
pub struct MemoryLimitExceeded {
    pub limit: ByteSize,
    pub requested: ByteSize,
}

/// A guest tried to grow a table past the host's element cap.
#[derive(Debug, thiserror::Error)]
#[error("table limit of {limit} elements exceeded: the guest asked for {requested}")]
pub struct TableLimitExceeded {
    pub limit: usize,
    pub requested: usize,
}

/// Per-store limiter: one total across all linear memories of the component.
///
/// A component holds several core instances, each with its own memory; limiting each memory
/// alone would let a guest multiply its budget.
#[derive(Debug)]
pub struct StoreLimiter {
    memory_limit: u64,
    in_use: u64,
    peak: u64,
    tripped: Option<LimitTripped>,
}

/// Table elements per table (the security catalogue's figure, SB-05); Rust components use a few
/// hundred, a table-growth attack stops here. The engine's pool is sized to the same number.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;
/// Instances, memories and tables per store: a component needs a handful of each.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;

impl StoreLimiter {
    pub fn new(memory_limit: u64) -> Self {
        Self {
            memory_limit,
            in_use: 0,
            peak: 0,
            tripped: None,
        }
    }

    /// Highest total linear memory the invocation reached, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The limit that stopped the guest, if one did.
    pub fn tripped(&self) -> Option<LimitTripped> {
        self.tripped
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .in_use
            .saturating_add(desired.saturating_sub(current) as u64);
        if total > self.memory_limit {
            self.tripped = Some(LimitTripped::Memory);
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: ByteSize(self.memory_limit),
                requested: ByteSize(total),
            }));
        }
        self.in_use = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The host could not provide memory the limit allows: trap rather than let the guest
        // carry on with a failed allocation it may not check.
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.tripped = Some(LimitTripped::Table);
            return Err(wasmtime::Error::new(TableLimitExceeded {
                limit: MAX_TABLE_ELEMENTS,
                requested: desired,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 64 * 1024;

    #[test]
    fn growth_is_limited_across_all_memories_and_peak_is_recorded() {
        let mut limiter = StoreLimiter::new(10 * PAGE as u64);
        assert!(limiter.memory_growing(0, 4 * PAGE, None).expect("fits"));
        assert!(limiter.memory_growing(0, 4 * PAGE, None).expect("fits"));
        assert_eq!(limiter.peak(), 8 * PAGE as u64);
        let err = limiter
            .memory_growing(4 * PAGE, 7 * PAGE, None)
            .expect_err("a second memory may not take the first one's budget");
        assert!(err.to_string().contains("memory limit of 640 KiB exceeded"));
        assert_eq!(limiter.tripped(), Some(LimitTripped::Memory));
        assert_eq!(limiter.peak(), 8 * PAGE as u64);
    }

    #[test]
    fn tables_are_capped() {
        let mut limiter = StoreLimiter::new(0);
        assert!(limiter.table_growing(0, 10, None).expect("fits"));
        assert!(
            limiter
                .table_growing(10, MAX_TABLE_ELEMENTS + 1, None)
                .is_err()
        );
        assert_eq!(limiter.tripped(), Some(LimitTripped::Table));
    }
}
