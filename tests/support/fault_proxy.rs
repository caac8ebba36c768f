//! A TCP proxy on loopback (port 0) in front of an HTTP/1.1 server, that can be told to
//! misbehave: cut every open connection, refuse new ones, or answer the next N requests with
//! an error status of its own instead of forwarding them.
//!
//! Requests are parsed just enough (head, Content-Length or chunked body) to know where each
//! one ends, so an injected error replaces exactly one request on a kept-alive connection.
//! Responses are copied back unparsed: a client sends its next request only after reading the
//! previous response whole, so at that point nothing of the upstream's answer is in transit.

// Test helper: a panic with its message is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// An error answer the proxy gives in place of the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 `InternalError`.
    InternalError,
    /// HTTP 503 `SlowDown`, S3's throttling answer.
    SlowDown,
}

impl Fault {
    fn response(self) -> String {
        let (status, code, message) = match self {
            Fault::InternalError => (
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
            Fault::SlowDown => (
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            ),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULTPROXY</RequestId></Error>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: FAULTPROXY\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

struct State {
    /// While true, UploadPart requests wait before being forwarded.
    hold_parts: watch::Sender<bool>,
    /// UploadPart requests that have had to wait so far.
    parts_held: watch::Sender<usize>,
    /// Response bytes still let through before the connection carrying them is cut.
    response_budget: Mutex<Option<usize>>,
    refuse: AtomicBool,
    faults: Mutex<VecDeque<Fault>>,
    faults_served: AtomicUsize,
    requests_forwarded: AtomicUsize,
    connections: AtomicUsize,
    /// (method, path fragment) of the request at which the server "goes away".
    stop_at: Mutex<Option<(String, String)>>,
    stopped_at_request: AtomicBool,
}

impl Default for State {
    fn default() -> Self {
        State {
            hold_parts: watch::Sender::new(false),
            parts_held: watch::Sender::new(0),
            response_budget: Mutex::default(),
            refuse: AtomicBool::default(),
            faults: Mutex::default(),
            faults_served: AtomicUsize::default(),
            requests_forwarded: AtomicUsize::default(),
            connections: AtomicUsize::default(),
            stop_at: Mutex::default(),
            stopped_at_request: AtomicBool::default(),
        }
    }
}

impl State {
    /// How much of `n` response bytes may pass, and whether the connection must then be cut.
    fn spend_response_budget(&self, n: usize) -> (usize, bool) {
        let mut budget = self.response_budget.lock().unwrap();
        match *budget {
            Some(left) if n >= left => {
                *budget = None;
                (left, true)
            }
            Some(left) => {
                *budget = Some(left - n);
                (n, false)
            }
            None => (n, false),
        }
    }
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    cut: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let (cut, _) = watch::channel(0u64);
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            Arc::clone(&state),
            cut.clone(),
        ));
        FaultProxy {
            addr,
            state,
            cut,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection open now (new ones are accepted unless refused).
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// While on, new connections are closed as soon as they are accepted.
    pub fn refuse_new(&self, on: bool) {
        self.state.refuse.store(on, Ordering::SeqCst);
    }

    /// The server "goes away": no new connections, open ones cut.
    pub fn stop(&self) {
        self.refuse_new(true);
        self.cut_all();
    }

    /// The server goes away (as [`FaultProxy::stop`]) when the first request with this method
    /// whose request line contains `path_fragment` arrives; that request is not forwarded.
    pub fn stop_at_request(&self, method: &str, path_fragment: &str) {
        *self.state.stop_at.lock().unwrap() = Some((method.to_string(), path_fragment.to_string()));
    }

    /// Whether a [`FaultProxy::stop_at_request`] trigger has fired.
    pub fn stopped(&self) -> bool {
        self.state.stopped_at_request.load(Ordering::SeqCst)
    }

    /// The server is back.
    pub fn resume(&self) {
        self.refuse_new(false);
    }

    /// Lets the next `n` bytes of responses through, then closes the connection that carries
    /// them, once: a download broken in the middle of its body.
    pub fn cut_response_after(&self, n: usize) {
        *self.state.response_budget.lock().unwrap() = Some(n);
    }

    /// While on, multipart part uploads (`partNumber=` requests) are held back unanswered;
    /// turning it off lets them through.
    pub fn hold_part_uploads(&self, on: bool) {
        self.state.hold_parts.send_replace(on);
    }

    /// Waits until at least `n` part uploads have been held back.
    pub async fn wait_parts_held(&self, n: usize) {
        let mut rx = self.state.parts_held.subscribe();
        let _ = rx.wait_for(|held| *held >= n).await;
    }

    /// Answers the next `n` requests with `fault` instead of forwarding them.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut q = self.state.faults.lock().unwrap();
        q.extend(std::iter::repeat_n(fault, n));
    }

    pub fn faults_served(&self) -> usize {
        self.state.faults_served.load(Ordering::SeqCst)
    }

    pub fn requests_forwarded(&self) -> usize {
        self.state.requests_forwarded.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: Arc<State>,
    cut: watch::Sender<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        if state.refuse.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut cut_rx = cut.subscribe();
        let state = Arc::clone(&state);
        let cut = cut.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = serve(client, upstream, state, cut) => {}
                _ = cut_rx.changed() => {}
            }
        });
    }
}

/// Aborts the task when dropped, so a cut connection takes its copier with it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    state: Arc<State>,
    cut: watch::Sender<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_r, client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let client_w = Arc::new(tokio::sync::Mutex::new(client_w));
    let copier_w = Arc::clone(&client_w);
    let copier_state = Arc::clone(&state);
    let copier = AbortOnDrop(tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (n, cut) = copier_state.spend_response_budget(n);
            if copier_w.lock().await.write_all(&buf[..n]).await.is_err() || cut {
                break;
            }
        }
        let _ = copier_w.lock().await.shutdown().await;
    }));
    let mut reader = BufReader::new(client_r);
    loop {
        let Some(head) = read_head(&mut reader).await else {
            return;
        };
        let framing = Framing::of(&head);
        let request_line = head.lines().next().unwrap_or_default().to_string();
        let stop_here = {
            let mut stop_at = state.stop_at.lock().unwrap();
            let hit = stop_at.as_ref().is_some_and(|(method, fragment)| {
                request_line.starts_with(&format!("{method} ")) && request_line.contains(fragment)
            });
            if hit {
                *stop_at = None;
            }
            hit
        };
        if stop_here {
            state.refuse.store(true, Ordering::SeqCst);
            state.stopped_at_request.store(true, Ordering::SeqCst);
            cut.send_modify(|n| *n += 1);
            return;
        }
        let fault = state.faults.lock().unwrap().pop_front();
        if let Some(fault) = fault {
            // The body must be read whole before closing, or the kernel answers the unread
            // bytes with a reset that can destroy the error response in flight. A client
            // that sent `Expect: 100-continue` may wait for an answer first: give it then.
            drop(copier);
            let mut w = client_w.lock().await;
            if framing.expect_continue {
                let _ = w.write_all(fault.response().as_bytes()).await;
                let _ = framing.forward(&mut reader, &mut tokio::io::sink()).await;
            } else {
                if framing
                    .forward(&mut reader, &mut tokio::io::sink())
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = w.write_all(fault.response().as_bytes()).await;
            }
            let _ = w.shutdown().await;
            state.faults_served.fetch_add(1, Ordering::SeqCst);
            // Wait for the client to close first, so no reset races the response.
            let mut rest = [0u8; 1024];
            while matches!(reader.read(&mut rest).await, Ok(n) if n > 0) {}
            return;
        }
        let request_line = head.lines().next().unwrap_or_default();
        if request_line.contains("partNumber=") && *state.hold_parts.borrow() {
            state.parts_held.send_modify(|n| *n += 1);
            let mut hold = state.hold_parts.subscribe();
            let _ = hold.wait_for(|on| !*on).await;
        }
        state.requests_forwarded.fetch_add(1, Ordering::SeqCst);
        if server_w.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if framing.forward(&mut reader, &mut server_w).await.is_err() {
            return;
        }
    }
}

/// Reads a request head up to and including the blank line; `None` at end of stream.
async fn read_head<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let blank = line == "\r\n" || line == "\n";
        head.push_str(&line);
        if blank && head.len() > line.len() {
            return Some(head);
        }
        if blank {
            // Stray blank line between requests.
            head.clear();
        }
    }
}

struct Framing {
    content_length: u64,
    chunked: bool,
    expect_continue: bool,
}

impl Framing {
    fn of(head: &str) -> Framing {
        let mut f = Framing {
            content_length: 0,
            chunked: false,
            expect_continue: false,
        };
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (
                name.trim().to_ascii_lowercase(),
                value.trim().to_ascii_lowercase(),
            );
            match name.as_str() {
                "content-length" => f.content_length = value.parse().unwrap_or(0),
                "transfer-encoding" => f.chunked = value.contains("chunked"),
                "expect" => f.expect_continue = value == "100-continue",
                _ => {}
            }
        }
        f
    }

    /// Copies exactly one request body from `reader` to `out`.
    async fn forward<R, W>(&self, reader: &mut R, out: &mut W) -> std::io::Result<()>
    where
        R: AsyncBufReadExt + AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if !self.chunked {
            let copied =
                tokio::io::copy(&mut (&mut *reader).take(self.content_length), out).await?;
            if copied != self.content_length {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            return Ok(());
        }
        loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            out.write_all(size_line.as_bytes()).await?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("0");
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers, then the final blank line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    out.write_all(line.as_bytes()).await?;
                    if line == "\r\n" || line == "\n" {
                        return Ok(());
                    }
                }
            }
            tokio::io::copy(&mut (&mut *reader).take(size + 2), out).await?;
        }
    }
}
