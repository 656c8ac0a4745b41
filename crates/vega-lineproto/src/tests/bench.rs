//! A micro-benchmark, ignored by default. Run it optimized:
//! `cargo test -p vega-lineproto --release -- --ignored --nocapture`.

use std::time::Instant;

use crate::{parse, Precision};

#[test]
#[ignore = "micro-benchmark; run with --release -- --ignored --nocapture"]
fn telegraf_like_lines_per_second() {
    const LINES: usize = 200_000;
    let line = "cpu,host=a,region=b usage_user=1.5,usage_system=2i,ok=true 1700000000000000000\n";
    let body = line.repeat(LINES);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let parsed = parse(body.as_bytes(), Precision::Nanoseconds, 0);
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(parsed.points.len(), LINES);
        assert!(parsed.errors.is_empty());
        best = best.min(seconds);
    }
    println!(
        "{LINES} lines ({} MB) in {:.1} ms: {:.0} lines/s, {:.0} MB/s",
        body.len() / 1_000_000,
        best * 1e3,
        LINES as f64 / best,
        body.len() as f64 / best / 1e6
    );
}
