//! Resource statistics of this process and its host: CPU time, memory, file
//! descriptors and threads from `/proc` (Linux only; other platforms get
//! [`TelemetryError::Unsupported`]), system memory from `/proc/meminfo`, and
//! file-system usage via `statvfs` (Unix).

use std::path::{Path, PathBuf};

use crate::TelemetryError;

/// Resource usage of the current process.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time consumed, in seconds.
    pub cpu_seconds_total: f64,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: u64,
    /// Number of open file descriptors.
    pub open_fds: u64,
    /// Number of OS threads.
    pub threads: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Memory of the whole host, from `/proc/meminfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemMemory {
    /// `MemTotal`, in bytes.
    pub total_bytes: u64,
    /// `MemAvailable`: memory available for new work without swapping, in bytes.
    pub available_bytes: u64,
}

/// Size and free space of the file system holding a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Total size of the file system, in bytes.
    pub total_bytes: u64,
    /// Space available to unprivileged users, in bytes.
    pub available_bytes: u64,
}

impl ProcessStats {
    /// Reads the statistics of the current process.
    #[cfg(target_os = "linux")]
    pub fn read() -> Result<Self, TelemetryError> {
        linux::process_stats()
    }

    /// Reads the statistics of the current process.
    #[cfg(not(target_os = "linux"))]
    pub fn read() -> Result<Self, TelemetryError> {
        Err(TelemetryError::Unsupported("process statistics"))
    }
}

/// Total and available memory of the host.
#[cfg(target_os = "linux")]
pub fn system_memory() -> Result<SystemMemory, TelemetryError> {
    let path = Path::new("/proc/meminfo");
    parse_meminfo(&read(path)?).map_err(|reason| parse_error(path, reason))
}

/// Total and available memory of the host.
#[cfg(not(target_os = "linux"))]
pub fn system_memory() -> Result<SystemMemory, TelemetryError> {
    Err(TelemetryError::Unsupported("system memory"))
}

/// Size and free space of the file system holding `path`.
#[cfg(unix)]
pub fn disk_usage(path: &Path) -> Result<DiskUsage, TelemetryError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let io_error = |source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path contains a NUL byte",
        ))
    })?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid,
    // writable `statvfs` that outlives the call.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io_error(std::io::Error::last_os_error()));
    }
    // The field widths differ between platforms; widening to u64 is lossless.
    #[allow(clippy::useless_conversion)]
    let (blocks, available, fragment) = (
        u64::from(stat.f_blocks),
        u64::from(stat.f_bavail),
        u64::from(stat.f_frsize),
    );
    Ok(DiskUsage {
        total_bytes: blocks.saturating_mul(fragment),
        available_bytes: available.saturating_mul(fragment),
    })
}

/// Size and free space of the file system holding `path`.
#[cfg(not(unix))]
pub fn disk_usage(_path: &Path) -> Result<DiskUsage, TelemetryError> {
    Err(TelemetryError::Unsupported("disk usage"))
}

fn read(path: &Path) -> Result<String, TelemetryError> {
    std::fs::read_to_string(path).map_err(|source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, reason: String) -> TelemetryError {
    TelemetryError::Parse {
        path: PathBuf::from(path),
        reason,
    }
}

/// Extracts `MemTotal` and `MemAvailable` (reported in kB) from
/// `/proc/meminfo` text.
fn parse_meminfo(text: &str) -> Result<SystemMemory, String> {
    let field = |name: &str| -> Result<u64, String> {
        let line = text
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
            })
            .ok_or_else(|| format!("no {name} line"))?;
        let mut parts = line.split_whitespace();
        let value: u64 = parts
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} is not a number"))?;
        match parts.next() {
            Some("kB") => Ok(value.saturating_mul(1024)),
            None => Ok(value),
            Some(unit) => Err(format!("{name} has unknown unit {unit:?}")),
        }
    };
    Ok(SystemMemory {
        total_bytes: field("MemTotal")?,
        available_bytes: field("MemAvailable")?,
    })
}

/// The fields of `/proc/<pid>/stat` this crate needs, in raw units.
#[derive(Debug, PartialEq, Eq)]
struct StatFields {
    utime_ticks: u64,
    stime_ticks: u64,
    threads: u64,
    start_ticks_after_boot: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_stat(text: &str) -> Result<StatFields, String> {
    let after_comm = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or("no ')' after the command name")?;
    // Field 3 (state) is at index 0 here, so field N is at index N - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let get = |field_no: usize, name: &str| -> Result<u64, String> {
        fields
            .get(field_no - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("field {field_no} ({name}) is missing or not a number"))
    };
    Ok(StatFields {
        utime_ticks: get(14, "utime")?,
        stime_ticks: get(15, "stime")?,
        threads: get(20, "num_threads")?,
        start_ticks_after_boot: get(22, "starttime")?,
        vsize_bytes: get(23, "vsize")?,
        rss_pages: get(24, "rss")?,
    })
}

/// Extracts the boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_boot_time(text: &str) -> Result<u64, String> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no btime line".to_string())
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    pub(super) fn process_stats() -> Result<ProcessStats, TelemetryError> {
        let stat_path = Path::new("/proc/self/stat");
        let stat = parse_stat(&read(stat_path)?).map_err(|r| parse_error(stat_path, r))?;
        let proc_stat_path = Path::new("/proc/stat");
        let boot_time =
            parse_boot_time(&read(proc_stat_path)?).map_err(|r| parse_error(proc_stat_path, r))?;
        let ticks_per_second = sysconf(libc::_SC_CLK_TCK, "clock ticks per second")? as f64;
        let page_size = sysconf(libc::_SC_PAGESIZE, "page size")?;
        Ok(ProcessStats {
            cpu_seconds_total: (stat.utime_ticks + stat.stime_ticks) as f64 / ticks_per_second,
            resident_memory_bytes: stat.rss_pages.saturating_mul(page_size),
            virtual_memory_bytes: stat.vsize_bytes,
            open_fds: open_fds()?,
            threads: stat.threads,
            start_time_seconds: boot_time as f64
                + stat.start_ticks_after_boot as f64 / ticks_per_second,
        })
    }

    fn sysconf(name: libc::c_int, what: &str) -> Result<u64, TelemetryError> {
        // SAFETY: `sysconf` has no preconditions; it returns -1 for unknown names.
        let value = unsafe { libc::sysconf(name) };
        u64::try_from(value)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| TelemetryError::Parse {
                path: PathBuf::from("sysconf"),
                reason: format!("{what} is unavailable"),
            })
    }

    /// Counts the entries of `/proc/self/fd`, minus the descriptor used to
    /// read that directory.
    fn open_fds() -> Result<u64, TelemetryError> {
        let path = Path::new("/proc/self/fd");
        let io_error = |source| TelemetryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let entries = std::fs::read_dir(path).map_err(io_error)?;
        let mut count = 0u64;
        for entry in entries {
            entry.map_err(io_error)?;
            count += 1;
        }
        Ok(count.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_counts_fields_after_a_command_name_with_spaces_and_parens() {
        let text = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    250 50 0 0 20 0 9 0 4200 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text).unwrap(),
            StatFields {
                utime_ticks: 250,
                stime_ticks: 50,
                threads: 9,
                start_ticks_after_boot: 4200,
                vsize_bytes: 104_857_600,
                rss_pages: 2560,
            }
        );
    }

    #[test]
    fn parse_stat_rejects_truncated_input() {
        let err = parse_stat("1234 (vega) S 1 1234").unwrap_err();
        assert!(err.contains("utime"), "{err}");
    }

    #[test]
    fn parse_meminfo_converts_kilobytes() {
        let text = "MemTotal:       16318256 kB\nMemFree:         1000000 kB\nMemAvailable:    8159128 kB\n";
        assert_eq!(
            parse_meminfo(text).unwrap(),
            SystemMemory {
                total_bytes: 16_318_256 * 1024,
                available_bytes: 8_159_128 * 1024
            }
        );
    }

    #[test]
    fn parse_meminfo_requires_mem_available() {
        let err = parse_meminfo("MemTotal: 100 kB\nMemFree: 50 kB\n").unwrap_err();
        assert!(err.contains("MemAvailable"), "{err}");
    }

    #[test]
    fn parse_boot_time_reads_btime() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n").unwrap(),
            1_700_000_000
        );
        assert!(parse_boot_time("cpu 1 2 3\n").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_time_is_positive_after_burning_cpu() {
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let stats = ProcessStats::read().unwrap();
        assert!(stats.cpu_seconds_total > 0.0, "{stats:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn memory_threads_and_fds_are_plausible() {
        let stats = ProcessStats::read().unwrap();
        assert!(stats.resident_memory_bytes > 0, "{stats:?}");
        assert!(
            stats.virtual_memory_bytes >= stats.resident_memory_bytes,
            "{stats:?}"
        );
        assert!(stats.threads >= 1, "{stats:?}");
        assert!(
            stats.open_fds >= 3,
            "stdin, stdout and stderr at least: {stats:?}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn open_fds_counts_a_newly_opened_file() {
        let before = ProcessStats::read().unwrap().open_fds;
        let files: Vec<_> = (0..16).map(|_| tempfile::tempfile().unwrap()).collect();
        let after = ProcessStats::read().unwrap().open_fds;
        // Other tests run in parallel threads, so allow for their descriptors.
        assert!(after >= before + 8, "before {before}, after {after}");
        drop(files);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn start_time_is_in_the_recent_past() {
        let stats = ProcessStats::read().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0, "{stats:?}");
        assert!(
            now - stats.start_time_seconds < 3600.0,
            "test process started within the hour: {stats:?}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn system_memory_total_is_at_least_available() {
        let memory = system_memory().unwrap();
        assert!(memory.total_bytes > 0);
        assert!(memory.total_bytes >= memory.available_bytes, "{memory:?}");
    }

    #[cfg(unix)]
    #[test]
    fn disk_usage_of_a_temp_dir_is_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let usage = disk_usage(dir.path()).unwrap();
        assert!(usage.available_bytes > 0, "{usage:?}");
        assert!(usage.total_bytes >= usage.available_bytes, "{usage:?}");
    }

    #[cfg(unix)]
    #[test]
    fn disk_usage_of_a_missing_path_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("does-not-exist");
        let err = disk_usage(&missing).unwrap_err();
        match &err {
            TelemetryError::Io { path, source } => {
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
