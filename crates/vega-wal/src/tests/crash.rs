//! A process killed (SIGKILL) while appending: every record it reported as
//! acknowledged is there when the log is reopened.
//!
//! The test runs its own test binary again, in child mode (selected by an
//! environment variable): the child appends from several tasks and prints
//! each acknowledged sequence number; the parent kills it mid-stream.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

const CHILD_DIR_VAR: &str = "VEGA_WAL_TEST_CRASH_CHILD_DIR";
const TASKS: u32 = 8;

/// The payload task `t` appends as its `i`-th record: varied lengths, so that
/// batches end at varied offsets and rotation happens mid-stream.
fn payload(t: u32, i: u32) -> Vec<u8> {
    let mut payload = format!("task {t} record {i} ").into_bytes();
    payload.resize(
        payload.len() + (i as usize * 37 + t as usize * 101) % 3000,
        b'.',
    );
    payload
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_records_survive_a_killed_process() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_VAR) {
        run_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let module = module_path!();
    let name = format!(
        "{}::acknowledged_records_survive_a_killed_process",
        module.split_once("::").map_or(module, |(_, rest)| rest)
    );
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.0.stdout.take().unwrap();
    let reader = {
        let acks = acks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(rest) = line.strip_prefix("ACK ") else {
                    continue;
                };
                let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap()).collect();
                acks.lock()
                    .unwrap()
                    .push((fields[0], fields[1] as u32, fields[2] as u32));
            }
        })
    };
    let mut stderr = child.0.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // Let it run ~300 ms past its first acknowledgements, then kill it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.lock().unwrap().is_empty() && Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "the child exited early ({status}): {}",
                errors.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    reader.join().unwrap();
    let child_errors = errors.join().unwrap();
    let acks = acks.lock().unwrap().clone();
    assert!(
        acks.len() >= 10,
        "only {} acknowledgements: {child_errors}",
        acks.len()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (wal, found) = open(options(dir.path()));
    let found: BTreeMap<u64, Vec<u8>> = found.into_iter().map(|r| (r.seq, r.payload)).collect();
    // Dense numbers from 1: no hole, nothing out of place.
    assert_eq!(
        found.keys().copied().collect::<Vec<_>>(),
        (1..=found.len() as u64).collect::<Vec<_>>()
    );
    for &(seq, t, i) in &acks {
        assert_eq!(
            found.get(&seq),
            Some(&payload(t, i)),
            "acknowledged record {seq} (task {t}, record {i}) is missing or wrong"
        );
    }
    eprintln!(
        "killed child: {} records acknowledged, {} found on reopen",
        acks.len(),
        found.len()
    );
    let next = runtime
        .block_on(wal.append(b"after the crash".to_vec()))
        .unwrap();
    assert_eq!(next, found.len() as u64 + 1);
    runtime.block_on(wal.close()).unwrap();
}

/// Child mode: append from several tasks until killed (or a minute passes),
/// printing `ACK <seq> <task> <i>` after each acknowledgement.
fn run_child(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (wal, _) = open(WalOptions {
            fsync_interval: Duration::from_millis(1),
            segment_bytes: 256 << 10,
            ..WalOptions::new(dir)
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    let seq = wal.append(payload(t, i)).await.expect("append");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {seq} {t} {i}").unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}
