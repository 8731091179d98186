//! The process's phase as the health endpoints and the job runner see it: serving, or shutting
//! down (a first SIGTERM/SIGINT). Readiness turns 503 and the job runner stops taking jobs as
//! soon as shutdown begins, before the listener closes.

use std::sync::Arc;

use tokio::sync::watch;

/// Cheap to clone; clones share one phase.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    stopping: Arc<watch::Sender<bool>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            stopping: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Lifecycle {
    /// From now on the process is shutting down (idempotent).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn stopping(&self) {
        let mut phase = self.stopping.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = phase.wait_for(|stopping| *stopping).await;
    }
}
