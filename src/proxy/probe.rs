//! One-off probes of an address that just failed, for the cause: is anything still listening,
//! does it speak TLS or FastCGI rather than HTTP, and, at a FastCGI server, is a worker free?
//!
//! A probe runs only after a failure, only against the address that failed, and at most once
//! per address and kind per second: failures in that second share its result (a request that
//! fails while a probe of its address is running waits for that probe instead of starting
//! another, so simultaneous failures get the same answer). Each probe is bounded by
//! [`PROBE_TIMEOUT`].

use crate::cause::Probe;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one probe may take, connect and answer together.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a probe's result stands for later failures of the same address.
const RESULT_LIFETIME: Duration = Duration::from_secs(1);

/// The most addresses whose last results are kept; beyond it the oldest are forgotten.
const MAX_ADDRESSES: usize = 1024;

/// What to ask the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ProbeKind {
    /// Whether a plain connect is accepted.
    Listening,
    /// Whether it answers TLS or FastCGI (and, failing both, whether it is listening).
    Protocol,
    /// Whether a FastCGI server's worker answers `FCGI_GET_VALUES` in time: php-fpm's workers
    /// read it, so when none does while the connect was accepted, none is free.
    FastcgiWorker,
}

/// How long a FastCGI server's worker has to answer [`ProbeKind::FastcgiWorker`]: a free
/// php-fpm worker answers in well under a millisecond.
const WORKER_WAIT: Duration = Duration::from_millis(300);

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Probe)>>>;

/// The probes of one process, with the last result of each address and kind.
#[derive(Default)]
pub(crate) struct Prober {
    slots: Mutex<HashMap<(SocketAddr, ProbeKind), Slot>>,
}

impl Prober {
    /// The answer for `address`: a result from the last second, or a new probe.
    pub(crate) async fn probe(&self, address: SocketAddr, kind: ProbeKind) -> Probe {
        let slot = {
            let Ok(mut slots) = self.slots.lock() else {
                return Probe::NotRun;
            };
            if slots.len() >= MAX_ADDRESSES && !slots.contains_key(&(address, kind)) {
                slots.clear();
            }
            Arc::clone(slots.entry((address, kind)).or_default())
        };
        let mut last = slot.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < RESULT_LIFETIME {
                return result.clone();
            }
        }
        let result = tokio::time::timeout(PROBE_TIMEOUT, run(address, kind))
            .await
            .unwrap_or(Probe::NotRun);
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

async fn run(address: SocketAddr, kind: ProbeKind) -> Probe {
    match kind {
        ProbeKind::Listening => listening(address).await,
        ProbeKind::Protocol => {
            if answers(address, &CLIENT_HELLO, is_tls_record).await {
                return Probe::SpeaksTls;
            }
            if answers(address, &FCGI_GET_VALUES, is_fastcgi_result).await {
                return Probe::SpeaksFastcgi;
            }
            listening(address).await
        }
        ProbeKind::FastcgiWorker => fastcgi_worker(address).await,
    }
}

/// Asks the FastCGI server at `address` for a value: answered, a worker was free; accepted but
/// unanswered in [`WORKER_WAIT`], none was.
async fn fastcgi_worker(address: SocketAddr) -> Probe {
    let mut stream = match TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(_) => return Probe::NotRun,
    };
    if stream.write_all(&FCGI_GET_VALUES).await.is_err() {
        return Probe::Accepted;
    }
    let mut head = [0u8; 8];
    match tokio::time::timeout(WORKER_WAIT, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) if is_fastcgi_result(&head) => Probe::SpeaksFastcgi,
        Ok(_) => Probe::Accepted,
        Err(_) => Probe::FastcgiBusy {
            waited: WORKER_WAIT,
        },
    }
}

/// Whether something listens. A process that exits resets the connections it had and those
/// its listener had not accepted yet, and closes its listener a little after them (node:
/// ~10 ms; longer on a busy machine): an accepted connect right after a break proves little.
/// So an accepted probe connection is held, and when it is closed or reset another connect
/// is made, until one stays open for [`HOLD`] (something listens and keeps connections: the
/// answer is `Accepted`) or a connect is refused.
async fn listening(address: SocketAddr) -> Probe {
    let deadline = tokio::time::Instant::now() + HOLD;
    loop {
        let mut stream = match TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
            // A handshake reset by a listener that is closing: ask again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(AGAIN_AFTER).await;
                continue;
            }
            Err(_) => return Probe::NotRun,
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout_at(deadline, stream.read(&mut byte)).await {
            // Open until the deadline, or it spoke first: something listens.
            Err(_) | Ok(Ok(1..)) => return Probe::Accepted,
            // Closed or reset: by a dying process, or by a live one that drops idle
            // connections (which, asked again until the deadline, stays `Accepted`).
            Ok(Ok(0) | Err(_)) => {
                if tokio::time::Instant::now() >= deadline {
                    return Probe::Accepted;
                }
                tokio::time::sleep(AGAIN_AFTER).await;
            }
        }
    }
}

/// How long an accepted probe connection must stay open to count.
const HOLD: Duration = Duration::from_millis(200);

/// The pause before connecting again after a probe connection was closed or reset.
const AGAIN_AFTER: Duration = Duration::from_millis(5);

/// Sends `hello` and reads the first bytes of the answer.
async fn answers(address: SocketAddr, hello: &[u8], recognize: fn(&[u8]) -> bool) -> bool {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return false;
    };
    if stream.write_all(hello).await.is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    recognize(&head[..read])
}

/// A TLS record: handshake (0x16) or alert (0x15), major version 3.
fn is_tls_record(head: &[u8]) -> bool {
    matches!(head, [0x15 | 0x16, 0x03, ..])
}

/// A FastCGI record of version 1 and type FCGI_GET_VALUES_RESULT (10).
fn is_fastcgi_result(head: &[u8]) -> bool {
    matches!(head, [1, 10, ..])
}

/// A TLS 1.2 ClientHello with one ECDHE-RSA-AES128-GCM-SHA256 suite and no extensions: any TLS
/// server answers it, with its hello or with an alert.
const CLIENT_HELLO: [u8; 52] = [
    0x16, 0x03, 0x01, 0x00, 0x2f, // record: handshake, TLS 1.0 framing, 47 bytes
    0x01, 0x00, 0x00, 0x2b, // ClientHello, 43 bytes
    0x03, 0x03, // TLS 1.2
    0x74, 0x72, 0x69, 0x61, 0x67, 0x65, 0x2d, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x2d, 0x74, 0x6c, 0x73,
    0x2d, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    0x38, // 32 bytes of random
    0x00, // no session id
    0x00, 0x02, 0xc0, 0x2f, // one cipher suite
    0x01, 0x00, // the null compression
    0x00, 0x00, // no extensions
];

/// FCGI_GET_VALUES asking for FCGI_MAX_CONNS: a FastCGI server (php-fpm) answers with
/// FCGI_GET_VALUES_RESULT.
const FCGI_GET_VALUES: [u8; 24] = [
    1, 9, 0, 0, 0, 16, 0, 0, // version 1, FCGI_GET_VALUES, request 0, 16 bytes, no padding
    14, 0, b'F', b'C', b'G', b'I', b'_', b'M', b'A', b'X', b'_', b'C', b'O', b'N', b'N', b'S',
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The hello's lengths agree with its bytes.
    #[test]
    fn client_hello_is_well_framed() {
        assert_eq!(usize::from(CLIENT_HELLO[4]), CLIENT_HELLO.len() - 5);
        assert_eq!(usize::from(CLIENT_HELLO[8]), CLIENT_HELLO.len() - 9);
        assert_eq!(usize::from(FCGI_GET_VALUES[5]), FCGI_GET_VALUES.len() - 8);
    }

    /// A refused address is Refused, a listening one Accepted, and one that answers garbage to
    /// both hellos is only listening.
    #[tokio::test]
    async fn probes_tell_refused_from_listening() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let prober = Prober::default();
        assert_eq!(
            prober.probe(address, ProbeKind::Protocol).await,
            Probe::Accepted
        );
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        assert_eq!(
            prober.probe(closed, ProbeKind::Listening).await,
            Probe::Refused
        );
    }

    /// A process that closes the probe's connection and then, a little later, its listener
    /// (as an exiting one does) is `Refused`; one that stays alive but closes every
    /// connection it accepts is `Accepted`, and so is one that keeps it open.
    #[tokio::test]
    async fn a_listener_closing_after_its_connections_is_refused() {
        let dying = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dying_address = dying.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((s, _)) = dying.accept().await {
                drop(s);
            }
            // Later than the 100 ms after which an accepted probe used to be asked again once.
            tokio::time::sleep(Duration::from_millis(110)).await;
            drop(dying);
        });
        assert_eq!(listening(dying_address).await, Probe::Refused);

        let rude = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let rude_address = rude.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((s, _)) = rude.accept().await {
                drop(s);
            }
        });
        let started = Instant::now();
        assert_eq!(listening(rude_address).await, Probe::Accepted);
        assert!(started.elapsed() < PROBE_TIMEOUT);

        let quiet = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let quiet_address = quiet.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((s, _)) = quiet.accept().await {
                kept.push(s);
            }
        });
        assert_eq!(listening(quiet_address).await, Probe::Accepted);
    }
}
