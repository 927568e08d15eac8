//! Running a simulator's router on a TCP socket.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Serves `router` on `listener` until `shutdown` completes, then lets open
/// connections finish (axum's graceful shutdown).
///
/// Errors: the listener's accept errors, as `axum::serve` reports them.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A router served on a background task, with its bound address and a shutdown switch.
///
/// Dropping a `Served` signals shutdown too, so a test that panics does not leave a
/// server running; call [`Served::shutdown`] to also wait for it to stop.
#[derive(Debug)]
pub struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Served {
    /// Binds `127.0.0.1:0` (a free port) and serves `router` there.
    ///
    /// Errors: binding the socket.
    pub async fn bind_local(router: Router) -> io::Result<Self> {
        Self::bind(router, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `addr` and serves `router` there. Binding the address of a stopped server
    /// again brings a peer "back up" on the same URL (outage drills).
    ///
    /// Errors: binding the socket.
    pub async fn bind(router: Router, addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(router, listener, async move {
            // A dropped sender also means "stop".
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`, without a trailing slash: the value for `BACKEND_BASE_URL` or
    /// `GITHUB_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, waits for open ones to finish and for the server
    /// task to end.
    ///
    /// Errors: the server's own error, or the task's panic as `io::Error`.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    async fn fetch(url: &str) -> Result<String, reqwest::Error> {
        reqwest::get(url).await?.text().await
    }

    #[tokio::test]
    async fn a_stopped_server_comes_back_on_the_same_address() {
        crate::tls::install_crypto_provider();
        let app = || Router::new().route("/", get(|| async { "up" }));
        let served = Served::bind_local(app()).await.unwrap();
        let (addr, url) = (served.addr(), served.base_url());
        assert_eq!(fetch(&url).await.unwrap(), "up");

        served.shutdown().await.unwrap();
        assert!(fetch(&url).await.is_err(), "down while stopped");

        let again = Served::bind(app(), addr).await.unwrap();
        assert_eq!(again.addr(), addr);
        assert_eq!(fetch(&url).await.unwrap(), "up");
    }
}
