//! A throwaway PostgreSQL server for tests.
//!
//! [`TestPostgres::start`] runs Debian's `initdb` and `pg_ctl` (from
//! `/usr/lib/postgresql/<version>/bin`, newest version first; the
//! `VEGA_TEST_PG_BIN` environment variable may name another directory) in a
//! fresh temporary directory, listening on 127.0.0.1 only, on a free port,
//! with its unix socket inside that directory. The superuser role has a
//! random password and every connection, local or TCP, must give it
//! (`scram-sha-256`), so password authentication is really exercised.
//!
//! PostgreSQL refuses to run as root: when the tests run as root the
//! directory is handed to the `postgres` user and the server tools run
//! through `runuser -u postgres --`.
//!
//! Each instance has its own directory and port, so parallel tests are
//! safe. The server is stopped (`pg_ctl stop -m immediate`) when the value
//! is dropped. Failures to start panic: this is test code.

use std::ffi::CString;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::ports::free_port;

/// How long to wait for the server to accept connections.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The superuser role the tests connect as.
pub(crate) const USER: &str = "vega_test";
/// The database the tests connect to (created by `initdb`).
pub(crate) const DATABASE: &str = "postgres";
/// Server settings of every test server: loopback only, no durability
/// (the tests do not survive a machine crash anyway), enough connections
/// for parallel tests.
const BASE_OPTIONS: &str = "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
     -c synchronous_commit=off -c max_connections=50";

/// A running throwaway PostgreSQL server; stopped on drop.
pub struct TestPostgres {
    pub(crate) dir: TempDir,
    pub(crate) bin: PathBuf,
    pub(crate) port: u16,
    pub(crate) password: String,
    /// `Some((uid, gid))` of the `postgres` user when running as root.
    pub(crate) run_as: Option<(u32, u32)>,
    pub(crate) running: bool,
    /// More `-c name=value` server options, after (so overriding) the base
    /// ones.
    pub(crate) extra_options: String,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl TestPostgres {
    /// Initializes and starts a server; waits (bounded) until it accepts
    /// connections. Panics with the server's log on failure.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// Like [`TestPostgres::start`], with TLS on (`ssl = on` and a
    /// self-signed certificate made with the `openssl` command).
    pub fn start_with_tls() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> Self {
        Self::start_configured(tls, "")
    }

    /// Initializes and starts a server with more server options
    /// (`-c name=value …`, overriding the defaults).
    pub(crate) fn start_configured(tls: bool, extra_options: &str) -> Self {
        let bin = find_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("vega-pg-")
            .tempdir()
            .expect("creating a temporary directory for PostgreSQL");
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user())
        } else {
            None
        };
        let password = random_password();
        let pwfile = dir.path().join("pwfile");
        fs::write(&pwfile, format!("{password}\n")).expect("writing the password file");
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), uid, gid);
            chown(&pwfile, uid, gid);
        }

        let mut pg = TestPostgres {
            dir,
            bin,
            port: 0,
            password,
            run_as,
            running: false,
            extra_options: extra_options.to_string(),
        };
        let data = pg.data_dir();
        let out = pg.run_tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--auth=scram-sha-256".as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
                "--no-instructions".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = fs::remove_file(&pwfile);
        if tls {
            pg.enable_tls();
        }

        pg.start_on_free_port();
        pg
    }

    /// Starts the initialized data directory on a free port; waits
    /// (bounded) until it answers. A port that was free may be taken by
    /// the time the server binds it: tries a few.
    pub(crate) fn start_on_free_port(&mut self) {
        let mut last_error = String::new();
        for _ in 0..5 {
            self.port = free_port();
            match self.try_start_server() {
                Ok(()) => {
                    self.running = true;
                    self.wait_ready();
                    return;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    fn enable_tls(&self) {
        let data = self.data_dir();
        let key = data.join("server.key");
        let crt = data.join("server.crt");
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "2",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("running openssl to make a test certificate");
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod server.key");
        }
        if let Some((uid, gid)) = self.run_as {
            chown(&key, uid, gid);
            chown(&crt, uid, gid);
        }
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("reading postgresql.conf");
        text.push_str("\nssl = on\n");
        fs::write(&conf, text).expect("writing postgresql.conf");
    }

    /// `postgres://user:password@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{DATABASE}",
            self.password, self.port
        )
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser role to connect as.
    pub fn user(&self) -> &str {
        USER
    }

    /// The role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The database to connect to.
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// The temporary directory holding the data directory, the log and the
    /// unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL (one or more statements) through `psql`, stopping at the
    /// first error. Returns psql's unaligned, tuples-only output.
    pub fn try_execute(&self, sql: &str) -> Result<String, String> {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-d", DATABASE, "-f", "-"])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running psql: {e}"))?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().ok_or("psql has no stdin")?;
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| format!("writing to psql: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Like [`try_execute`](Self::try_execute), panicking on failure.
    pub fn execute(&self, sql: &str) -> String {
        self.try_execute(sql)
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n--- SQL:\n{sql}"))
    }

    /// Stops the server now (`pg_ctl stop -m immediate`), e.g. to test a
    /// connection lost mid-read. Dropping stops it too.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let data = self.data_dir();
        let _ = self.run_tool(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
            ],
        );
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn try_start_server(&self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.log_path();
        let options = format!(
            "{BASE_OPTIONS} -p {} -k {} {}",
            self.port,
            self.dir.path().display(),
            self.extra_options
        );
        let out = self.run_tool(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                START_TIMEOUT.as_secs().to_string().as_ref(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            let log = fs::read_to_string(&log).unwrap_or_default();
            Err(format!(
                "pg_ctl start: {}{}\n--- server log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Waits until the server answers a query over TCP, bounded.
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.try_execute("SELECT 1").is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                panic!("PostgreSQL did not accept connections in time; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a server tool from the bin directory, as `postgres` when root.
    pub(crate) fn run_tool(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        self.run_tool_with_env(tool, args, &[])
    }

    /// Like [`run_tool`](Self::run_tool), with more environment variables.
    pub(crate) fn run_tool_with_env(
        &self,
        tool: &str,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Output {
        let path = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.output()
            .unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory with `initdb`, `pg_ctl` and `psql`.
pub(crate) fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VEGA_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/<version>/bin; install them with `apt-get install -y postgresql`"
        ),
    }
}

/// The uid and gid of the `postgres` user.
pub(crate) fn postgres_user() -> (u32, u32) {
    let name = CString::new("postgres").expect("static name");
    // SAFETY: getpwnam returns a pointer to static storage or null; it is
    // read at once and not kept.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root but there is no `postgres` user to run PostgreSQL as; install the `postgresql` package"
    );
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

pub(crate) fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
}

/// A password unique to this process and call (not cryptographically
/// random; it only has to differ between servers).
pub(crate) fn random_password() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x = (nanos as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::from("pw");
    for _ in 0..4 {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.push_str(&format!("{:016x}", x.wrapping_mul(0x2545_F491_4F6C_DD1D)));
    }
    out
}

/// One server shared by every test of a test process, for suites that need
/// many databases (each test makes its own with [`SharedPostgres::database`]).
/// Started on first use and stopped when the process exits.
pub struct SharedPostgres;

static SHARED: std::sync::OnceLock<std::sync::Mutex<TestPostgres>> = std::sync::OnceLock::new();
static NEXT_DATABASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        if let Ok(mut pg) = server.lock() {
            pg.stop();
            let _ = std::fs::remove_dir_all(pg.dir());
        }
    }
}

impl SharedPostgres {
    fn server() -> &'static std::sync::Mutex<TestPostgres> {
        SHARED.get_or_init(|| {
            let pg = TestPostgres::start();
            // SAFETY: registering a plain `extern "C"` function with no
            // arguments; it only touches the static above.
            unsafe {
                libc::atexit(stop_shared);
            }
            std::sync::Mutex::new(pg)
        })
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn database() -> String {
        let server = Self::server().lock().unwrap_or_else(|e| e.into_inner());
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        server.execute(&format!("CREATE DATABASE {name}"));
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{name}",
            server.password(),
            server.port()
        )
    }
}
