//! A streaming reader over a stored object, whatever the backend.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// `AsyncRead + Send + Unpin` over an object's bytes, read in bounded memory.
pub struct ObjectReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    size: Option<u64>,
}

impl ObjectReader {
    pub(crate) fn new(inner: impl AsyncRead + Send + 'static, size: Option<u64>) -> Self {
        ObjectReader {
            inner: Box::pin(inner),
            size,
        }
    }

    /// The object's size when the backend reported it.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("size", &self.size)
            .finish()
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}
