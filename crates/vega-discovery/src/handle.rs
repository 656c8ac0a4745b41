//! [`RegistrationHandle`]: keeps a registration alive from a background
//! task and removes it on [`RegistrationHandle::deregister`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::DiscoveryError;

/// Removes the registration from the backend.
type Deregister = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), DiscoveryError>> + Send>;

/// What the background task last saw, shared with the handle.
#[derive(Debug, Default)]
pub(crate) struct KeeperStatus {
    last_error: Mutex<Option<DiscoveryError>>,
}

impl KeeperStatus {
    fn set(&self, error: Option<DiscoveryError>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn get(&self) -> Option<DiscoveryError> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A live registration. The background task refreshes it (and registers
/// again when the backend forgot it) until [`deregister`](Self::deregister)
/// removes it, or until the handle is dropped: then refreshing stops and
/// the entry expires after its TTL.
#[must_use = "dropping the handle stops refreshing the registration"]
pub struct RegistrationHandle {
    provider: &'static str,
    instance_id: String,
    keeper: Option<JoinHandle<()>>,
    status: Arc<KeeperStatus>,
    deregister: Option<Deregister>,
}

impl std::fmt::Debug for RegistrationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationHandle")
            .field("provider", &self.provider)
            .field("instance_id", &self.instance_id)
            .field("refreshing", &self.keeper.is_some())
            .field("last_error", &self.status.get())
            .finish()
    }
}

impl RegistrationHandle {
    /// A handle for a provider where registration is managed outside Vega
    /// (static lists, DNS): nothing to refresh or remove.
    pub fn noop(provider: &'static str, instance_id: &str) -> Self {
        RegistrationHandle {
            provider,
            instance_id: instance_id.to_string(),
            keeper: None,
            status: Arc::default(),
            deregister: None,
        }
    }

    /// A handle without a background task whose
    /// [`deregister`](Self::deregister) runs `deregister` (the backend
    /// checks the node itself).
    pub(crate) fn removable<D, DFut>(
        provider: &'static str,
        instance_id: &str,
        deregister: D,
    ) -> Self
    where
        D: FnOnce() -> DFut + Send + 'static,
        DFut: Future<Output = Result<(), DiscoveryError>> + Send + 'static,
    {
        RegistrationHandle {
            provider,
            instance_id: instance_id.to_string(),
            keeper: None,
            status: Arc::default(),
            deregister: Some(Box::new(move || Box::pin(deregister()))),
        }
    }

    /// A handle whose task calls `refresh` every `interval` (the first
    /// time one interval from now) and whose
    /// [`deregister`](Self::deregister) runs `deregister`. Must be called
    /// inside a Tokio runtime.
    pub(crate) fn keep_alive<R, Fut, D, DFut>(
        provider: &'static str,
        instance_id: &str,
        interval: Duration,
        mut refresh: R,
        deregister: D,
    ) -> Self
    where
        R: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), DiscoveryError>> + Send,
        D: FnOnce() -> DFut + Send + 'static,
        DFut: Future<Output = Result<(), DiscoveryError>> + Send + 'static,
    {
        let status = Arc::new(KeeperStatus::default());
        let task_status = status.clone();
        let id = instance_id.to_string();
        let keeper = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick completes at once; the registration is fresh.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match refresh().await {
                    Ok(()) => {
                        if task_status.get().is_some() {
                            tracing::info!(provider, instance = %id, "registration refreshed again");
                        }
                        task_status.set(None);
                    }
                    Err(error) => {
                        if task_status.get().as_ref() != Some(&error) {
                            tracing::warn!(provider, instance = %id, %error, "refreshing the registration failed");
                        }
                        task_status.set(Some(error));
                    }
                }
            }
        });
        RegistrationHandle {
            provider,
            instance_id: instance_id.to_string(),
            keeper: Some(keeper),
            status,
            deregister: Some(Box::new(move || Box::pin(deregister()))),
        }
    }

    /// The provider that holds the registration.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The error of the last refresh, `None` when it succeeded (or none
    /// happened yet). Readiness can show it.
    pub fn last_error(&self) -> Option<DiscoveryError> {
        self.status.get()
    }

    /// Stops refreshing, waits until no refresh is in flight, and removes
    /// the registration from the backend.
    pub async fn deregister(mut self) -> Result<(), DiscoveryError> {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
            // Returns once the task stopped; a refresh cut short cannot
            // register the instance again after the removal below.
            let _ = keeper.await;
        }
        match self.deregister.take() {
            Some(deregister) => deregister().await,
            None => Ok(()),
        }
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn refreshes_every_interval_until_dropped() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let handle = RegistrationHandle::keep_alive(
            "test",
            "a",
            Duration::from_secs(1),
            move || {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
            || async { Ok(()) },
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        drop(handle);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn remembers_the_last_refresh_error_and_deregisters() {
        let removed = Arc::new(AtomicUsize::new(0));
        let r = removed.clone();
        let handle = RegistrationHandle::keep_alive(
            "test",
            "a",
            Duration::from_secs(1),
            || async {
                Err(DiscoveryError::Unavailable {
                    provider: "test",
                    endpoint: "x".into(),
                    message: "down".into(),
                })
            },
            move || async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        assert_eq!(handle.last_error(), None);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(matches!(
            handle.last_error(),
            Some(DiscoveryError::Unavailable { .. })
        ));
        handle.deregister().await.unwrap();
        assert_eq!(removed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn noop_handles_deregister_without_a_backend() {
        let handle = RegistrationHandle::noop("static", "a");
        assert_eq!(handle.instance_id(), "a");
        handle.deregister().await.unwrap();
    }
}
