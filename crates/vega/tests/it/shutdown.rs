//! Graceful shutdown: readiness turns 503 at once, new requests are refused,
//! the request in flight finishes, and the process exits 0.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::TestServer;

#[test]
fn sigterm_lets_the_query_in_flight_finish_and_exits_zero() {
    let mut vega = TestServer::start();
    // Calibrate a query that takes roughly a second on this machine.
    let mut n: u64 = 1_000_000;
    loop {
        let started = Instant::now();
        vega.sql(&format!(
            "SELECT count(*) FROM range({n}) t WHERE t.range % 7 = 3"
        ));
        let took = started.elapsed();
        if took > Duration::from_millis(800) || n > 50_000_000_000 {
            break;
        }
        n *= if took < Duration::from_millis(100) {
            10
        } else {
            2
        };
    }
    let api = vega.api.clone();
    let ops = vega.ops.clone();
    let sql = format!(
        "SELECT count(*) AS c FROM range({}) t WHERE t.range % 7 = 3",
        n * 2
    );
    let in_flight = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(format!("{api}/api/v1/query"))
            .json(&json!({ "sql": sql, "timeout_ms": 120000 }))
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    std::thread::sleep(Duration::from_millis(300));
    vega.signal(libc::SIGTERM);
    // Readiness turns 503 at once while the query runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut saw_503 = false;
    while Instant::now() < deadline {
        match reqwest::blocking::get(format!("{ops}/health/ready")) {
            Ok(r) if r.status() == 503 => {
                saw_503 = true;
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let (status, body) = in_flight
        .join()
        .unwrap()
        .expect("the in-flight request got an answer");
    assert_eq!(status, 200, "{body}");
    let exit = vega.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit status {exit}");
    assert!(saw_503, "readiness never reported 503 during the drain");
    assert!(vega.logs().contains("draining"));
}

#[test]
fn sigint_stops_an_idle_server_with_exit_zero() {
    let mut vega = TestServer::start();
    vega.signal(libc::SIGINT);
    assert!(vega.wait_exit(Duration::from_secs(20)).success());
}
