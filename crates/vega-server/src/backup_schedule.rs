//! Scheduled backups (`backup.schedules`): the scheduler leader takes each
//! schedule's backup when it is due and then applies the schedule's
//! retention (keep-last-N and max-age) to that schedule's backups only,
//! never deleting its newest. A schedule's backups are described
//! `scheduled: <name>`; the last one in the repository says when it last
//! ran, so a new leader carries on where the old one stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vega_backup::{RetentionPolicy, Scope};
use vega_sync::schedule::Schedule;

use crate::state::AppState;

/// One configured schedule, parsed.
pub struct BackupSchedule {
    pub name: String,
    pub scope: Scope,
    pub schedule: Schedule,
    pub retention: RetentionPolicy,
    /// When it last ran (`None`: not looked up yet).
    last: Option<DateTime<Utc>>,
}

impl BackupSchedule {
    /// Parses `backup.schedules[i]`; the error names the key.
    pub fn parse(i: usize, c: &vega_config::BackupScheduleConfig) -> Result<Self, String> {
        let schedule = Schedule::parse(&c.schedule)
            .map_err(|e| format!("backup.schedules[{i}].schedule: {e}"))?;
        let scope = match c.scope.as_str() {
            "full" => Scope::Full,
            "catalog" => Scope::Catalog,
            other => {
                return Err(format!(
                    "backup.schedules[{i}].scope: must be full or catalog, not '{other}'"
                ))
            }
        };
        Ok(Self {
            name: c.name.clone(),
            scope,
            schedule,
            retention: RetentionPolicy {
                keep_last: c.keep_last,
                max_age: c.max_age.map(Into::into),
            },
            last: None,
        })
    }

    fn description(&self) -> String {
        format!("scheduled: {}", self.name)
    }
}

pub struct BackupScheduler {
    pub state: AppState,
    pub schedules: Vec<BackupSchedule>,
    pub leader: Arc<AtomicBool>,
    pub tick: Duration,
}

impl BackupScheduler {
    pub fn spawn(mut self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            if self.schedules.is_empty() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.tick) => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
                if self.leader.load(Ordering::SeqCst) {
                    self.run_due().await;
                }
            }
        })
    }

    async fn run_due(&mut self) {
        let state = self.state.clone();
        for schedule in &mut self.schedules {
            let description = schedule.description();
            let now = state.clock.now();
            let last = match schedule.last {
                Some(last) => last,
                None => match state.backups.list(None, None).await {
                    Ok(all) => {
                        let last = all
                            .iter()
                            .filter(|b| b.description.as_deref() == Some(description.as_str()))
                            .map(|b| b.created_at)
                            .max()
                            // Never ran: the first is due one period after start.
                            .unwrap_or(now);
                        schedule.last = Some(last);
                        last
                    }
                    Err(e) => {
                        tracing::warn!(schedule = %schedule.name, error = %e.message, "listing backups failed");
                        continue;
                    }
                },
            };
            if !schedule.schedule.is_due(&schedule.name, last, now) {
                continue;
            }
            schedule.last = Some(now);
            match crate::backup::BackupService::create(
                &state,
                schedule.scope,
                None,
                Some(description.clone()),
            )
            .await
            {
                Ok(manifest) => tracing::info!(
                    schedule = %schedule.name,
                    backup_id = %manifest.id,
                    bytes_written = manifest.stats.bytes_written,
                    "scheduled backup taken"
                ),
                Err(e) => {
                    tracing::error!(schedule = %schedule.name, error = %e.message, "scheduled backup failed");
                    continue;
                }
            }
            if schedule.retention.keep_last.is_none() && schedule.retention.max_age.is_none() {
                continue;
            }
            let all = match state.backups.list(None, None).await {
                Ok(all) => all,
                Err(e) => {
                    tracing::warn!(schedule = %schedule.name, error = %e.message, "listing backups failed");
                    continue;
                }
            };
            let own: Vec<_> = all
                .into_iter()
                .filter(|b| b.description.as_deref() == Some(description.as_str()))
                .collect();
            for id in schedule.retention.select(&own, Some(schedule.scope), now) {
                match state.backups.delete(id.as_str()).await {
                    Ok(report) => tracing::info!(
                        schedule = %schedule.name,
                        backup_id = %id,
                        freed_bytes = report.freed_bytes,
                        "expired backup deleted"
                    ),
                    Err(e) => {
                        tracing::warn!(schedule = %schedule.name, backup_id = %id, error = %e.message, "deleting an expired backup failed")
                    }
                }
            }
        }
    }
}
