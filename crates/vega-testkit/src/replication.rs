//! A throwaway PostgreSQL primary with one streaming replica, for tests of
//! read/write splitting and failover.
//!
//! [`TestReplicaSet::start`] starts a primary like
//! [`TestPostgres::start`](crate::postgres::TestPostgres::start) (with
//! `wal_level=replica` and WAL senders), creates a replication role with
//! its own password and `pg_hba.conf` entry, clones the primary with
//! `pg_basebackup -R` into a second temporary directory and starts that as
//! a hot standby on its own free loopback port. Both run as the `postgres`
//! user when the tests run as root, and both are stopped on drop.
//!
//! The primary can be killed (`pg_ctl stop -m immediate`), the replica
//! promoted (`pg_ctl promote`), and the replica's WAL replay paused to make
//! it lag. Every wait is bounded; failures panic: this is test code.

use std::fs;
use std::time::{Duration, Instant};

use crate::postgres::{chown, random_password, TestPostgres, START_TIMEOUT};

/// The role the replica streams WAL as.
const REPLICATION_USER: &str = "vega_repl";
/// Bound on waiting for the replica to stream, catch up, pause or promote.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Primary settings for streaming replication (PostgreSQL's defaults, made
/// explicit so the test does not depend on them), and commits that return
/// only once their WAL is written, so [`TestReplicaSet::wait_caught_up`]
/// covers every commit that returned.
const PRIMARY_OPTIONS: &str =
    "-c wal_level=replica -c max_wal_senders=5 -c wal_keep_size=64MB -c synchronous_commit=on";
/// The replica answers reads while it replays.
const REPLICA_OPTIONS: &str = "-c hot_standby=on";

/// A running primary and its streaming replica; both stopped on drop.
#[derive(Debug)]
pub struct TestReplicaSet {
    primary: TestPostgres,
    replica: TestPostgres,
}

impl TestReplicaSet {
    /// A primary with one asynchronous streaming replica, streaming when
    /// this returns.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// Like [`TestReplicaSet::start`], with synchronous replication: every
    /// commit on the primary is on the replica's disk when it returns, so a
    /// failover loses nothing that was committed.
    pub fn start_synchronous() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(synchronous: bool) -> Self {
        let primary = TestPostgres::start_configured(false, PRIMARY_OPTIONS);

        let repl_password = random_password();
        primary.execute(&format!(
            "CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD '{repl_password}'"
        ));
        let hba = primary.data_dir().join("pg_hba.conf");
        let text = fs::read_to_string(&hba).expect("reading pg_hba.conf");
        fs::write(
            &hba,
            format!("host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256\n{text}"),
        )
        .expect("writing pg_hba.conf");
        primary.execute("SELECT pg_reload_conf()");

        let dir = tempfile::Builder::new()
            .prefix("vega-pg-replica-")
            .tempdir()
            .expect("creating a temporary directory for the replica");
        if let Some((uid, gid)) = primary.run_as {
            chown(dir.path(), uid, gid);
        }
        let mut replica = TestPostgres {
            dir,
            bin: primary.bin.clone(),
            port: 0,
            // The roles are copied with the data.
            password: primary.password.clone(),
            run_as: primary.run_as,
            running: false,
            extra_options: REPLICA_OPTIONS.to_string(),
        };
        let data = replica.data_dir();
        let port = primary.port().to_string();
        let out = replica.run_tool_with_env(
            "pg_basebackup",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-R".as_ref(),
                "-X".as_ref(),
                "stream".as_ref(),
                "-c".as_ref(),
                "fast".as_ref(),
                "--no-sync".as_ref(),
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                REPLICATION_USER.as_ref(),
                "-w".as_ref(),
            ],
            &[("PGPASSWORD", &repl_password), ("PGCONNECT_TIMEOUT", "10")],
        );
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        replica.start_on_free_port();

        let set = TestReplicaSet { primary, replica };
        set.wait_streaming();
        if synchronous {
            // Named only now (a commit would wait for a standby that does
            // not exist yet), and in the primary's own configuration only,
            // so a promoted replica does not wait for a standby of its own.
            set.primary
                .execute("ALTER SYSTEM SET synchronous_standby_names = '*'");
            set.primary.execute("SELECT pg_reload_conf()");
            set.wait_for(
                &set.primary,
                "SELECT count(*) > 0 FROM pg_stat_replication WHERE sync_state = 'sync'",
                "the replica to become synchronous",
            );
        }
        set
    }

    /// The primary (after [`kill_primary`](Self::kill_primary), a stopped
    /// server whose port nothing listens on).
    pub fn primary(&self) -> &TestPostgres {
        &self.primary
    }

    /// The replica (a primary itself after
    /// [`promote_replica`](Self::promote_replica)).
    pub fn replica(&self) -> &TestPostgres {
        &self.replica
    }

    /// Kills the primary at once (`pg_ctl stop -m immediate`): no shutdown
    /// checkpoint, clients see their connections drop.
    pub fn kill_primary(&mut self) {
        self.primary.stop();
    }

    /// Promotes the replica (`pg_ctl promote`) and waits until it accepts
    /// writes.
    pub fn promote_replica(&self) {
        let data = self.replica.data_dir();
        let timeout = START_TIMEOUT.as_secs().to_string();
        let out = self.replica.run_tool(
            "pg_ctl",
            &[
                "promote".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                timeout.as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl promote failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_for(
            &self.replica,
            "SELECT NOT pg_is_in_recovery()",
            "the promotion",
        );
    }

    /// Pauses WAL replay on the replica (`pg_wal_replay_pause()`) and waits
    /// until it is paused: from now on it receives WAL but shows nothing
    /// new, and its lag grows.
    pub fn pause_replay(&self) {
        self.replica.execute("SELECT pg_wal_replay_pause()");
        self.wait_for(
            &self.replica,
            "SELECT pg_get_wal_replay_pause_state() = 'paused'",
            "replay to pause",
        );
    }

    /// Resumes WAL replay on the replica.
    pub fn resume_replay(&self) {
        self.replica.execute("SELECT pg_wal_replay_resume()");
    }

    /// Waits until the replica has replayed everything the primary has
    /// written so far.
    pub fn wait_caught_up(&self) {
        let lsn = self.primary.execute("SELECT pg_current_wal_lsn()");
        let lsn = lsn.trim();
        self.wait_for(
            &self.replica,
            &format!("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{lsn}') >= 0"),
            "the replica to catch up",
        );
    }

    /// Waits until the primary has a streaming WAL sender.
    fn wait_streaming(&self) {
        self.wait_for(
            &self.primary,
            "SELECT count(*) > 0 FROM pg_stat_replication WHERE state = 'streaming'",
            "the replica to stream",
        );
    }

    /// Polls `sql` (one boolean) on `server` until it is true, bounded.
    fn wait_for(&self, server: &TestPostgres, sql: &str, what: &str) {
        let deadline = Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let last = match server.try_execute(sql) {
                Ok(out) if out.trim() == "t" => return,
                Ok(out) => out,
                Err(e) => e,
            };
            if Instant::now() > deadline {
                let log = fs::read_to_string(server.log_path()).unwrap_or_default();
                panic!(
                    "timed out waiting for {what} ({sql} → {}); server log:\n{log}",
                    last.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
