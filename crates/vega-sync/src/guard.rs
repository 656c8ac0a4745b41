//! What stands between a sync job and its source: the connection's
//! circuit breaker and its bulkhead.
//!
//! Every job takes a slot of its connection's bulkhead before it takes a
//! sync worker (at most `resilience.bulkhead.per_connection` jobs read one
//! connection at once; the others wait for the connection without holding
//! a worker, so one slow source cannot hold every sync worker), and every
//! attempt a permit of the connection's breaker (named after the connection, so
//! `circuit_breaker.services.<connection name>` tunes it). An open breaker
//! fails the job at once, saying so, without touching the source; the
//! attempt's outcome is recorded — a connector error is a failure, a
//! published version a success (slow when it took longer than
//! `slow_call_duration`), anything else (a failed check, a storage error)
//! says nothing about the source and is not counted.
//!
//! Retries of failed attempts also draw on a retry budget shared by every
//! connection (`resilience.retry.budget_percent` of recent attempts plus
//! `min_retries_per_second`): when many sources fail at once, jobs fail
//! instead of multiplying the load with retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vega_resilience::{
    BreakerRegistry, Bulkhead, BulkheadPermit, BulkheadSettings, Permit, RetryBudget,
    RetryBudgetSettings, Ticker,
};

use crate::SyncError;

/// The breakers and bulkheads of the connections.
pub struct SourceGuards {
    breakers: Arc<BreakerRegistry>,
    bulkhead: BulkheadSettings,
    bulkheads: Mutex<HashMap<String, Arc<Bulkhead>>>,
    budget: RetryBudget,
    ticker: Arc<dyn Ticker>,
}

impl std::fmt::Debug for SourceGuards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceGuards")
            .field("bulkhead", &self.bulkhead)
            .finish_non_exhaustive()
    }
}

/// An attempt's permit of its connection's breaker: release it with the
/// outcome.
pub(crate) struct Entered {
    permit: Permit,
    ticker: Arc<dyn Ticker>,
    started: std::time::Duration,
}

impl Entered {
    /// Records how the attempt went.
    pub(crate) fn finish<T>(self, result: &Result<T, SyncError>) {
        let took = self.ticker.now().saturating_sub(self.started);
        match result {
            Ok(_) => self.permit.success(took),
            Err(SyncError::Connector(_)) => self.permit.failure(took),
            Err(_) => self.permit.release(),
        }
    }
}

impl SourceGuards {
    /// Fails when the bulkhead or budget settings are out of range.
    pub fn new(
        breakers: Arc<BreakerRegistry>,
        bulkhead: BulkheadSettings,
        budget: RetryBudgetSettings,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, vega_resilience::InvalidSettings> {
        Bulkhead::new("check", bulkhead.clone())?;
        Ok(SourceGuards {
            breakers,
            bulkhead,
            bulkheads: Mutex::new(HashMap::new()),
            budget: RetryBudget::new(budget, ticker.clone())?,
            ticker,
        })
    }

    /// Whether the budget allows one more retry (and takes it).
    pub(crate) fn allow_retry(&self) -> bool {
        self.budget.try_withdraw()
    }

    /// The breakers, by connection name.
    pub fn breakers(&self) -> &Arc<BreakerRegistry> {
        &self.breakers
    }

    /// The bulkhead of connection `name`, made on first use.
    pub fn bulkhead(&self, name: &str) -> Arc<Bulkhead> {
        let mut all = self.bulkheads.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(
                    Bulkhead::new(format!("connection {name}"), self.bulkhead.clone())
                        .expect("the settings were checked by SourceGuards::new"),
                )
            })
            .clone()
    }

    /// A slot of connection `name`'s bulkhead, for a whole job (waiting up
    /// to the bulkhead's `max_wait`).
    pub(crate) async fn connection_slot(&self, name: &str) -> Result<BulkheadPermit, SyncError> {
        self.bulkhead(name)
            .acquire()
            .await
            .map_err(|full| SyncError::Bulkhead {
                connection: name.to_string(),
                max_concurrent: full.max_concurrent,
            })
    }

    /// A breaker permit for an attempt on connection `name`.
    pub(crate) async fn enter(&self, name: &str) -> Result<Entered, SyncError> {
        let permit = self
            .breakers
            .get_or_create(name)
            .try_acquire()
            .map_err(|rejected| SyncError::CircuitOpen {
                connection: name.to_string(),
                state: rejected.state.as_str(),
                retry_after_secs: rejected.retry_after.map(|d| d.as_secs_f64().ceil() as u64),
            })?;
        self.budget.record_request();
        Ok(Entered {
            permit,
            ticker: self.ticker.clone(),
            started: self.ticker.now(),
        })
    }
}
