//! Reading a large object that survives dropped connections.
//!
//! The SDK retries a request, not a response body that breaks half way: for a restore of a
//! multi-gigabyte archive that is the likely failure. The reader picks up where it stopped
//! with a ranged GetObject pinned to the first response's ETag (`If-Match`), so a replaced
//! object is an error rather than a silent splice of two versions.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::S3Store;

/// Consecutive failed resumptions (without any byte read in between) before giving up.
const MAX_CONSECUTIVE_RESUMES: u32 = 3;

type Body = Pin<Box<dyn AsyncRead + Send>>;
type Reopen = Pin<Box<dyn Future<Output = io::Result<Body>> + Send>>;

enum State {
    Reading(Body),
    Reopening(Reopen),
}

pub(crate) struct ResumingReader {
    store: S3Store,
    full_key: String,
    etag: Option<String>,
    size: Option<u64>,
    pos: u64,
    failures: u32,
    state: State,
}

impl ResumingReader {
    pub(crate) fn new(
        store: S3Store,
        full_key: String,
        etag: Option<String>,
        size: Option<u64>,
        body: impl AsyncRead + Send + 'static,
    ) -> ResumingReader {
        ResumingReader {
            store,
            full_key,
            etag,
            size,
            pos: 0,
            failures: 0,
            state: State::Reading(Box::pin(body)),
        }
    }

    fn reopen(&self) -> Reopen {
        let store = self.store.clone();
        let key = self.full_key.clone();
        let etag = self.etag.clone();
        let pos = self.pos;
        let delay = crate::backoff::RESUME_READ.delay(self.failures.saturating_sub(1));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let inner = &store.inner;
            let mut req = inner
                .client
                .get_object()
                .bucket(&inner.bucket)
                .key(&key)
                .range(format!("bytes={pos}-"));
            if let Some(e) = etag {
                req = req.if_match(e);
            }
            let out = req.send().await.map_err(|e| {
                let changed = super::errors::status(&e) == Some(412);
                let err = store.err("GetObject", Some(&key), e);
                if changed {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "s3://{}/{key} was replaced while being read: read it again",
                            inner.bucket
                        ),
                    )
                } else {
                    io::Error::other(err)
                }
            })?;
            Ok(Box::pin(out.body.into_async_read()) as Body)
        })
    }

    /// Whether every byte of the object has been read (always, when the size is unknown).
    fn complete(&self) -> bool {
        self.size.is_none_or(|s| self.pos >= s)
    }
}

impl AsyncRead for ResumingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.state {
                State::Reading(body) => {
                    let before = buf.filled().len();
                    let result = ready!(body.as_mut().poll_read(cx, buf));
                    let n = buf.filled().len() - before;
                    this.pos += n as u64;
                    let cause = match result {
                        Ok(()) if n > 0 => {
                            this.failures = 0;
                            return Poll::Ready(Ok(()));
                        }
                        Ok(()) if this.complete() => return Poll::Ready(Ok(())),
                        // Every byte is in: a late transport error changes nothing.
                        Err(_) if this.size.is_some() && this.complete() => {
                            return Poll::Ready(Ok(()))
                        }
                        Ok(()) => io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the S3 response ended before the whole object was read",
                        ),
                        Err(e) => e,
                    };
                    if this.failures >= MAX_CONSECUTIVE_RESUMES {
                        return Poll::Ready(Err(cause));
                    }
                    this.failures += 1;
                    tracing::warn!(
                        key = %this.full_key,
                        offset = this.pos,
                        error = %cause,
                        attempt = this.failures,
                        "S3 download interrupted; resuming from the offset reached"
                    );
                    this.state = State::Reopening(this.reopen());
                }
                State::Reopening(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Ok(body) => this.state = State::Reading(body),
                    Err(e)
                        if this.failures < MAX_CONSECUTIVE_RESUMES
                            && e.kind() != io::ErrorKind::InvalidData =>
                    {
                        this.failures += 1;
                        tracing::warn!(
                            key = %this.full_key,
                            error = %e,
                            "resuming the S3 download failed; trying again"
                        );
                        this.state = State::Reopening(this.reopen());
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}
