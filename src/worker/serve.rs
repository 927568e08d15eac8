//! Serves an axum [`Router`] on one listener with the limits `axum::serve` lacks: a
//! deadline for a request's head, a cap on open connections, and a two-step stop
//! (stop accepting, then let in-flight requests finish within a budget).
//!
//! Built on hyper-util's connection builder and its `GracefulShutdown`, as axum's
//! low-level serving example does.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Pause after a failed `accept` (for example `EMFILE`, out of file descriptors)
/// before trying again: the condition persists for a while, and retrying at once would
/// spin a core and flood the log.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Longest a client may take to send a request's line and headers
    /// (`HTTP_HEADER_READ_TIMEOUT_SECONDS`), counted from when the server starts waiting
    /// for them, so it also bounds an idle keep-alive connection. Without a deadline, a
    /// client trickling a header (slowloris) holds a connection and a file descriptor
    /// for ever.
    pub header_read_timeout: Duration,
    /// Open connections at most (`HTTP_MAX_CONNECTIONS`). Past it the server stops
    /// calling `accept`, so new connections wait in the kernel's backlog instead of
    /// using a file descriptor each.
    pub max_connections: usize,
    /// After `stop` fires: how long in-flight requests may take to finish
    /// (`SHUTDOWN_TIMEOUT_SECONDS`); connections still open then are dropped.
    pub in_flight_budget: Duration,
}

/// Serves `router` on `listener` until `stop` fires, then closes the listener, asks
/// every connection to finish its current request and close, and returns once all
/// have (or `limits.in_flight_budget` has passed).
///
/// Speaks HTTP/1.1 only (with keep-alive): GitHub deliveries, kubelet probes and
/// Prometheus scrapes all use it, and sniffing for HTTP/2 prior knowledge would wait
/// for the first bytes with no deadline at all.
///
/// Never fails: accept errors are logged (`event = "accept_failed"`) and retried after
/// a short pause; a connection's own errors (reset, header timeout) are logged at
/// debug level.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = builder.http1_only();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();

    loop {
        // Taken before `accept`: at the cap, waiting connections stay in the kernel.
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; stop serving rather than spin.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(event = "accept_failed", error = %err);
                    drop(permit);
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_RETRY_DELAY) => continue,
                    }
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(event = "connection_failed", error = %err);
            }
            drop(permit);
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

    async fn start(limits: ServeLimits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let router = Router::new().route("/ping", get(|| async { "pong" }));
        tokio::spawn(serve(listener, router, limits, stop.clone()));
        (addr, stop)
    }

    fn limits(header_read_timeout: Duration, max_connections: usize) -> ServeLimits {
        ServeLimits {
            header_read_timeout,
            max_connections,
            in_flight_budget: Duration::from_secs(5),
        }
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
    async fn past_the_cap_a_connection_waits_until_another_closes() {
        let (addr, _stop) = start(limits(Duration::from_secs(65), 2)).await;
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(REQUEST).await.expect("write");
            read_response(&mut stream).await;
            open.push(stream);
        }
        // The kernel completes the handshake, but the server does not accept it.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        third.write_all(REQUEST).await.expect("write");
        let mut byte = [0_u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
        assert!(early.is_err(), "third connection served at the cap");

        drop(open.pop());
        let response = tokio::time::timeout(EVENTUALLY, read_response(&mut third))
            .await
            .expect("served once a slot is free");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    #[tokio::test]
    async fn after_stop_the_listener_refuses_and_the_server_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let router = Router::new().route("/ping", get(|| async { "pong" }));
        let server = tokio::spawn(serve(
            listener,
            router,
            limits(Duration::from_secs(65), 16),
            stop.clone(),
        ));
        // An idle keep-alive connection must not hold the stop up.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(REQUEST).await.expect("write");
        read_response(&mut idle).await;

        stop.cancel();
        tokio::time::timeout(EVENTUALLY, server)
            .await
            .expect("server returns")
            .expect("server task");
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[tokio::test]
    async fn a_request_in_flight_at_stop_is_answered() {
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(Semaphore::new(0));
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
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            router,
            limits(Duration::from_secs(65), 16),
            stop.clone(),
        ));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(REQUEST).await.expect("write");
        entered.notified().await;

        stop.cancel();
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
