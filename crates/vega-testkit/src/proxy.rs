//! [`CutProxy`]: a TCP proxy on a free loopback port in front of one
//! server, that a test can cut (every connection through it is reset, new
//! ones are closed at once) and restore — a network cut between one client
//! and the server, while other clients still reach the server directly.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

struct Shared {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every open connection, to reset them on a cut.
    open: Mutex<Vec<TcpStream>>,
}

/// A proxy to `target`; stopped (every connection closed) when dropped.
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl CutProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if s.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                if let (Ok(c), Ok(sv)) = (client.try_clone(), server.try_clone()) {
                    s.open
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend([c, sv]);
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Ok(CutProxy { addr, shared })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.reset_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    fn reset_all(&self) {
        let open: Vec<TcpStream> = self
            .shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for s in open {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        self.reset_all();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for c in l.incoming().flatten() {
                thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    }

    #[test]
    fn forwards_until_cut_and_again_after_restore() {
        let proxy = CutProxy::start(echo_server()).unwrap();
        assert_eq!(round_trip(proxy.addr()).unwrap(), b"ping");
        let mut held = TcpStream::connect(proxy.addr()).unwrap();
        held.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        held.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        held.read_exact(&mut one).unwrap();
        proxy.cut();
        assert!(round_trip(proxy.addr()).is_err(), "new connections fail");
        let mut rest = [0u8; 1];
        assert!(
            matches!(held.read(&mut rest), Ok(0) | Err(_)),
            "open connections are reset"
        );
        proxy.restore();
        assert_eq!(round_trip(proxy.addr()).unwrap(), b"ping");
    }
}
