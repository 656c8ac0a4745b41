//! A TLS front for the plain-HTTP stand-ins: listens on 127.0.0.1 with a
//! certificate for 127.0.0.1 and localhost, signed by a throwaway CA (both
//! made with the `openssl` command in a temporary directory), and passes
//! every connection's bytes through to a backend address. Clients trust
//! [`TlsFront::ca_file`]. Stopped on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

pub struct TlsFront {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf certificate for 127.0.0.1 and localhost in `dir`:
/// `ca.pem`, `cert.pem`, `key.pem`.
fn make_certificates(dir: &Path) {
    let p = |name: &str| dir.join(name).into_os_string();
    let a = std::ffi::OsString::from;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("writing the certificate extensions");
    let args = |list: &[std::ffi::OsString]| list.to_vec();
    let run = |list: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = list.iter().map(|s| s.as_os_str()).collect();
        openssl(&refs);
    };
    run(args(&[
        a("req"),
        a("-x509"),
        a("-newkey"),
        a("rsa:2048"),
        a("-nodes"),
        a("-days"),
        a("2"),
        a("-subj"),
        a("/CN=vega-test-ca"),
        a("-keyout"),
        p("ca.key"),
        a("-out"),
        p("ca.pem"),
    ]));
    run(args(&[
        a("req"),
        a("-newkey"),
        a("rsa:2048"),
        a("-nodes"),
        a("-subj"),
        a("/CN=localhost"),
        a("-keyout"),
        p("key.pem"),
        a("-out"),
        p("leaf.csr"),
    ]));
    run(args(&[
        a("x509"),
        a("-req"),
        a("-in"),
        p("leaf.csr"),
        a("-CA"),
        p("ca.pem"),
        a("-CAkey"),
        p("ca.key"),
        a("-CAcreateserial"),
        a("-days"),
        a("2"),
        a("-out"),
        p("cert.pem"),
        a("-extfile"),
        p("leaf.ext"),
    ]));
}

fn server_config(dir: &Path) -> rustls::ServerConfig {
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(dir.join("cert.pem")).expect("cert.pem"),
    ))
    .collect::<Result<_, _>>()
    .expect("reading cert.pem");
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(dir.join("key.pem")).expect("key.pem"),
    ))
    .expect("reading key.pem")
    .expect("a private key in key.pem");
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the test certificate")
}

impl TlsFront {
    /// Starts the front for `backend` on a free loopback port.
    pub fn start(backend: SocketAddr) -> TlsFront {
        let dir = tempfile::tempdir().expect("temporary directory");
        make_certificates(dir.path());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(dir.path())));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the TLS front");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the TLS front");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("the TLS front's listener");
                loop {
                    let (socket, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(socket).await else {
                            return;
                        };
                        let Ok(mut plain) = TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsFront {
            addr,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The CA certificate (PEM) that signed the front's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
