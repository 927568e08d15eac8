//! Serves an axum [`Router`] on one listener with the limits `axum::serve` lacks: a
//! deadline for a request's head, an idle timeout, a cap on open connections that
//! makes room by closing idle ones, and a two-step stop at the shutdown's
//! [`Phase::Drain`] (stop accepting, then let in-flight requests finish within a
//! budget).
//!
//! Built on hyper-util's connection builder and its `GracefulShutdown`, as axum's
//! low-level serving example does. Each connection is tracked ([`Tracked`]) through
//! three phases: waiting for a request head, a request in progress, idle between
//! requests. Only the phase "request in progress" protects a connection: at the cap,
//! the connection that has waited longest without a request in progress is closed to
//! make room (`reason="evicted"`), so idle keep-alive connections and trickling heads
//! (slowloris) can never keep a delivery out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::shutdown::{Phase, Shutdown};

/// Pause after a failed `accept` (for example `EMFILE`, out of file descriptors)
/// before trying again: the condition persists for a while, and retrying at once would
/// spin a core and flood the log.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Connections the kernel may hold completed but not yet accepted, per listener. Linux
/// caps it at `net.core.somaxconn` (4096 by default since 5.4). A burst of connections
/// beyond what the server accepts at once then waits instead of being refused.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Most bytes hyper buffers for one request head (line and headers). GitHub's
/// deliveries have heads of 1–2 KiB; without this cap hyper buffers up to ~400 KiB per
/// connection, so `HTTP_MAX_CONNECTIONS` clients sending huge heads slowly (below the
/// head deadline) would hold that much each. Past the cap hyper answers 431 (Request
/// Header Fields Too Large) and closes the connection. hyper's minimum is 8 KiB.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Binds `addr` with [`ACCEPT_BACKLOG`] and `SO_REUSEADDR` (a restarted worker can
/// listen again while old connections linger in `TIME_WAIT`).
///
/// # Errors
/// The socket, bind or listen error (address in use, permission denied).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Longest a keep-alive connection may wait for its next request plus that request's
    /// head (`HTTP_HEADER_READ_TIMEOUT_SECONDS`), counted from when the server starts
    /// waiting: the idle timeout, kept above load balancers' own.
    pub header_read_timeout: Duration,
    /// Longest a request's head (line and headers) may take to arrive
    /// (`HTTP_REQUEST_HEAD_TIMEOUT_SECONDS`), counted from its first byte, or from the
    /// accept for a connection's first request. A slowloris client trickling a header
    /// is cut off after this, whatever the idle timeout.
    pub request_head_timeout: Duration,
    /// Open connections at most (`HTTP_MAX_CONNECTIONS`). At the cap, a new connection
    /// closes the one that has waited longest without a request in progress; when every
    /// connection has a request in progress, it waits for one to end.
    pub max_connections: usize,
    /// After [`Phase::Drain`]: how long in-flight requests may take to finish
    /// (`SHUTDOWN_TIMEOUT_SECONDS`); connections still open then are dropped.
    pub in_flight_budget: Duration,
}

/// `reason` values of `sitg_bot_http_connections_closed_total`.
pub const CLOSE_REASONS: [&str; 6] = [
    "completed",
    "error",
    "idle_timeout",
    "head_timeout",
    "evicted",
    "shutdown",
];

/// `sitg_bot_http_connections_open{listener}` and
/// `sitg_bot_http_connections_closed_total{listener,reason}`.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    closed: IntCounterVec,
}

impl ConnectionMetrics {
    /// Registers both metrics in `registry`, with a series at 0 for every listener in
    /// `listeners` and every reason in [`CLOSE_REASONS`].
    ///
    /// # Errors
    /// A metric of the same name is already registered.
    pub fn register(registry: &Registry, listeners: &[&str]) -> Result<Self, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new(
                "sitg_bot_http_connections_open",
                "HTTP connections open on a listener (main: webhooks; metrics: probes and scrapes)",
            ),
            &["listener"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "sitg_bot_http_connections_closed_total",
                "HTTP connections closed, by listener and reason (completed, error, \
                 idle_timeout, head_timeout, evicted, shutdown)",
            ),
            &["listener", "reason"],
        )?;
        for listener in listeners {
            open.with_label_values(&[listener]);
            for reason in CLOSE_REASONS {
                closed.with_label_values(&[listener, reason]);
            }
        }
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        Ok(Self { open, closed })
    }
}

/// The connection waits for a request head (from its first byte, or from the accept).
const HEAD: u8 = 0;
/// A request is in progress: its head arrived and its response is not yet sent.
const BUSY: u8 = 1;
/// Between requests on a keep-alive connection.
const IDLE: u8 = 2;

/// What the server knows of one open connection.
struct Tracked {
    /// Order of acceptance, the key in [`OpenConnections`].
    id: u64,
    epoch: Instant,
    /// [`HEAD`], [`BUSY`] or [`IDLE`].
    phase: AtomicU8,
    /// Milliseconds after `epoch` when the current phase began.
    since_ms: AtomicU64,
    /// Requests in progress (more than one only with pipelining).
    in_flight: AtomicUsize,
    /// Whether a byte arrived since the connection last became idle (or was accepted).
    heard: AtomicBool,
    /// Woken at every phase change, for the head deadline.
    changed: Notify,
    /// Cancelled to close the connection at once (eviction).
    evict: CancellationToken,
}

impl Tracked {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: u8) {
        if phase == IDLE {
            self.heard.store(false, Ordering::Relaxed);
        }
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
        self.changed.notify_one();
    }

    fn snapshot(&self) -> (u8, u64) {
        let phase = self.phase.load(Ordering::Acquire);
        (phase, self.since_ms.load(Ordering::Relaxed))
    }

    /// Bytes arrived: on an idle connection they start the next request's head.
    fn bytes_arrived(&self) {
        self.heard.store(true, Ordering::Relaxed);
        if self
            .phase
            .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.enter(BUSY);
        RequestGuard(Arc::clone(self))
    }

    /// Resolves when the head being waited for is overdue: `timeout` after the phase
    /// [`HEAD`] began, unless the phase changed meanwhile.
    async fn head_overdue(&self, timeout: Duration) {
        loop {
            let (phase, since) = self.snapshot();
            if phase == HEAD {
                let deadline = self.epoch + Duration::from_millis(since) + timeout;
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {
                        if self.snapshot() == (HEAD, since) {
                            return;
                        }
                    }
                    () = self.changed.notified() => {}
                }
            } else {
                self.changed.notified().await;
            }
        }
    }
}

/// Marks a request in progress until dropped, which happens once its response body is
/// sent (or the request is abandoned).
struct RequestGuard(Arc<Tracked>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.enter(IDLE);
        }
    }
}

/// How long a connection waiting for a head counts as just opened: a real client's
/// head, once it arrives (see [`peek_request`]), is read and parsed far sooner.
const FRESH: Duration = Duration::from_millis(250);

/// The open connections of one listener, by order of acceptance.
struct OpenConnections {
    /// The [`Tracked::epoch`] of every connection of this listener.
    epoch: Instant,
    open: parking_lot::Mutex<std::collections::BTreeMap<u64, Arc<Tracked>>>,
}

impl OpenConnections {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            open: parking_lot::Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes a connection without a request in progress; false when every open
    /// connection (not already being closed) has one. The order, and within each class
    /// the one waiting longest first:
    ///
    /// 1. idle keep-alive connections (a client reopens one at no cost);
    /// 2. connections waiting for a head for [`FRESH`] or longer: a real client sends
    ///    its head right after connecting, so these are silent or trickling;
    /// 3. connections accepted less than [`FRESH`] ago that have sent nothing yet;
    /// 4. connections accepted less than [`FRESH`] ago whose head is arriving: what a
    ///    delivery looks like until its head is read, so the last to go.
    fn evict_longest_waiting(&self) -> bool {
        let now_ms = self.now_ms();
        let fresh_ms = u64::try_from(FRESH.as_millis()).unwrap_or(u64::MAX);
        let open = self.open.lock();
        let victim = open
            .values()
            .filter(|t| !t.evict.is_cancelled())
            .filter_map(|t| {
                let (phase, since) = t.snapshot();
                let class = match phase {
                    BUSY => return None,
                    IDLE => 0,
                    _ if now_ms.saturating_sub(since) >= fresh_ms => 1,
                    _ if !t.heard.load(Ordering::Relaxed) => 2,
                    _ => 3,
                };
                Some(((class, since, t.id), t))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, t)| t);
        match victim {
            Some(victim) => {
                victim.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// The accepted stream, telling its [`Tracked`] when bytes arrive.
struct TrackedIo {
    stream: TcpStream,
    tracked: Arc<Tracked>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracked.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accounts for one connection when its task ends, however it ends (an aborted task
/// counts as `shutdown`).
struct ConnectionGuard {
    id: u64,
    registry: Arc<OpenConnections>,
    metrics: ConnectionMetrics,
    listener: &'static str,
    reason: &'static str,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
        self.metrics.open.with_label_values(&[self.listener]).dec();
        self.metrics
            .closed
            .with_label_values(&[self.listener, self.reason])
            .inc();
    }
}

/// How often the accept loop looks again for a connection to close while every open
/// one has a request in progress.
const ROOM_RECHECK: Duration = Duration::from_millis(50);

/// Makes room for one more connection when `cap` are open: closes the connection that
/// has waited longest without a request in progress and returns at once, without
/// waiting for it to be gone (so the accept queue keeps draining at full speed; the
/// count exceeds the cap only by connections being closed). When every open connection
/// has a request in progress (each bounded by its handler's deadline), waits, looking
/// again every [`ROOM_RECHECK`], since a request that ends leaves its connection open
/// and idle. False once `shutdown` enters [`Phase::Drain`].
async fn make_room(registry: &OpenConnections, cap: usize, shutdown: &Shutdown) -> bool {
    loop {
        if registry.open.lock().len() < cap || registry.evict_longest_waiting() {
            return true;
        }
        tokio::select! {
            biased;
            () = shutdown.entered(Phase::Drain) => return false,
            () = tokio::time::sleep(ROOM_RECHECK) => {}
        }
    }
}

/// `stream` and whether bytes of its request have already arrived, looked at without
/// waiting or consuming them.
///
/// # Errors
/// The socket could not be handed between tokio and the standard library.
fn peek_request(stream: TcpStream) -> std::io::Result<(TcpStream, bool)> {
    // A freshly accepted tokio stream has no readiness yet, so tokio's own `try_*`
    // calls would not even ask the kernel; the standard stream (non-blocking) does.
    let std_stream = stream.into_std()?;
    let mut byte = [0_u8; 1];
    let heard = matches!(std_stream.peek(&mut byte), Ok(n) if n > 0);
    Ok((TcpStream::from_std(std_stream)?, heard))
}

/// `reason` of a connection that hyper ended with `err`.
fn failure_reason(err: &(dyn std::error::Error + 'static)) -> &'static str {
    match err.downcast_ref::<hyper::Error>() {
        // Only hyper's header-read timer times out; ours is a separate branch.
        Some(e) if e.is_timeout() => "idle_timeout",
        _ => "error",
    }
}

/// Serves `router` on `listener` until `shutdown` enters [`Phase::Drain`], then closes
/// the listener, asks
/// every connection to finish its current request and close, and returns once all
/// have (or `limits.in_flight_budget` has passed).
///
/// `name` is the `listener` label of the connection metrics (`main`, `metrics`).
///
/// Speaks HTTP/1.1 only (with keep-alive): GitHub deliveries, kubelet probes and
/// Prometheus scrapes all use it, and sniffing for HTTP/2 prior knowledge would wait
/// for the first bytes with no deadline at all.
///
/// Never fails: accept errors are logged (`event = "accept_failed"`) and retried after
/// a short pause; a connection's own errors (reset, header timeout) are logged at
/// debug level and counted in `sitg_bot_http_connections_closed_total`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    (name, metrics): (&'static str, ConnectionMetrics),
    shutdown: Shutdown,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .header_read_timeout(limits.header_read_timeout);
    let builder = builder.http1_only();
    let epoch = Instant::now();
    let registry = Arc::new(OpenConnections::new(epoch));
    let mut next_id = 0_u64;
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();

    loop {
        let stream = tokio::select! {
            biased;
            () = shutdown.entered(Phase::Drain) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(
                        event = "accept_failed",
                        error = %err,
                        "accepting a connection failed"
                    );
                    tokio::select! {
                        () = shutdown.entered(Phase::Drain) => break,
                        () = tokio::time::sleep(ACCEPT_RETRY_DELAY) => continue,
                    }
                }
            },
        };
        let at_cap = registry.open.lock().len() >= limits.max_connections;
        if !make_room(&registry, limits.max_connections, &shutdown).await {
            break;
        }
        // At the cap, connections are closed to make room, the just accepted ones last
        // when their request is already arriving: look whether it is.
        let (stream, heard) = if at_cap {
            match peek_request(stream) {
                Ok(peeked) => peeked,
                Err(err) => {
                    tracing::debug!(
                        event = "connection_failed",
                        error = %err,
                        "connection ended with an error"
                    );
                    continue;
                }
            }
        } else {
            (stream, false)
        };
        next_id += 1;
        let tracked = Arc::new(Tracked {
            id: next_id,
            epoch,
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0)),
            in_flight: AtomicUsize::new(0),
            heard: AtomicBool::new(heard),
            changed: Notify::new(),
            evict: CancellationToken::new(),
        });
        registry.open.lock().insert(next_id, Arc::clone(&tracked));
        metrics.open.with_label_values(&[name]).inc();
        let guard = ConnectionGuard {
            id: next_id,
            registry: Arc::clone(&registry),
            metrics: metrics.clone(),
            listener: name,
            reason: "shutdown",
        };

        let service = {
            let (router, tracked) = (router.clone(), Arc::clone(&tracked));
            hyper::service::service_fn(move |request| {
                let in_progress = tracked.request_started();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await?;
                    // The guard lives as long as the response body, which hyper drops
                    // once the body is sent.
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _in_progress = &in_progress;
                            frame
                        }))
                    }))
                }
            })
        };
        let io = TokioIo::new(TrackedIo {
            stream,
            tracked: Arc::clone(&tracked),
        });
        let connection = builder.serve_connection(io, service).into_owned();
        let connection = graceful.watch(connection);
        let head_timeout = limits.request_head_timeout;
        connections.spawn(async move {
            // The whole guard moves in (not only the field assigned below), so that it
            // lives, and holds its slot, as long as the connection.
            let mut guard = guard;
            guard.reason = tokio::select! {
                served = connection => match served {
                    Ok(()) => "completed",
                    Err(err) => {
                        tracing::debug!(
                            event = "connection_failed",
                            error = %err,
                            "connection ended with an error"
                        );
                        failure_reason(err.as_ref())
                    }
                },
                () = tracked.evict.cancelled() => "evicted",
                () = tracked.head_overdue(head_timeout) => "head_timeout",
            };
        });
        // Reap finished connections so the set does not grow with every one served.
        while connections.try_join_next().is_some() {}
    }

    drop(listener);
    let open = graceful.count();
    let finished = tokio::time::timeout(limits.in_flight_budget, graceful.shutdown()).await;
    if finished.is_err() {
        tracing::warn!(
            event = "connections_abandoned",
            open_at_stop = open,
            budget_seconds = limits.in_flight_budget.as_secs_f64(),
            "connections still open after the shutdown budget are closed"
        );
    }
    // Dropping the set aborts any connection still running past the budget.
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Generous upper bound for "eventually"; no assertion is about speed.
    const EVENTUALLY: Duration = Duration::from_secs(15);
    const REQUEST: &[u8] = b"GET /ping HTTP/1.1\r\nhost: test\r\n\r\n";

    fn test_metrics() -> (&'static str, ConnectionMetrics) {
        let registry = Registry::new();
        let metrics = ConnectionMetrics::register(&registry, &["test"]).expect("metrics");
        ("test", metrics)
    }

    async fn start(limits: ServeLimits) -> (std::net::SocketAddr, Shutdown) {
        let (addr, stop, _) = start_with_metrics(limits).await;
        (addr, stop)
    }

    async fn start_with_metrics(
        limits: ServeLimits,
    ) -> (std::net::SocketAddr, Shutdown, ConnectionMetrics) {
        let listener = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Shutdown::new();
        let router = Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "pong"
                }),
            );
        let metrics = test_metrics();
        let handle = metrics.1.clone();
        tokio::spawn(serve(listener, router, limits, metrics, stop.clone()));
        (addr, stop, handle)
    }

    fn limits(header_read_timeout: Duration, max_connections: usize) -> ServeLimits {
        ServeLimits {
            header_read_timeout,
            request_head_timeout: header_read_timeout,
            max_connections,
            in_flight_budget: Duration::from_secs(5),
        }
    }

    fn closed(metrics: &ConnectionMetrics, reason: &str) -> u64 {
        metrics.closed.with_label_values(&["test", reason]).get()
    }

    /// Reads one response's head and body off a keep-alive connection.
    async fn read_response(stream: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0_u8; 1024];
        while !String::from_utf8_lossy(&buf).ends_with("pong") {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the response was complete");
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Sends `head` on a new connection and returns everything read until the server
    /// closes it or a complete response's head (and "pong") arrived.
    async fn send_head(addr: std::net::SocketAddr, head: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before reading all of it: ignore write errors.
        let _ = stream.write_all(head).await;
        let mut buf = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            match tokio::time::timeout(EVENTUALLY, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    if String::from_utf8_lossy(&buf).ends_with("pong") {
                        break;
                    }
                }
                Ok(_) => break,
                Err(_) => panic!("no answer after {EVENTUALLY:?}"),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn a_request_head_past_16_kib_gets_431_and_a_github_sized_one_is_served() {
        let (addr, _stop) = start(limits(Duration::from_secs(65), 16)).await;
        let huge = format!(
            "GET /ping HTTP/1.1\r\nhost: test\r\nx-padding: {}\r\n\r\n",
            "a".repeat(20 * 1024)
        );
        let response = send_head(addr, huge.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 431"), "{response}");
        // GitHub's own heads are 1-2 KiB.
        let normal = format!(
            "GET /ping HTTP/1.1\r\nhost: test\r\nx-padding: {}\r\n\r\n",
            "a".repeat(2 * 1024)
        );
        let response = send_head(addr, normal.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    #[tokio::test]
    async fn a_partial_head_is_cut_off_after_the_header_timeout() {
        let (addr, _stop) = start(limits(Duration::from_millis(200), 16)).await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"POST /webhooks/github HTTP/1.1\r\nhost: test\r\nx-github-ev")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(EVENTUALLY, stream.read_to_end(&mut rest)).await;
        // EOF or a reset both mean the server let go of the connection.
        assert!(closed.is_ok(), "connection still open after {EVENTUALLY:?}");
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_cut_off_too() {
        let (addr, _stop) = start(limits(Duration::from_millis(200), 16)).await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(EVENTUALLY, stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "connection still open after {EVENTUALLY:?}");
        assert!(rest.is_empty(), "no response expected: {rest:?}");
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let (addr, _stop) = start(limits(Duration::from_secs(65), 16)).await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        for _ in 0..3 {
            stream.write_all(REQUEST).await.expect("write");
            let response = read_response(&mut stream).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        }
    }

    #[tokio::test]
    async fn past_the_cap_the_longest_idle_connection_makes_room() {
        let (addr, _stop, metrics) = start_with_metrics(limits(Duration::from_secs(65), 2)).await;
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(REQUEST).await.expect("write");
            read_response(&mut stream).await;
            open.push(stream);
        }
        // Both are idle keep-alive connections; the third is served at once and the
        // first (idle the longest) is closed for it.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        third.write_all(REQUEST).await.expect("write");
        let response = tokio::time::timeout(EVENTUALLY, read_response(&mut third))
            .await
            .expect("served at the cap");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let mut rest = Vec::new();
        let closed_first = tokio::time::timeout(EVENTUALLY, open[0].read_to_end(&mut rest)).await;
        assert!(
            closed_first.is_ok(),
            "the longest idle connection is closed"
        );
        assert_eq!(closed(&metrics, "evicted"), 1);
        // The second, idle for less time, still works.
        open[1].write_all(REQUEST).await.expect("write");
        let response = tokio::time::timeout(EVENTUALLY, read_response(&mut open[1]))
            .await
            .expect("still served");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    #[tokio::test]
    async fn a_request_in_progress_is_never_evicted() {
        let (addr, _stop, metrics) = start_with_metrics(limits(Duration::from_secs(65), 2)).await;
        let slow = b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n";
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(slow).await.expect("write");
            busy.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Both connections have a request in progress: the third waits for one to end.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        third.write_all(REQUEST).await.expect("write");
        for stream in &mut busy {
            let response = tokio::time::timeout(EVENTUALLY, read_response(stream))
                .await
                .expect("the requests in progress are answered");
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        }
        let response = tokio::time::timeout(EVENTUALLY, read_response(&mut third))
            .await
            .expect("served once a slot is free");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert_eq!(
            closed(&metrics, "evicted"),
            1,
            "one idle connection made room"
        );
    }

    #[tokio::test]
    async fn a_trickled_head_is_cut_off_at_the_head_deadline_not_the_idle_timeout() {
        let mut l = limits(Duration::from_secs(65), 16);
        l.request_head_timeout = Duration::from_millis(600);
        let (addr, _stop, metrics) = start_with_metrics(l).await;
        // One request first, so the head deadline counts from the next head's first
        // byte, not from the accept.
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(REQUEST).await.expect("write");
        read_response(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        let trickle = async {
            for byte in b"POST /webhooks/github HTTP/1.1\r\nhost: test\r\nx-a: b\r\n" {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        };
        tokio::time::timeout(EVENTUALLY, trickle)
            .await
            .expect("the trickling connection is closed");
        assert_eq!(closed(&metrics, "head_timeout"), 1);
        assert_eq!(closed(&metrics, "idle_timeout"), 0);
    }

    #[tokio::test]
    async fn after_stop_the_listener_refuses_and_the_server_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Shutdown::new();
        let router = Router::new().route("/ping", get(|| async { "pong" }));
        let server = tokio::spawn(serve(
            listener,
            router,
            limits(Duration::from_secs(65), 16),
            test_metrics(),
            stop.clone(),
        ));
        // An idle keep-alive connection must not hold the stop up.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(REQUEST).await.expect("write");
        read_response(&mut idle).await;

        stop.enter(Phase::Drain);
        tokio::time::timeout(EVENTUALLY, server)
            .await
            .expect("server returns")
            .expect("server task");
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[tokio::test]
    async fn a_request_in_flight_at_stop_is_answered() {
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let router = Router::new().route(
            "/ping",
            get({
                let (entered, release) = (Arc::clone(&entered), Arc::clone(&release));
                move || async move {
                    entered.notify_one();
                    let _held = release.acquire().await;
                    "pong"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Shutdown::new();
        let server = tokio::spawn(serve(
            listener,
            router,
            limits(Duration::from_secs(65), 16),
            test_metrics(),
            stop.clone(),
        ));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(REQUEST).await.expect("write");
        entered.notified().await;

        stop.enter(Phase::Drain);
        // Hold the handler until the listener is gone, so the answer below comes
        // from a server that has already stopped accepting.
        let refused = tokio::time::timeout(EVENTUALLY, async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(refused.is_ok(), "listener still open after stop");
        release.add_permits(1);
        let response = tokio::time::timeout(EVENTUALLY, read_response(&mut stream))
            .await
            .expect("answered");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::timeout(EVENTUALLY, server)
            .await
            .expect("server returns")
            .expect("server task");
    }
}
