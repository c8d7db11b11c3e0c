//! `wasi:random`, charged to the host budget: one `get-random-bytes` call may ask for any
//! length, and the host allocates it before the guest's memory limit is ever consulted.

use rand::{Rng as _, RngCore as _};
use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};

use crate::budget::HostBudget;

/// The `wasi:random` view of one invocation: its budget and its hash-map seed.
pub struct RandomCtx<'a> {
    pub(crate) budget: &'a mut HostBudget,
    pub(crate) seed: (u64, u64),
}

impl RandomCtx<'_> {
    /// `len` bytes from `fill`, once the budget has room for them.
    fn bytes(&mut self, len: u64, fill: impl FnOnce(&mut [u8])) -> wasmtime::Result<Vec<u8>> {
        self.budget.reserve(len).map_err(wasmtime::Error::new)?;
        // Within the budget, which is far below `usize::MAX`.
        let mut bytes = vec![0; len as usize];
        fill(&mut bytes);
        Ok(bytes)
    }
}

impl random::Host for RandomCtx<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        // The thread's CSPRNG (ChaCha, reseeded from the OS), as wasmtime-wasi uses.
        self.bytes(len, |buf| rand::rng().fill_bytes(buf))
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(rand::rng().random())
    }
}

impl insecure::Host for RandomCtx<'_> {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.bytes(len, |buf| rand::rng().fill_bytes(buf))
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(rand::rng().random())
    }
}

impl insecure_seed::Host for RandomCtx<'_> {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok(self.seed)
    }
}
