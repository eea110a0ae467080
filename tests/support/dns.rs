//! A tiny authoritative-style DNS server on UDP 127.0.0.1:0, so that tests of upstream
//! hostnames never touch the machine's resolver: point triage's resolver at
//! [`DnsServer::addr`] and give the names the addresses the test wants.
//!
//! It answers A and AAAA queries for known names (case-insensitive, TTL [`DEFAULT_TTL_SECS`]
//! unless changed), NXDOMAIN for unknown names, and NOERROR with no answers for a known name
//! without addresses of the asked type. Records can change while it runs ([`DnsServer::set`]),
//! to simulate "the origin's IP changed", and it can be made to fail ([`DnsMode`]).
//!
//! Replies echo the question exactly as asked (case included, since resolvers may randomise
//! it), copy the RD bit and set RA (it acts as the resolver the client asked for) and AA. EDNS
//! options in the query are ignored and not echoed, which resolvers accept. Keep to about 20
//! addresses per name: replies are not truncated to 512 bytes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;
/// TTL of every answer unless [`DnsServer::set_ttl`] changes it: short, so a resolver that
/// honours TTLs re-asks soon after a record changes.
pub const DEFAULT_TTL_SECS: u32 = 1;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
/// Bounds the serving loop even if a test goes wrong.
const MAX_QUERIES: usize = 1_000_000;

/// How the server treats queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// Answers from the records (the normal case).
    Answer,
    /// Answers every query SERVFAIL: the resolver is broken.
    ServFail,
    /// Answers every query REFUSED: the resolver does not serve this client.
    Refused,
    /// Drops every query: the resolver is unreachable, clients time out.
    Silent,
}

struct DnsState {
    records: HashMap<String, Vec<IpAddr>>,
    mode: DnsMode,
    ttl: u32,
    /// Every well-formed question received: (lowercased name, qtype).
    queries: Vec<(String, u16)>,
}

/// A running DNS server; dropping it stops it.
pub struct DnsServer {
    /// The UDP address to configure as the resolver (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    state: Arc<Mutex<DnsState>>,
    task: JoinHandle<()>,
}

/// Starts a DNS server on UDP 127.0.0.1:0 answering from `records` (name → addresses; names
/// are case-insensitive, a trailing dot is optional).
pub async fn spawn_dns(records: HashMap<String, Vec<IpAddr>>) -> DnsServer {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a DNS server on 127.0.0.1:0");
    let addr = socket
        .local_addr()
        .expect("local address of a bound socket");
    let state = Arc::new(Mutex::new(DnsState {
        records: records
            .into_iter()
            .map(|(name, addrs)| (normalize(&name), addrs))
            .collect(),
        mode: DnsMode::Answer,
        ttl: DEFAULT_TTL_SECS,
        queries: Vec::new(),
    }));
    let task = tokio::spawn(serve(socket, state.clone()));
    DnsServer { addr, state, task }
}

impl DnsServer {
    /// Replaces the addresses of `name` (adding it if new), e.g. "the origin's IP changed".
    pub fn set(&self, name: &str, addrs: Vec<IpAddr>) {
        self.state
            .lock()
            .unwrap()
            .records
            .insert(normalize(name), addrs);
    }

    /// Forgets `name`: it is NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.state.lock().unwrap().records.remove(&normalize(name));
    }

    /// Changes how queries are treated from now on.
    pub fn set_mode(&self, mode: DnsMode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Changes the TTL of answers from now on.
    pub fn set_ttl(&self, ttl_secs: u32) {
        self.state.lock().unwrap().ttl = ttl_secs;
    }

    /// How many well-formed queries arrived (answered or not).
    pub fn queries(&self) -> usize {
        self.state.lock().unwrap().queries.len()
    }

    /// How many queries arrived for `name`, any type.
    pub fn queries_for(&self, name: &str) -> usize {
        let name = normalize(name);
        let state = self.state.lock().unwrap();
        state.queries.iter().filter(|(n, _)| *n == name).count()
    }

    /// Every well-formed question received, in order: (lowercased name, qtype).
    pub fn questions(&self) -> Vec<(String, u16)> {
        self.state.lock().unwrap().queries.clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, state: Arc<Mutex<DnsState>>) {
    let mut buf = [0u8; 4096];
    for _ in 0..MAX_QUERIES {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let reply = {
            let mut state = state.lock().unwrap();
            answer(&buf[..len], &mut state)
        };
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// A parsed question (the reply echoes its bytes from the query, not this).
struct Question {
    /// Lowercased, for lookup and the query log.
    name: String,
    qtype: u16,
    qclass: u16,
    /// Offset just past the question in the query.
    end: usize,
}

/// The reply to one datagram, or None to stay silent (not a query, or Silent mode).
fn answer(query: &[u8], state: &mut DnsState) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let flags = u16::from_be_bytes([query[2], query[3]]);
    if flags & FLAG_QR != 0 {
        return None; // a response, not a query
    }
    let opcode = (flags >> 11) & 0xF;
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    // The reply's flags: same opcode and RD, then QR, AA and RA.
    let reply_flags = |rcode: u8| {
        FLAG_QR | (opcode << 11) | FLAG_AA | (flags & FLAG_RD) | FLAG_RA | u16::from(rcode)
    };
    let header_only = |rcode: u8| {
        let mut out = Vec::with_capacity(12);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&reply_flags(rcode).to_be_bytes());
        out.extend_from_slice(&[0; 8]);
        out
    };
    if qdcount != 1 {
        return Some(header_only(RCODE_FORMERR));
    }
    let Ok(question) = parse_question(query, 12) else {
        return Some(header_only(RCODE_FORMERR));
    };
    state.queries.push((question.name.clone(), question.qtype));

    let (rcode, addrs): (u8, Vec<IpAddr>) = if opcode != 0 {
        (RCODE_NOTIMP, Vec::new())
    } else {
        match state.mode {
            DnsMode::Silent => return None,
            DnsMode::ServFail => (RCODE_SERVFAIL, Vec::new()),
            DnsMode::Refused => (RCODE_REFUSED, Vec::new()),
            DnsMode::Answer if question.qclass != CLASS_IN && question.qclass != TYPE_ANY => {
                (RCODE_REFUSED, Vec::new())
            }
            DnsMode::Answer => match state.records.get(&question.name) {
                None => (RCODE_NXDOMAIN, Vec::new()),
                Some(addrs) => (
                    RCODE_NOERROR,
                    addrs
                        .iter()
                        .copied()
                        .filter(|a| match question.qtype {
                            TYPE_A => a.is_ipv4(),
                            TYPE_AAAA => a.is_ipv6(),
                            TYPE_ANY => true,
                            _ => false,
                        })
                        .collect(),
                ),
            },
        }
    };

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&reply_flags(rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&[0; 4]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(&query[12..question.end]); // the question, byte for byte
    for addr in addrs {
        out.extend_from_slice(&[0xC0, 12]); // name: pointer to the question's name
        let (rtype, rdata) = match addr {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&state.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// Parses the question at `start`: QNAME as uncompressed labels (queries never compress),
/// then QTYPE and QCLASS.
fn parse_question(msg: &[u8], start: usize) -> Result<Question, String> {
    let (labels, after_name) = read_name(msg, start, false)?;
    let fixed = msg
        .get(after_name..after_name + 4)
        .ok_or("question cut before QTYPE/QCLASS")?;
    Ok(Question {
        name: normalize(&labels.join(".")),
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        end: after_name + 4,
    })
}

/// Reads a domain name at `start`; returns its labels and the offset just after it where it
/// appears (after the pointer, for a compressed name). Pointers are followed only when
/// `allow_pointers` (in replies), at most 16 times.
fn read_name(
    msg: &[u8],
    start: usize,
    allow_pointers: bool,
) -> Result<(Vec<String>, usize), String> {
    let mut labels = Vec::new();
    let mut pos = start;
    let mut resume_at = None;
    let mut total_len = 0usize;
    for _ in 0..(128 + 16) {
        let len = *msg.get(pos).ok_or("name runs past the message")? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => {
                return Ok((labels, resume_at.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or("label runs past the message")?;
                total_len += len + 1;
                if total_len > 255 {
                    return Err("name longer than 255 bytes".to_owned());
                }
                labels.push(String::from_utf8_lossy(label).into_owned());
                pos += 1 + len;
            }
            0xC0 if allow_pointers => {
                let low = *msg.get(pos + 1).ok_or("pointer runs past the message")? as usize;
                resume_at.get_or_insert(pos + 2);
                pos = ((len & 0x3F) << 8) | low;
            }
            _ => return Err(format!("unsupported label type 0x{len:02x}")),
        }
    }
    Err("name has too many labels or pointers".to_owned())
}

/// Lowercases and drops a trailing dot: the form names are stored and compared in.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A standard query for `name` and `qtype` with RD set, as a stub resolver sends it.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1, others 0
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        assert!(label.len() < 64, "DNS label too long: {label:?}");
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// A DNS reply, as far as tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    pub id: u16,
    pub flags: u16,
    pub rcode: u8,
    /// The question as echoed (labels joined by dots, case as sent).
    pub question_name: String,
    pub question_type: u16,
    /// A and AAAA answers: (address, TTL). Other record types are skipped.
    pub answers: Vec<(IpAddr, u32)>,
}

impl DnsReply {
    pub fn recursion_desired(&self) -> bool {
        self.flags & FLAG_RD != 0
    }

    pub fn recursion_available(&self) -> bool {
        self.flags & FLAG_RA != 0
    }

    pub fn authoritative(&self) -> bool {
        self.flags & FLAG_AA != 0
    }

    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }

    /// The answered addresses, without TTLs.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.answers.iter().map(|(a, _)| *a).collect()
    }
}

/// Parses a reply with one question: header, question, then the answer section.
pub fn parse_reply(msg: &[u8]) -> Result<DnsReply, String> {
    if msg.len() < 12 {
        return Err(format!(
            "reply of {} bytes is shorter than a header",
            msg.len()
        ));
    }
    let word = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let (id, flags, qdcount, ancount) = (word(0), word(2), word(4), word(6));
    if flags & FLAG_QR == 0 {
        return Err("QR bit not set: not a reply".to_owned());
    }
    if qdcount != 1 {
        return Err(format!("expected 1 question, got {qdcount}"));
    }
    let (labels, after_name) = read_name(msg, 12, true)?;
    let fixed = msg
        .get(after_name..after_name + 4)
        .ok_or("question cut before QTYPE/QCLASS")?;
    let question_type = u16::from_be_bytes([fixed[0], fixed[1]]);
    let mut pos = after_name + 4;
    let mut answers = Vec::new();
    for _ in 0..ancount {
        let (_, after) = read_name(msg, pos, true)?;
        let rr = msg
            .get(after..after + 10)
            .ok_or("answer cut in its header")?;
        let rtype = u16::from_be_bytes([rr[0], rr[1]]);
        let ttl = u32::from_be_bytes([rr[4], rr[5], rr[6], rr[7]]);
        let rdlen = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let rdata = msg
            .get(after + 10..after + 10 + rdlen)
            .ok_or("answer cut in its data")?;
        match (rtype, rdata.len()) {
            (TYPE_A, 4) => {
                let octets: [u8; 4] = rdata.try_into().expect("length checked");
                answers.push((IpAddr::V4(Ipv4Addr::from(octets)), ttl));
            }
            (TYPE_AAAA, 16) => {
                let octets: [u8; 16] = rdata.try_into().expect("length checked");
                answers.push((IpAddr::V6(Ipv6Addr::from(octets)), ttl));
            }
            _ => {}
        }
        pos = after + 10 + rdlen;
    }
    Ok(DnsReply {
        id,
        flags,
        rcode: (flags & 0xF) as u8,
        question_name: labels.join("."),
        question_type,
        answers,
    })
}

/// Asks `server` (a loopback address) for `name`/`qtype` over UDP and parses the reply; None
/// if no reply came within `timeout`.
pub async fn lookup(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Option<DnsReply> {
    assert!(
        server.ip().is_loopback(),
        "test DNS queries go to loopback only"
    );
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a UDP client socket");
    let id = 0x5a17;
    socket
        .send_to(&build_query(id, name, qtype), server)
        .await
        .expect("send a DNS query");
    let mut buf = [0u8; 4096];
    let (len, _) = tokio::time::timeout(timeout, socket.recv_from(&mut buf))
        .await
        .ok()?
        .expect("receive a DNS reply");
    let reply = parse_reply(&buf[..len]).expect("the reply parses");
    assert_eq!(reply.id, id, "the reply carries the query's id");
    Some(reply)
}
