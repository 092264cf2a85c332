//! What the fake agents' HTTP servers share: serving like a Go server does (TCP_NODELAY on every
//! connection) until shut down, and counting parked blocking queries (the tests' sync marker).

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Serve `app` on `listener` in a task until `shutdown`. `name` labels the warning if the
/// server stops on its own.
pub(crate) fn serve(name: &'static str, listener: TcpListener, app: axum::Router, shutdown: CancellationToken) {
    tokio::spawn(async move {
        // Go sets TCP_NODELAY on every connection: without it, the last small write of a
        // response waits for the peer's delayed ACK, ~40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(error) = serve.await {
            tracing::warn!(%error, "{name}: the HTTP server stopped");
        }
    });
}

/// Counts a blocking query as waiting while it lives.
pub(crate) struct Parked<'a>(&'a watch::Sender<usize>);

impl<'a> Parked<'a> {
    pub(crate) fn new(waiting: &'a watch::Sender<usize>) -> Parked<'a> {
        waiting.send_modify(|n| *n += 1);
        Parked(waiting)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
