//! Stopping: one `watch` flag tells every task and the accept loop to
//! stop; each waits for it with [`until_true`].

use std::time::Duration;

use tokio::sync::watch;

/// How long open connections may take to finish their request once the
/// listener closed.
pub const CONNECTION_GRACE: Duration = Duration::from_secs(5);

/// The sending side of the stop flag, and a receiver to clone.
pub fn channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Waits until a stop flag turns true (or its sender is gone).
pub async fn until_true(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}
