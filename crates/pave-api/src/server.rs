//! Serving a router on a TCP listener, on loopback by default: the
//! execution API is meant for task processes on the same host.

use axum::Router;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;

/// Binds `127.0.0.1:port`; port 0 picks a free port. Returns the listener
/// and the address it got (to put in `PAVE_API_URL`).
pub async fn bind_loopback(port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and waits for requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
