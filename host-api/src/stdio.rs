//! The guest's stdout and stderr: captured into the invocation's [`LogCtx`], never the host's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::log::{LogCtx, LogSource};

/// One of the guest's output streams, writing lines into the invocation's guest log.
///
/// Writes never fail: past the cap they are counted and dropped, because Rust's `println!`
/// panics on a failed write and a noisy guest should not be turned into a crashing one.
#[derive(Debug, Clone)]
pub struct GuestStdio {
    log: LogCtx,
    source: LogSource,
}

impl GuestStdio {
    pub fn stdout(log: LogCtx) -> Self {
        Self {
            log,
            source: LogSource::Stdout,
        }
    }

    pub fn stderr(log: LogCtx) -> Self {
        Self {
            log,
            source: LogSource::Stderr,
        }
    }
}

/// How much the guest may write per `check-write`; the cap is enforced by the log buffer.
const WRITE_BUDGET: usize = 64 * 1024;

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStdio {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestStdio {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write_stdio(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for GuestStdio {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write_stdio(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
