//! Benchmarks, run by `bench/query_overhead.sh` (ignored in normal test
//! runs; they assert nothing about time). They print a Markdown table of
//! medians and ratios against a baseline measured in the same run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{server_over, SourceDir};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Query-path overhead: the same SQL through Vega's HTTP API (sandbox check,
/// pooled connection, JSON encoding, HTTP) versus DuckDB called directly,
/// in-process, on the same Parquet files.
#[test]
#[ignore = "benchmark: run with bench/query_overhead.sh"]
fn query_overhead() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let src = SourceDir::new();
    let mut csv = String::with_capacity(rows * 32);
    csv.push_str("id,category,value,flag\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "{i},cat{},{}.{},{}\n",
            i % 17,
            i % 1000,
            i % 10,
            i % 2 == 0
        ));
    }
    src.write("bench.csv", &csv);
    let vega = server_over(&src);
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(&con, "bench", "t", json!({ "path": "bench.csv" }));
    assert_eq!(vega.sync(&asset)["state"], "succeeded");
    let version = &vega.get(&format!("/api/v1/assets/{asset}/versions")).json()[0];
    let files: Vec<String> = version["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "'{}'",
                vega.data_dir
                    .join("segments")
                    .join(s["path"].as_str().unwrap())
                    .display()
            )
        })
        .collect();

    let direct = duckdb::Connection::open_in_memory().unwrap();
    direct
        .execute_batch(&format!(
            "CREATE SCHEMA bench; CREATE VIEW bench.t AS SELECT * FROM read_parquet([{}]);",
            files.join(", ")
        ))
        .unwrap();

    let scan = "SELECT id, category, value FROM bench.t WHERE flag ORDER BY id LIMIT 10000";
    let queries = [
        ("aggregate, json", "SELECT category, count(*) AS n, avg(value) AS avg_value FROM bench.t GROUP BY category ORDER BY category", "json"),
        ("point lookup, json", "SELECT * FROM bench.t WHERE id = 123457", "json"),
        ("10k rows, json", scan, "json"),
        ("10k rows, arrow", scan, "arrow"),
    ];
    println!("\n| query | DuckDB direct (median) | Vega HTTP (median) | ratio |");
    println!("|---|---|---|---|");
    for (name, sql, format) in queries {
        let mut direct_times = Vec::new();
        let mut vega_times = Vec::new();
        // Warm both paths (file cache, plans).
        for _ in 0..3 {
            let _: Vec<_> = direct
                .prepare(sql)
                .unwrap()
                .query_arrow([])
                .unwrap()
                .collect();
            vega.sql(sql);
        }
        // Interleave the runs so both see the same machine state.
        for _ in 0..runs {
            let t = Instant::now();
            let batches: Vec<_> = direct
                .prepare(sql)
                .unwrap()
                .query_arrow([])
                .unwrap()
                .collect();
            direct_times.push(t.elapsed());
            assert!(!batches.is_empty());
            let t = Instant::now();
            let r = vega.post(
                "/api/v1/query",
                &json!({ "sql": sql, "max_rows": 100000, "format": format }),
            );
            vega_times.push(t.elapsed());
            assert_eq!(r.status, 200, "{}", r.text);
        }
        let d = median(direct_times);
        let v = median(vega_times);
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} |",
            d.as_secs_f64() * 1000.0,
            v.as_secs_f64() * 1000.0,
            v.as_secs_f64() / d.as_secs_f64()
        );
    }
    println!("\nrows: {rows}, runs per query: {runs}");
}

/// Full sync of a PostgreSQL table against `COPY … TO STDOUT` through psql
/// (the physical baseline: the server's fastest way out), in one run; and
/// the sync's peak memory, which must follow the batch size, not the table.
#[test]
#[ignore = "benchmark: run with bench/postgres_sync.sh"]
fn postgres_full_sync() {
    use vega_testkit::postgres::TestPostgres;
    let rows: u64 = std::env::var("BENCH_PG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let pg = TestPostgres::start();
    pg.execute(&format!(
        "CREATE TABLE big AS SELECT g AS id, timestamptz '2026-01-01' + g * interval '1 second' AS ts,
                (g % 100000)::numeric(12,2) AS amount, 'item-' || g AS label, g % 7 = 0 AS flag
         FROM generate_series(1, {rows}) g;
         ANALYZE big;"
    ));

    // Baseline: COPY TO STDOUT through psql, output discarded.
    let started = Instant::now();
    let status = std::process::Command::new("psql")
        .args([
            "-h",
            pg.host(),
            "-p",
            &pg.port().to_string(),
            "-U",
            pg.user(),
            "-d",
            pg.database(),
        ])
        .args(["-c", "COPY big TO STDOUT"])
        .env("PGPASSWORD", pg.password())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("psql");
    assert!(status.success());
    let copy = started.elapsed();

    let vega = crate::server::TestServer::start_with(crate::server::Options {
        env: vec![("PG_TEST_PASSWORD".into(), pg.password().to_string())],
        ..Default::default()
    });
    let r = vega.post(
        "/api/v1/connections",
        &json!({ "name": "pg", "type": "postgres", "params": {
            "host": pg.host(), "port": pg.port(), "database": pg.database(), "user": pg.user(),
            "password": { "env": "PG_TEST_PASSWORD" } } }),
    );
    let con = r.json()["id"].as_str().unwrap().to_string();
    let asset = vega.asset(&con, "bench", "big", json!({ "table": "public.big" }));
    let rss = |field: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", vega.pid()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before_kib = rss("VmHWM:");
    let started = Instant::now();
    let job = vega.sync(&asset);
    let sync = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["rows"], rows);
    let peak_kib = rss("VmHWM:");

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("\n| path | time | rows/s |");
    println!("|---|---|---|");
    println!(
        "| psql `COPY big TO STDOUT` (baseline) | {:.1} s | {:.0} |",
        copy.as_secs_f64(),
        rate(copy)
    );
    println!(
        "| Vega full sync (read, Parquet, fsync, checks, publish) | {:.1} s | {:.0} |",
        sync.as_secs_f64(),
        rate(sync)
    );
    println!(
        "\nratio (Vega time / COPY time): {:.2}",
        sync.as_secs_f64() / copy.as_secs_f64()
    );
    println!("rows: {rows}, segment bytes: {}", job["bytes"]);
    println!(
        "vega peak RSS: {:.0} MiB before the sync, {:.0} MiB after it",
        before_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
}

/// Telegraf-like points: 3 tags, 4 fields, nanosecond timestamps; `id`
/// makes every point distinct.
fn lp_batch(from: u64, n: u64) -> String {
    let mut out = String::with_capacity(n as usize * 140);
    for id in from..from + n {
        out.push_str(&format!(
            "cpu,host=host{},region=r{},cpu=cpu{} usage_user={}.25,usage_system={}.5,usage_idle=90.125,id={id}i {}\n",
            id % 50,
            id % 4,
            id % 8,
            id % 100,
            id % 10,
            1_700_000_000_000_000_000u64 + id
        ));
    }
    out
}

/// Posts `batches` (index → body) to `url` from `clients` threads; returns
/// the wall time. Every answer must be 204.
fn post_all(url: &str, auth: Option<&str>, batches: &[String], clients: usize) -> Duration {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let client = reqwest::blocking::Client::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(body) = batches.get(i) else { return };
                    let mut rb = client.post(url).body(body.clone());
                    if let Some(a) = auth {
                        rb = rb.header("authorization", a);
                    }
                    let r = rb.send().expect("write");
                    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());
                }
            });
        }
    });
    started.elapsed()
}

/// Line-protocol ingest, acknowledged after fsync, against InfluxDB 1.x
/// (Debian's `influxd`, whose WAL fsyncs every write by default) on the
/// same machine: same points, same batch size, same client threads,
/// alternating rounds in one run.
#[test]
#[ignore = "benchmark: run with bench/ingest_line_protocol.sh"]
fn line_protocol_ingest() {
    use vega_testkit::influxdb::TestInfluxdb;
    let env = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let points = env("BENCH_LP_POINTS", 600_000);
    let batch = env("BENCH_LP_BATCH", 5_000);
    let clients = env("BENCH_LP_CLIENTS", 4) as usize;
    let rounds = 3u64;
    let influx = TestInfluxdb::start();
    influx.create_database("bench");
    let vega = crate::server::TestServer::start_with(crate::server::Options {
        extra_yaml: "ingest:\n  flush_rows: 500000\n".into(),
        ..Default::default()
    });
    let per_round = points / rounds;
    let (mut t_influx, mut t_vega) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let batches: Vec<String> = (0..per_round / batch)
            .map(|b| lp_batch(round * per_round + b * batch, batch))
            .collect();
        t_influx += post_all(
            &format!("{}/write?db=bench&precision=ns", influx.url()),
            None,
            &batches,
            clients,
        );
        t_vega += post_all(
            &format!("{}/api/v2/write?bucket=bench&precision=ns", vega.api),
            None,
            &batches,
            clients,
        );
    }
    let written = (points / rounds / batch) * batch * rounds;
    let in_vega = vega.sql("SELECT count(DISTINCT id) FROM bench.cpu")["rows"][0][0]
        .as_u64()
        .unwrap();
    assert_eq!(in_vega, written, "every acknowledged point is in Vega");
    let in_influx = influx.query_db("bench", "SELECT count(usage_idle) FROM cpu");
    let rate = |d: Duration| written as f64 / d.as_secs_f64();
    println!("\n| target | points | time | points/s |");
    println!("|---|---|---|---|");
    println!(
        "| InfluxDB 1.x `/write` (baseline) | {written} | {:.2} s | {:.0} |",
        t_influx.as_secs_f64(),
        rate(t_influx)
    );
    println!(
        "| Vega `/api/v2/write` | {written} | {:.2} s | {:.0} |",
        t_vega.as_secs_f64(),
        rate(t_vega)
    );
    println!(
        "ratio (Vega points/s ÷ InfluxDB points/s): {:.2}",
        rate(t_vega) / rate(t_influx)
    );
    println!(
        "batch: {batch} lines, clients: {clients}, rounds: {rounds}; InfluxDB count: {}",
        in_influx["results"][0]["series"][0]["values"][0][1]
    );
}

/// MQTT QoS 1 end to end through Mosquitto: the same messages published
/// (a) to a plain subscriber that acknowledges on receipt (the baseline:
/// broker and network alone) and (b) to Vega, which acknowledges each only
/// once durable; time until every message is received (baseline) or
/// queryable in Vega, and a check that none is lost or duplicated.
#[test]
#[ignore = "benchmark: run with bench/ingest_mqtt.sh"]
fn mqtt_ingest() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use vega_testkit::mosquitto::TestMosquitto;
    let messages: u64 = std::env::var("BENCH_MQTT_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let broker = TestMosquitto::start();
    let payload = |i: u64| format!("{{\"id\": {i}, \"temp\": {}.5, \"ok\": true}}", i % 40);

    // Baseline: a subscriber that acknowledges on receipt.
    let mut opts = rumqttc::MqttOptions::new("bench-baseline", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (sub, mut connection) = rumqttc::Client::new(opts, 10_000);
    sub.subscribe("bench/base/#", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    let received = std::sync::Arc::new(AtomicU64::new(0));
    let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, s) = (received.clone(), subscribed.clone());
    let driver = std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    s.store(true, Ordering::SeqCst)
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    while !subscribed.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let publisher = crate::mqtt::Publisher::connect(broker.port(), "bench-publisher");
    let started = Instant::now();
    for i in 0..messages {
        publisher.publish("bench/base/t", payload(i));
    }
    while received.load(Ordering::SeqCst) < messages {
        assert!(started.elapsed() < Duration::from_secs(600));
        std::thread::sleep(Duration::from_millis(5));
    }
    let baseline = started.elapsed();
    let _ = sub.disconnect();
    let _ = driver.join();

    // Vega.
    let vega = crate::server::TestServer::start();
    crate::mqtt::mqtt_asset(
        &vega,
        broker.port(),
        "bench",
        "mqtt",
        json!({ "topic": "bench/vega/#" }),
    );
    crate::mqtt::wait_until("the consumer", Duration::from_secs(30), || {
        vega.get("/health")
            .text
            .contains("\"connection:broker-bench-mqtt\",\"status\":\"healthy\"")
    });
    let started = Instant::now();
    for i in 0..messages {
        publisher.publish("bench/vega/t", payload(i));
    }
    let count = |sql: &str| -> u64 {
        let r = vega.post("/api/v1/query", &json!({ "sql": sql }));
        if r.status != 200 {
            return 0;
        }
        r.json()["rows"][0][0].as_u64().unwrap_or(0)
    };
    while count("SELECT count(*) FROM bench.mqtt") < messages {
        assert!(started.elapsed() < Duration::from_secs(900));
        std::thread::sleep(Duration::from_millis(50));
    }
    let through_vega = started.elapsed();
    assert_eq!(
        count("SELECT count(DISTINCT id) FROM bench.mqtt"),
        messages,
        "no loss"
    );
    assert_eq!(
        count("SELECT count(*) FROM bench.mqtt"),
        messages,
        "no duplicates"
    );
    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    println!("\n| path | messages | time | messages/s |");
    println!("|---|---|---|---|");
    println!(
        "| Mosquitto → subscriber acking on receipt (baseline) | {messages} | {:.2} s | {:.0} |",
        baseline.as_secs_f64(),
        rate(baseline)
    );
    println!(
        "| Mosquitto → Vega, acked after fsync, queryable | {messages} | {:.2} s | {:.0} |",
        through_vega.as_secs_f64(),
        rate(through_vega)
    );
    println!(
        "ratio (Vega ÷ baseline): {:.2}",
        rate(through_vega) / rate(baseline)
    );
}

/// Size of a directory tree in bytes.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// `cp -r` of a directory followed by `sync` (a backup fsyncs what it
/// writes, so the baseline does too).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new("sync").status().unwrap();
    assert!(status.success());
    started.elapsed()
}

/// Backup and restore throughput of a large asset against `cp -r` of the
/// same segment files, and the size of a second backup with no changes.
/// The asset is generated (incompressible random doubles, so its Parquet
/// bytes are about its data bytes) and synced through the file connector.
#[test]
#[ignore = "benchmark: run with bench/backup.sh"]
fn backup_and_restore() {
    let mib: u64 = std::env::var("BENCH_BACKUP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    // 8 random doubles a row, about 64 bytes of Parquet.
    let rows = mib * (1 << 20) / 64;
    let src = SourceDir::new();
    let parquet = src.path().join("big.parquet");
    let duck = duckdb::Connection::open_in_memory().unwrap();
    duck.execute_batch(&format!(
        "COPY (SELECT i AS id, random() AS a, random() AS b, random() AS c, random() AS d, \
         random() AS e, random() AS f, random() AS g FROM range({rows}) t(i)) \
         TO '{}' (FORMAT parquet, COMPRESSION zstd)",
        parquet.display()
    ))
    .unwrap();
    // A large backup outlasts the API's default request deadline.
    let vega = crate::server::TestServer::start_with(crate::server::Options {
        allowed_roots: vec![src.path()],
        env: vec![("VEGA_API__REQUEST_TIMEOUT".into(), "1h".into())],
        ..Default::default()
    });
    let con = vega.file_connection("files", &src.path());
    let asset = vega.asset(
        &con,
        "bench",
        "big",
        json!({ "path": "big.parquet", "format": "parquet" }),
    );
    let synced = Instant::now();
    // A large sync outlasts the helper's two-minute wait: poll the job.
    let r = vega.post(
        &format!("/api/v1/assets/{asset}/sync?mode=full"),
        &json!({}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let job = r.json()["id"].as_str().unwrap().to_string();
    loop {
        let state = vega.get(&format!("/api/v1/jobs/{job}")).json()["state"].clone();
        if state == "succeeded" {
            break;
        }
        assert!(
            state == "pending" || state == "running",
            "sync ended {state}"
        );
        assert!(
            synced.elapsed() < Duration::from_secs(3600),
            "sync took over an hour"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let sync_time = synced.elapsed();
    let segments = vega.data_dir.join("segments");
    let bytes = tree_bytes(&segments);
    let mb = bytes as f64 / 1e6;

    let scratch = tempfile::tempdir().unwrap();
    let cp_out = copy_tree(&segments, &scratch.path().join("copy"));

    let backup = |description: &str| {
        let started = Instant::now();
        let r = vega.post(
            "/api/v1/backups",
            &json!({ "scope": "full", "description": description }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        (started.elapsed(), r.json())
    };
    let (first_time, first) = backup("first");
    let (second_time, second) = backup("second, no changes");

    let config = vega.data_dir.with_extension("yaml");
    let target = scratch.path().join("restored");
    let started = Instant::now();
    let out = crate::server::vega_command()
        .arg("--config")
        .arg(&config)
        .args(["backup", "restore", "--data-dir"])
        .arg(&target)
        .output()
        .unwrap();
    let restore_time = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cp_in = copy_tree(
        &scratch.path().join("copy"),
        &scratch.path().join("copy-back"),
    );

    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "\nasset: {rows} rows, {mb:.0} MB of segments (sync took {:.1} s)",
        sync_time.as_secs_f64()
    );
    println!("| operation | Vega | `cp -r` + `sync` | ratio (Vega / cp) |");
    println!("|---|---|---|---|");
    println!(
        "| full backup (first) | {:.1} s, {:.0} MB/s | {:.1} s, {:.0} MB/s | {:.2} |",
        first_time.as_secs_f64(),
        rate(first_time),
        cp_out.as_secs_f64(),
        rate(cp_out),
        first_time.as_secs_f64() / cp_out.as_secs_f64()
    );
    println!(
        "| full restore (`vega backup restore`) | {:.1} s, {:.0} MB/s | {:.1} s, {:.0} MB/s | {:.2} |",
        restore_time.as_secs_f64(),
        rate(restore_time),
        cp_in.as_secs_f64(),
        rate(cp_in),
        restore_time.as_secs_f64() / cp_in.as_secs_f64()
    );
    println!(
        "second backup, no changes: {:.1} s, {} bytes written, {} bytes deduplicated (first wrote {})",
        second_time.as_secs_f64(),
        second["stats"]["bytes_written"],
        second["stats"]["bytes_deduplicated"],
        first["stats"]["bytes_written"],
    );
}

/// Line-protocol ingest with the write-ahead log kept in an S3-compatible
/// bucket too (`storage.object_store` without `storage.shared_dir`: each
/// group commit is also one PUT before the write is acknowledged) against
/// the same node shape with its log on local disk only: same points, batch
/// size and client threads, alternating rounds in one run, both against
/// the same local S3-compatible server (moto) for segments.
#[test]
#[ignore = "benchmark: run with bench/ingest_object_log.sh"]
fn line_protocol_ingest_with_the_log_in_the_object_store() {
    use vega_testkit::s3::TestS3;
    let env = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let points = env("BENCH_LP_POINTS", 300_000);
    let batch = env("BENCH_LP_BATCH", 5_000);
    let clients = env("BENCH_LP_CLIENTS", 4) as usize;
    let rounds = 3u64;
    let s3 = TestS3::start();
    let bucket = |prefix: &str| {
        format!(
            "storage:\n  object_store:\n    url: s3://{}/{prefix}\n    endpoint: \"{}\"\n    access_key_id: {}\n    secret_access_key: {}\n    allow_http: true\n",
            s3.bucket(),
            s3.endpoint(),
            s3.access_key_id(),
            s3.secret_access_key()
        )
    };
    // The baseline shares the bucket for segments but keeps its log local:
    // a shared directory (its own) takes the log out of the bucket.
    let shared = tempfile::tempdir().unwrap();
    let local = crate::server::TestServer::start_with(crate::server::Options {
        extra_yaml: format!(
            "ingest:\n  flush_rows: 500000\n{}  shared_dir: \"{}\"\n",
            bucket("local"),
            shared.path().display()
        ),
        ..Default::default()
    });
    let mirrored = crate::server::TestServer::start_with(crate::server::Options {
        extra_yaml: format!("ingest:\n  flush_rows: 500000\n{}", bucket("mirrored")),
        ..Default::default()
    });
    let per_round = points / rounds;
    let (mut t_local, mut t_mirrored) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let batches: Vec<String> = (0..per_round / batch)
            .map(|b| lp_batch(round * per_round + b * batch, batch))
            .collect();
        t_local += post_all(
            &format!("{}/api/v2/write?bucket=bench&precision=ns", local.api),
            None,
            &batches,
            clients,
        );
        t_mirrored += post_all(
            &format!("{}/api/v2/write?bucket=bench&precision=ns", mirrored.api),
            None,
            &batches,
            clients,
        );
    }
    let written = (points / rounds / batch) * batch * rounds;
    for vega in [&local, &mirrored] {
        let n = vega.sql("SELECT count(DISTINCT id) FROM bench.cpu")["rows"][0][0]
            .as_u64()
            .unwrap();
        assert_eq!(n, written, "every acknowledged point is stored");
    }
    let objects = s3.list("mirrored/wal/").len();
    let rate = |d: Duration| written as f64 / d.as_secs_f64();
    println!("\n| log | points | time | points/s |");
    println!("|---|---|---|---|");
    println!(
        "| local disk only (baseline) | {written} | {:.2} s | {:.0} |",
        t_local.as_secs_f64(),
        rate(t_local)
    );
    println!(
        "| local disk + bucket, before each acknowledgement | {written} | {:.2} s | {:.0} |",
        t_mirrored.as_secs_f64(),
        rate(t_mirrored)
    );
    println!(
        "ratio (bucket ÷ local points/s): {:.2}",
        rate(t_mirrored) / rate(t_local)
    );
    println!("batch: {batch} lines, clients: {clients}, rounds: {rounds}; log objects left in the bucket: {objects}");
}
