//! Prometheus text exposition (format 0.0.4) of process and host resource
//! statistics, to be appended to the output of the `/metrics` endpoint.
//!
//! The `process_*` names follow the Prometheus client-library conventions so
//! that standard dashboards and alerts work unchanged; the `vega_*` names
//! cover the data directory's file system and the host's memory.

use std::fmt::Write as _;

use crate::{DiskUsage, ProcessStats, SystemMemory};

/// The metric type written in the `# TYPE` line.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Appends one metric family (`# HELP`, `# TYPE` and one unlabelled sample)
/// for each resource statistic to `out`.
pub fn encode_process_metrics(
    out: &mut String,
    stats: &ProcessStats,
    system_memory: &SystemMemory,
    data_dir_disk: &DiskUsage,
    data_dir_used_bytes: u64,
) {
    use Kind::{Counter, Gauge};
    let families: [(&str, Kind, &str, f64); 11] = [
        (
            "process_cpu_seconds_total",
            Counter,
            "Total user and system CPU time spent in seconds.",
            stats.cpu_seconds_total,
        ),
        (
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size in bytes.",
            stats.resident_memory_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            Gauge,
            "Virtual memory size in bytes.",
            stats.virtual_memory_bytes as f64,
        ),
        (
            "process_open_fds",
            Gauge,
            "Number of open file descriptors.",
            stats.open_fds as f64,
        ),
        (
            "process_threads",
            Gauge,
            "Number of OS threads in the process.",
            stats.threads as f64,
        ),
        (
            "process_start_time_seconds",
            Gauge,
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        ),
        (
            "vega_data_dir_disk_total_bytes",
            Gauge,
            "Size of the file system holding the data directory in bytes.",
            data_dir_disk.total_bytes as f64,
        ),
        (
            "vega_data_dir_disk_available_bytes",
            Gauge,
            "Space available on the file system holding the data directory in bytes.",
            data_dir_disk.available_bytes as f64,
        ),
        (
            "vega_data_dir_used_bytes",
            Gauge,
            "Bytes used by files in the data directory.",
            data_dir_used_bytes as f64,
        ),
        (
            "vega_system_memory_total_bytes",
            Gauge,
            "Total memory of the host in bytes.",
            system_memory.total_bytes as f64,
        ),
        (
            "vega_system_memory_available_bytes",
            Gauge,
            "Memory of the host available for new work in bytes.",
            system_memory.available_bytes as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        let kind = match kind {
            Counter => "counter",
            Gauge => "gauge",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", format_value(value));
    }
}

/// Formats a sample value the way Prometheus parses it.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample_output() -> String {
        let stats = ProcessStats {
            cpu_seconds_total: 12.75,
            resident_memory_bytes: 52_428_800,
            virtual_memory_bytes: 1_073_741_824,
            open_fds: 42,
            threads: 9,
            start_time_seconds: 1_700_000_000.5,
        };
        let memory = SystemMemory {
            total_bytes: 16_000_000_000,
            available_bytes: 8_000_000_000,
        };
        let disk = DiskUsage {
            total_bytes: 500_000_000_000,
            available_bytes: 200_000_000_000,
        };
        let mut out = String::from("# earlier metrics\n");
        encode_process_metrics(&mut out, &stats, &memory, &disk, 123_456);
        out
    }

    /// One parsed metric family: its type, whether it had help, and its value.
    #[derive(Debug, Default)]
    struct Family {
        kind: Option<String>,
        help: bool,
        value: Option<f64>,
    }

    /// Parses unlabelled exposition text, checking that `# HELP` and `# TYPE`
    /// come before the sample of the same name.
    fn parse(text: &str) -> BTreeMap<String, Family> {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines().filter(|l| *l != "# earlier metrics") {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            match parts.as_slice() {
                ["#", "HELP", name, help] => {
                    assert!(!help.is_empty());
                    families.entry(name.to_string()).or_default().help = true;
                }
                ["#", "TYPE", name, kind] => {
                    families.entry(name.to_string()).or_default().kind = Some(kind.to_string());
                }
                [name, value] => {
                    let family = families
                        .get_mut(*name)
                        .unwrap_or_else(|| panic!("sample before HELP: {line}"));
                    assert!(
                        family.help && family.kind.is_some(),
                        "sample before HELP/TYPE: {line}"
                    );
                    assert!(family.value.is_none(), "duplicate sample: {line}");
                    family.value = Some(
                        value
                            .parse()
                            .unwrap_or_else(|_| panic!("not a number: {line}")),
                    );
                }
                _ => panic!("unexpected line: {line:?}"),
            }
        }
        families
    }

    #[test]
    fn appends_without_clobbering_existing_output() {
        assert!(sample_output().starts_with("# earlier metrics\n"));
    }

    #[test]
    fn every_family_has_help_type_and_a_numeric_sample() {
        let families = parse(&sample_output());
        let expected = [
            ("process_cpu_seconds_total", "counter", 12.75),
            ("process_resident_memory_bytes", "gauge", 52_428_800.0),
            ("process_virtual_memory_bytes", "gauge", 1_073_741_824.0),
            ("process_open_fds", "gauge", 42.0),
            ("process_threads", "gauge", 9.0),
            ("process_start_time_seconds", "gauge", 1_700_000_000.5),
            ("vega_data_dir_disk_total_bytes", "gauge", 500_000_000_000.0),
            (
                "vega_data_dir_disk_available_bytes",
                "gauge",
                200_000_000_000.0,
            ),
            ("vega_data_dir_used_bytes", "gauge", 123_456.0),
            ("vega_system_memory_total_bytes", "gauge", 16_000_000_000.0),
            (
                "vega_system_memory_available_bytes",
                "gauge",
                8_000_000_000.0,
            ),
        ];
        assert_eq!(families.len(), expected.len(), "{families:?}");
        for (name, kind, value) in expected {
            let family = &families[name];
            assert_eq!(family.kind.as_deref(), Some(kind), "{name}");
            assert_eq!(family.value, Some(value), "{name}");
        }
    }

    #[test]
    fn metric_names_are_valid_prometheus_names() {
        for name in parse(&sample_output()).keys() {
            let mut chars = name.chars();
            assert!(
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
                "{name}"
            );
            assert!(
                chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{name}"
            );
        }
    }

    #[test]
    fn large_byte_counts_are_written_without_exponent_or_loss() {
        let out = sample_output();
        assert!(
            out.contains("\nvega_data_dir_disk_total_bytes 500000000000\n"),
            "{out}"
        );
    }

    #[test]
    fn non_finite_values_use_prometheus_spellings() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.0), "0");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_statistics_encode_and_parse() {
        let stats = ProcessStats::read().unwrap();
        let memory = crate::system_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::disk_usage(dir.path()).unwrap();
        let mut out = String::new();
        encode_process_metrics(&mut out, &stats, &memory, &disk, 0);
        let families = parse(&out);
        assert!(families["process_resident_memory_bytes"].value.unwrap() > 0.0);
    }
}
