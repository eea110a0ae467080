#!/usr/bin/env python3
"""Soak benchmark: triage under every failure kind at once, for minutes, must not crash, hang or
grow.

One command (see benches/README.md):

    python3 benches/soak.py                   # 10 minutes
    SOAK_SECONDS=60 python3 benches/soak.py   # a short run
    python3 benches/soak.py --update-readme   # and write the summary into benches/README.md

It builds the release `triage`, starts a set of misbehaving origins (one process, asyncio, a
port per behaviour: healthy, slow, the app's own 503, refusing, resetting, closing, stalling,
garbage, huge headers, bodies cut by a reset, a close or a stall, a TLS server where plain HTTP
is configured, a plain server where TLS is, TLS certificates untrusted or for another name),
starts triage in front of them with a route for each (plus passive ejection and health checks
on a few upstreams, a body limit, and paths no route matches), and drives it for SOAK_SECONDS
with an open-loop mix at SOAK_RATE requests per second (asyncio, bounded concurrency, keep-alive
connections reused and reopened when the server closes them), while SOAK_SLOW_CLIENTS clients
send their request a byte at a time and read the answer slowly, and SOAK_IDLE_CLIENTS clients
make one request and then sit idle on their keep-alive connection, each recycled when done.

It checks, and prints as a markdown summary:
- crashes: the triage process stays alive and /healthz answers every second, throughout;
- panics: no "panicked" line in triage's output;
- hung requests: while a client waits, triage never stays silent longer than the config lets it
  (connect_timeout twice, for a retry, plus read_timeout) plus a margin, and every answer (or
  its cut) is complete within a cap; a watchdog measures the silence from the bytes received,
  so a driver running late (a busy machine) is not taken for a hung triage;
- wrong answers: each response's status, X-Diagnosis token and body completeness are what its
  route must give;
- counting: triage's /metrics failure counters equal, token by token, the failures the clients
  saw (like load.py's failures_counted check);
- memory: triage's VmRSS, sampled every few seconds, does not grow after the warm-up by more
  than SOAK_RSS_LIMIT_MIB (the least-squares slope is reported too).

Everything listens on 127.0.0.1, on ports the kernel picks; every loop is bounded by the run's
duration; every process it starts is stopped at the end, also on Ctrl-C, SIGTERM or an error
(load.py's Proc). Nothing is pinned: this measures robustness, not CPU per request, and the
clients and origins need more than the one core load.py leaves them.

Standard library only (Python 3.9+); `openssl` (the command) for the certificate cases, which
are left out when it is missing.
"""

import asyncio
import collections
import fcntl
import json
import os
import random
import select
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing load.py leaves no __pycache__ in benches/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (processes, /proc sampling, ports, tools, README markers)

SUMMARY_START = "<!-- soak-table:start -->"
SUMMARY_END = "<!-- soak-table:end -->"


env_int = load.env_int


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


SECONDS = env_int("SOAK_SECONDS", 600)
SETTINGS = {
    "seconds": SECONDS,
    # Samples before this are the warm-up: pools, report ring, allocator caches filling.
    "warmup": env_int("SOAK_WARMUP", min(60, SECONDS // 3)),
    "rate": env_int("SOAK_RATE", 1000),
    # Most requests in flight at once; a launch beyond it is skipped and counted.
    "concurrency": env_int("SOAK_CONCURRENCY", 400),
    "slow_clients": env_int("SOAK_SLOW_CLIENTS", 50),
    "idle_clients": env_int("SOAK_IDLE_CLIENTS", 50),
    # Longest idle time of an idle client, in seconds (below keepalive_timeout's 75 s default).
    "idle_max": env_int("SOAK_IDLE_MAX", 30),
    "sample_every": env_int("SOAK_SAMPLE_SECONDS", 2),
    "rss_limit_mib": env_int("SOAK_RSS_LIMIT_MIB", 8),
    "margin": env_int("SOAK_MARGIN", 3),
    "seed": env_int("SOAK_SEED", 1),
}
# The timeouts of every upstream: short, so a stall ends soon and the hung-request deadline is
# tight, yet long enough for a healthy origin that other jobs on the machine starve of CPU (at
# 1 s, the 100 ms server sometimes took longer at a load average of 10). The deadline: a
# connect (and TLS handshake) and its one retry, the read, the margin.
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 2
DEADLINE_S = 2 * CONNECT_TIMEOUT_S + READ_TIMEOUT_S + SETTINGS["margin"]
# However much moves, a whole answer takes no longer than this (a slow client: its own cap).
ANSWER_CAP_S = 5 * DEADLINE_S
SLOW_CLIENT_CAP_S = 120
SLOW_ORIGIN_DELAY_S = 0.1
# hang_up's server thinks for 3 s (its route's read_timeout is 5 s), so the client has long
# gone, even from a driver running late, when the answer would come: always client_closed.
HANG_UP_DELAY_S = 3
BIG_BODY = 256 * 1024
CUT_ANNOUNCED, CUT_SENT = 100_000, 1000
HUGE_HEADER = 1_100_000  # past Pingora's 1 MiB limit on a response head
BODY_LIMIT = 1000
TLS_HANDSHAKE_FAILURE_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])

# --------------------------------------------------------------------------------------------
# The origins: one process, one port per behaviour (`soak.py --origins CERT_DIR MAX_SECONDS`)
# --------------------------------------------------------------------------------------------

# Behaviour of each origin port; the TLS ones exist only when certificates could be made.
PLAIN_ORIGINS = ("ok", "slow", "app503", "reset", "reset2", "close", "stall", "garbage", "huge",
                 "body_reset", "body_close", "body_stall", "tls_alert")
# Two TLS servers with the same certificate: `tls` for the upstream that trusts its CA, `tls2`
# for the ones that must reject it. On one address they would share Pingora's connection pool,
# which is keyed by address, SNI and the verify flags but not by the CA: the untrusted
# upstream would be handed the trusting one's verified connections and answer 200 (found by
# this benchmark; see benches/README.md).
TLS_ORIGINS = ("tls", "tls2")


def origins_main(cert_dir, max_seconds):
    ok_body = b"ok\n"
    big_body = b"b" * BIG_BODY
    cut_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(CUT_ANNOUNCED).encode() + b"\r\n\r\n" + b"x" * CUT_SENT)
    huge = b"HTTP/1.1 200 OK\r\nX-Huge: " + b"a" * HUGE_HEADER + b"\r\nContent-Length: 0\r\n\r\n"
    not_http = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def respond(status, reason, body):
        return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    answers = {"ok": respond(200, "OK", ok_body), "big": respond(200, "OK", big_body),
               "app503": respond(503, "Service Unavailable", b"database is down\n")}

    async def read_request(reader):
        """The request's head (its body is read and dropped). A first byte that cannot start
        an HTTP method (a TLS ClientHello) raises ValueError."""
        first = await reader.readexactly(1)
        if not (b"A" <= first <= b"Z"):
            raise ValueError("not HTTP")
        head = first + await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        if b"\r\ntransfer-encoding: chunked" in lower:
            for _ in range(100_000):
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # the end of the (empty) trailers
                    break
                await reader.readexactly(size + 2)
        elif b"\r\ncontent-length:" in lower:
            length = int(lower.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
        return head

    def reset(writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def close_gracefully(reader, writer):
        # A FIN, then whatever the peer still sends is read and dropped for up to 2 s, so that
        # late bytes do not turn the close into a reset.
        try:
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(drain_until_eof(reader), 2)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        writer.close()

    async def drain_until_eof(reader):
        for _ in range(100_000):
            if not await reader.read(65536):
                return

    async def hold(reader):
        # Silent until the peer closes (bounded: triage closes at its read_timeout).
        try:
            await asyncio.wait_for(drain_until_eof(reader), 60)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass

    async def serve(kind, reader, writer):
        for _ in range(1_000_000):
            head = await read_request(reader)
            if kind in ("ok", "slow", "app503", "tls", "tls2"):
                path = head.split(b" ", 2)[1]
                if kind == "slow":
                    await asyncio.sleep(HANG_UP_DELAY_S if path.startswith(b"/hang-up/")
                                        else SLOW_ORIGIN_DELAY_S)
                writer.write(answers["app503" if kind == "app503" else
                                     "big" if path.startswith(b"/big/") else "ok"])
                await writer.drain()
                continue
            if kind in ("reset", "reset2"):
                return reset(writer)
            if kind == "close":
                return await close_gracefully(reader, writer)
            if kind == "stall":
                return await hold(reader)
            if kind in ("garbage", "tls_alert", "huge"):
                writer.write({"garbage": b"HELLO WORLD\r\n\r\n", "tls_alert": TLS_HANDSHAKE_FAILURE_ALERT,
                              "huge": huge}[kind])
                await asyncio.wait_for(writer.drain(), 10)
                return await close_gracefully(reader, writer)
            writer.write(cut_head)
            await writer.drain()
            if kind == "body_stall":
                return await hold(reader)
            await asyncio.sleep(0.05)  # the head and the partial body reach triage first
            return reset(writer) if kind == "body_reset" else await close_gracefully(reader, writer)

    def handler(kind):
        async def handle(reader, writer):
            try:
                await serve(kind, reader, writer)
            except ValueError:  # a TLS ClientHello on a plain port: 400 and close, as nginx
                writer.write(not_http)
                await close_gracefully(reader, writer)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                    ConnectionError, OSError):
                pass
            finally:
                if not writer.is_closing():
                    writer.transport.abort()
        return handle

    async def main():
        loop = asyncio.get_running_loop()
        # Failed TLS handshakes (triage rejecting a certificate, on purpose) are not news.
        loop.set_exception_handler(lambda _loop, _context: None)
        servers, ports = [], {}
        kinds = list(PLAIN_ORIGINS)
        tls_context = None
        if cert_dir != "-":
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(os.path.join(cert_dir, "leaf.pem"),
                                        os.path.join(cert_dir, "leaf.key"))
            kinds += TLS_ORIGINS
        for kind in kinds:
            server = await asyncio.start_server(
                handler(kind), "127.0.0.1", 0, backlog=1024, limit=1 << 20,
                ssl=tls_context if kind in TLS_ORIGINS else None)
            servers.append(server)
            ports[kind] = server.sockets[0].getsockname()[1]
        print(json.dumps(ports), flush=True)
        try:
            # Bounded: it stops by itself even if nobody stops it.
            await asyncio.sleep(max_seconds)
        finally:
            for server in servers:
                server.close()

    asyncio.run(main())


def make_certificates(cert_dir):
    """A CA and a leaf for "localhost" signed by it, with the openssl command; False when it
    is missing or fails (the certificate cases are then left out)."""
    openssl = load.which("openssl")
    if not openssl:
        return False
    p = lambda name: os.path.join(cert_dir, name)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ext = p("leaf.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "7",
         "-subj", "/CN=triage soak CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign"],
        [openssl, "req", *ec, "-keyout", p("leaf.key"), "-out", p("leaf.csr"), "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", p("leaf.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("leaf.pem"), "-days", "7", "-extfile", ext],
    ]
    for argv in steps:
        if subprocess.run(argv, capture_output=True).returncode != 0:
            return False
    return True


# --------------------------------------------------------------------------------------------
# What is asked, and what must come back
# --------------------------------------------------------------------------------------------

OK = (200, None)


class Kind:
    """One kind of request of the mix: where it goes, what it sends, what it must get."""

    def __init__(self, name, weight, path, upstream, origin_does, expect, method="GET", body=b"",
                 headers="", cut_token=None, action="request", needs_tls=False):
        self.name = name
        self.weight = weight
        self.path = path
        self.upstream = upstream
        self.origin_does = origin_does
        self.expect = set(expect)
        # A cut body is the expected outcome: the diagnosis /metrics must count for it.
        self.cut_token = cut_token
        # "request": ask and read the answer; "hang_up": ask the slow route and close before it
        # answers; "abandon": send half of a declared body and close (both: client_closed).
        self.action = action
        self.needs_tls = needs_tls
        # hang_up and abandon: on a connection of their own, which they close.
        self.fresh = action != "request"
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        self.wire = (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: triage-soak\r\n"
                     f"{headers}{length}\r\n").encode() + body


def expected_text(kind):
    parts = []
    for status, token in sorted(kind.expect, key=lambda e: (e[0], e[1] or "")):
        parts.append(f"{status} {token or '(none)'}")
    text = " or ".join(parts)
    if kind.cut_token:
        text += f", body cut ({kind.cut_token})"
    if kind.action != "request":
        text = "no answer (client_closed)"
    return text


def mix_kinds():
    """The main mix: each kind with its relative weight."""
    return [
        Kind("ok", 300, "/ok/", "ok", "answers 200", [OK]),
        Kind("big", 30, "/big/", "ok", "answers 200, 256 KiB", [OK]),
        Kind("post", 50, "/ok/post", "ok", "answers 200", [OK], method="POST", body=b"u" * 2000),
        Kind("slow", 60, "/slow/", "slow", "answers 200 after 100 ms", [OK]),
        Kind("app503", 50, "/app503/", "app503", "answers 503 itself", [(503, "upstream_status")]),
        Kind("refused", 50, "/refused/", "refused", "nothing listens", [(502, "connect_refused")]),
        Kind("reset", 50, "/reset/", "reset", "resets before answering", [(502, "connection_reset")]),
        Kind("closed", 50, "/closed/", "closed", "closes before answering", [(502, "connection_closed")]),
        Kind("stall", 25, "/stall/", "stall", "never answers", [(504, "response_timeout")]),
        Kind("garbage", 40, "/garbage/", "garbage", "answers bytes that are not HTTP", [(502, "invalid_response")]),
        Kind("huge", 8, "/huge/", "huge", "sends a 1.1 MB header", [(502, "response_headers_too_large")]),
        Kind("body_reset", 30, "/body-reset/", "body_reset", "resets after 1 kB of 100 kB", [OK],
             cut_token="body_reset"),
        Kind("body_closed", 30, "/body-closed/", "body_closed", "closes after 1 kB of 100 kB", [OK],
             cut_token="body_closed"),
        Kind("body_stall", 20, "/body-stall/", "body_stall", "stalls after 1 kB of 100 kB", [OK],
             cut_token="body_timeout"),
        Kind("expects_tls", 30, "/expects-tls/", "expects_tls", "answers a TLS alert (plain HTTP configured)",
             [(502, "upstream_expects_tls")]),
        Kind("plaintext", 30, "/plaintext/", "plaintext", "plain HTTP (TLS configured)",
             [(502, "tls_upstream_plaintext")]),
        Kind("tls", 20, "/tls/", "tls", "TLS, certificate trusted through ca_file", [OK], needs_tls=True),
        Kind("untrusted", 20, "/untrusted/", "untrusted", "TLS, certificate of an unknown CA",
             [(502, "tls_certificate_untrusted")], needs_tls=True),
        Kind("wrong_name", 20, "/wrong-name/", "wrong_name", "TLS, certificate for another name",
             [(502, "tls_certificate_name_mismatch")], needs_tls=True),
        Kind("no_route", 40, "/nowhere/", None, "(no route)", [(404, "no_route")]),
        Kind("too_large", 30, "/limited/", "ok", f"(body over max_body_size {BODY_LIMIT})",
             [(413, "request_body_too_large")], method="POST", body=b"l" * (5 * BODY_LIMIT)),
        Kind("ejection", 40, "/ejection/", "ejection", "2 servers, one resets; max_fails 3",
             [OK, (502, "connection_reset")]),
        Kind("health_mixed", 30, "/health-mixed/", "health_mixed", "2 servers, one refused; tcp checks",
             [OK, (502, "connect_refused")]),
        Kind("no_healthy", 30, "/no-healthy/", "no_healthy", "2 servers, both refused; tcp checks",
             [(503, "no_healthy_upstream"), (502, "connect_refused")]),
        Kind("bad_request", 20, "/ok/bad", "ok", "(Connection names X-Forwarded-For)", [(400, "bad_request")],
             headers="Connection: keep-alive, X-Forwarded-For\r\n"),
        Kind("hang_up", 10, "/hang-up/", "slow", "answers after 3 s; client leaves at 20 ms", [],
             action="hang_up"),
        Kind("abandon", 10, "/ok/upload", "ok", "client sends 400 of 900 bytes, leaves", [],
             method="POST", body=b"a" * 900, action="abandon"),
    ]


def upstreams_conf(ports, cert_dir, refused):
    """[upstreams.*] for every kind: (name, servers, extra TOML lines, health check lines)."""
    a = lambda kind: f"127.0.0.1:{ports[kind]}"  # noqa: E731
    ups = [
        ("ok", [a("ok")], [], ['kind = "http"', 'path = "/health"', 'interval = "1s"']),
        ("slow", [a("slow")], [], []),
        ("app503", [a("app503")], [], []),
        ("refused", [f"127.0.0.1:{refused[0]}"], [], []),
        ("reset", [a("reset")], [], []),
        ("closed", [a("close")], [], []),
        ("stall", [a("stall")], [], []),
        ("garbage", [a("garbage")], [], []),
        ("huge", [a("huge")], [], []),
        ("body_reset", [a("body_reset")], [], []),
        ("body_closed", [a("body_close")], [], []),
        ("body_stall", [a("body_stall")], [], []),
        ("expects_tls", [a("tls_alert")], [], []),
        ("plaintext", [a("ok")], ["tls = true"], []),
        ("ejection", [a("ok"), a("reset2")], ["max_fails = 3", 'fail_timeout = "2s"'], []),
        ("health_mixed", [a("ok"), f"127.0.0.1:{refused[1]}"], [],
         ['kind = "tcp"', 'interval = "1s"', "unhealthy_threshold = 1"]),
        ("no_healthy", [f"127.0.0.1:{refused[2]}", f"127.0.0.1:{refused[3]}"], [],
         ['kind = "tcp"', 'interval = "500ms"', "unhealthy_threshold = 1"]),
    ]
    if "tls" in ports:
        ca = os.path.join(cert_dir, "ca.pem")
        ups += [
            ("tls", [a("tls")], ["tls = true", 'sni = "localhost"', f'ca_file = "{ca}"'], []),
            ("untrusted", [a("tls2")], ["tls = true", 'sni = "localhost"'], []),
            ("wrong_name", [a("tls2")], ["tls = true", 'sni = "wrong.example"', f'ca_file = "{ca}"'], []),
        ]
    return ups


def triage_conf(port, admin, ports, cert_dir, refused, mix):
    """triage as shipped (conf/triage.toml's defaults: threads one per CPU, access log on,
    detail for loopback clients, refused_holdoff, retries 1, max_fails 3...), with addresses,
    short connect and read timeouts on every upstream, and the upstreams and routes of the mix."""
    lines = [f'[listen]\nhttp = ["127.0.0.1:{port}"]\n', f'[admin]\nlisten = "127.0.0.1:{admin}"\n']
    for name, servers, extra, check in upstreams_conf(ports, cert_dir, refused):
        lines.append(f"[upstreams.{name}]")
        lines.append("servers = [" + ", ".join(f'"{s}"' for s in servers) + "]")
        lines.append(f'connect_timeout = "{CONNECT_TIMEOUT_S}s"')
        lines.append(f'read_timeout = "{READ_TIMEOUT_S}s"')
        lines += extra
        if check:
            lines.append(f"[upstreams.{name}.health_check]")
            lines += check
        lines.append("")
    prefixes = {}
    for kind in mix:
        if kind.upstream is not None:
            prefixes.setdefault("/" + kind.path.split("/")[1] + "/", kind.upstream)
    for prefix, upstream in prefixes.items():
        lines.append(f'[[routes]]\npath_prefix = "{prefix}"\nupstream = "{upstream}"')
        if prefix == "/limited/":
            lines.append(f"max_body_size = {BODY_LIMIT}")
        if prefix == "/hang-up/":
            lines.append(f'read_timeout = "{HANG_UP_DELAY_S + 2}s"')
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The HTTP/1.1 client
# --------------------------------------------------------------------------------------------


class NoAnswer(Exception):
    """The connection ended before the first byte of an answer."""


class ProgressReader(asyncio.StreamReader):
    """A StreamReader that remembers when the last byte (or the end) arrived, for the
    watchdog: a request is hung when nothing moves, not when the driver is slow."""

    def __init__(self, limit):
        super().__init__(limit=limit)
        self.progress = time.monotonic()

    def feed_data(self, data):
        self.progress = time.monotonic()
        super().feed_data(data)

    def feed_eof(self):
        self.progress = time.monotonic()
        super().feed_eof()


async def open_connection(port, rcvbuf=None, limit=65536):
    """asyncio.open_connection with a ProgressReader; rcvbuf sets SO_RCVBUF before the
    connect (a slow reader with a small window, so the sender has to wait)."""
    loop = asyncio.get_running_loop()
    reader = ProgressReader(limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    if rcvbuf is None:
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class Response:
    def __init__(self, status, headers, body_len, complete, keep_alive):
        self.status = status
        self.headers = headers
        self.body_len = body_len
        self.complete = complete
        self.keep_alive = keep_alive

    def token(self):
        value = self.headers.get(b"x-diagnosis")
        return value.decode(errors="replace") if value is not None else None


async def read_exactly(reader, size, pace, watch):
    """Reads `size` bytes; with pace = (piece, pause), piece by piece with a pause between.
    Returns how many arrived before the end of the connection."""
    if pace is None:
        try:
            return len(await reader.readexactly(size))
        except asyncio.IncompleteReadError as e:
            return len(e.partial)
    piece, pause = pace
    got = 0
    while got < size:
        data = await reader.read(min(piece, size - got))
        if not data:
            break
        got += len(data)
        await asyncio.sleep(pause)
        watch.touch()  # the pause is the client's, not triage's
    return got


async def read_response(reader, watch, pace=None):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise NoAnswer() from None
        raise
    except ConnectionError:
        raise NoAnswer() from None
    lines = head.split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers.setdefault(name.strip().lower(), value.strip())
    status = int(status)
    keep_alive = version == b"HTTP/1.1" and b"close" not in headers.get(b"connection", b"").lower()
    body_len, complete = 0, True
    try:
        if status in (204, 304) or 100 <= status < 200:
            pass
        elif b"content-length" in headers:
            size = int(headers[b"content-length"])
            body_len = await read_exactly(reader, size, pace, watch)
            complete = body_len == size
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            complete = False
            for _ in range(1_000_000):
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    complete = True
                    break
                got = await read_exactly(reader, size, pace, watch)
                body_len += got
                if got < size:
                    break
                await reader.readexactly(2)
        else:  # delimited by the close
            keep_alive = False
            for _ in range(10_000_000):
                data = await reader.read(65536)
                if not data:
                    break
                body_len += len(data)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        complete = False
    if not complete:
        keep_alive = False
    return Response(status, headers, body_len, complete, keep_alive)


def close(writer):
    try:
        writer.close()
    except (ConnectionError, OSError, RuntimeError):
        pass


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.sent = collections.Counter()
        self.as_expected = collections.Counter()
        self.wrong = collections.defaultdict(collections.Counter)  # kind -> outcome -> n
        self.hung = collections.Counter()
        self.latency = collections.defaultdict(list)  # kind -> seconds
        self.tokens = collections.Counter()  # what the clients saw, for the /metrics check
        self.stale_retries = 0  # a reused connection the server had closed: asked again
        self.idle_closed = 0  # an idle client's connection closed by triage
        self.skipped = 0  # launches over the concurrency bound
        self.spared = 0  # watchdog verdicts withdrawn: bytes were waiting, the driver lagged
        self.done_at = collections.Counter()  # second of the run -> requests finished
        self.healthz_ok = 0
        self.healthz_failed = []  # (second, what)
        self.rss = []  # (second, KiB)
        self.fds = []  # (second, open fds)
        self.idle_rss = None  # KiB, before the load starts
        self.lag = []  # the driver's event-loop lag, seconds, every 100 ms


class Hung(Exception):
    """The watchdog's verdict on an exchange: nothing moved for DEADLINE_S."""


class Watch:
    """One exchange under the watchdog: hung when neither side moved a byte for DEADLINE_S
    (triage silent while the client waits), or when it outlives `cap` seconds in all."""

    __slots__ = ("task", "reader", "writer", "touched", "started", "cap", "hung")

    def __init__(self, cap):
        self.task = asyncio.current_task()
        self.reader = self.writer = None
        self.started = self.touched = time.monotonic()
        self.cap = cap
        self.hung = False

    def touch(self):
        self.touched = time.monotonic()

    def attach(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.touch()

    def quiet(self, now):
        last = self.touched if self.reader is None else max(self.touched, self.reader.progress)
        return now - last

    def bytes_waiting(self):
        """Whether triage's bytes sit unread in the socket: then the driver is late, not
        triage (a watchdog tick may run before the read callback of the same loop turn)."""
        sock = self.writer.get_extra_info("socket") if self.writer is not None else None
        if sock is None or sock.fileno() < 0:
            return False
        try:
            return bool(select.select([sock.fileno()], [], [], 0)[0])
        except (OSError, ValueError):
            return False


class Driver:
    def __init__(self, port, mix, stats, started):
        self.port = port
        self.mix = mix
        self.by_name = {k.name: k for k in mix}
        self.stats = stats
        self.started = started
        self.pool = []
        self.inflight = 0
        self.watched = set()
        self.stopping = asyncio.Event()

    def now(self):
        return time.monotonic() - self.started

    async def watched_call(self, label, cap, body):
        """Runs body(watch) under the watchdog; returns its result, or raises Hung."""
        watch = Watch(cap)
        self.watched.add(watch)
        try:
            return await body(watch)
        except asyncio.CancelledError:
            if watch.hung:
                self.stats.hung[label] += 1
                raise Hung() from None
            raise
        finally:
            self.watched.discard(watch)
            if watch.writer is not None and watch.hung:
                close(watch.writer)

    async def watchdog(self):
        """Four times a second: cancels the exchanges that are hung (see Watch)."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for watch in list(self.watched):
                if watch.hung or (watch.quiet(now) <= DEADLINE_S and now - watch.started <= watch.cap):
                    continue
                if watch.bytes_waiting():
                    self.stats.spared += 1
                    watch.touch()
                    continue
                watch.hung = True
                watch.task.cancel()

    async def lag_meter(self):
        """How late the event loop runs a 100 ms sleep: the driver's own overload."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            self.stats.lag.append(time.monotonic() - t - 0.1)

    def record(self, label, kind, response, seconds):
        """Counts a finished exchange under `label` (a kind name, or a slow/idle client's)."""
        st = self.stats
        st.done_at[int(self.now())] += 1
        token = response.token()
        if token is not None:
            st.tokens[token] += 1
        outcome = (response.status, token)
        good = outcome in kind.expect and response.complete == (kind.cut_token is None)
        if kind.cut_token and not response.complete:
            st.tokens[kind.cut_token] += 1
        if good:
            st.as_expected[label] += 1
            st.latency[label].append(seconds)
        else:
            cut = "" if response.complete else ", body cut"
            st.wrong[label][f"{response.status} {token or '(none)'}{cut}"] += 1

    async def exchange(self, kind, watch):
        """One request on a pooled connection (or a new one); a pooled connection the server
        closed meanwhile is replaced once. Returns the response."""
        for attempt in range(2):
            reused = bool(self.pool) and not kind.fresh and attempt == 0
            reader, writer = self.pool.pop() if reused else await open_connection(self.port)
            watch.attach(reader, writer)
            try:
                writer.write(kind.wire)
                try:
                    await writer.drain()
                except ConnectionError:
                    pass  # an early answer (413) may still be there to read
                response = await read_response(reader, watch)
            except NoAnswer:
                close(writer)
                if reused:
                    self.stats.stale_retries += 1
                    continue
                raise
            except BaseException:
                close(writer)
                raise
            if response.keep_alive and len(self.pool) < SETTINGS["concurrency"]:
                self.pool.append((reader, writer))
            else:
                close(writer)
            return response
        raise NoAnswer()

    async def leave_early(self, kind, watch):
        """hang_up and abandon: the request (or half its body), then the client goes away."""
        reader, writer = await open_connection(self.port)
        watch.attach(reader, writer)
        try:
            # abandon: the head and 400 of the 900 bytes it declares.
            writer.write(kind.wire[:-500] if kind.action == "abandon" else kind.wire)
            await writer.drain()
            await asyncio.sleep(0.02)
        finally:
            close(writer)
        self.stats.tokens["client_closed"] += 1

    async def one(self, kind):
        st = self.stats
        st.sent[kind.name] += 1
        t0 = time.monotonic()
        try:
            if kind.action != "request":
                await self.watched_call(kind.name, ANSWER_CAP_S, lambda w: self.leave_early(kind, w))
                st.as_expected[kind.name] += 1
                st.done_at[int(self.now())] += 1
                return
            response = await self.watched_call(kind.name, ANSWER_CAP_S, lambda w: self.exchange(kind, w))
            self.record(kind.name, kind, response, time.monotonic() - t0)
        except Hung:
            pass
        except (NoAnswer, asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
            st.wrong[kind.name][f"error: {type(e).__name__}"] += 1
        finally:
            self.inflight -= 1

    async def generate(self, seconds):
        """The open-loop mix: SETTINGS rate launches a second, each a task, at most
        `concurrency` in flight."""
        rng = random.Random(SETTINGS["seed"])
        weights = [k.weight for k in self.mix]
        tasks = set()
        launched = 0
        t0 = time.monotonic()
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= seconds:
                break
            due = min(int(elapsed * SETTINGS["rate"]) - launched, SETTINGS["rate"])
            for kind in rng.choices(self.mix, weights, k=max(due, 0)):
                launched += 1
                if self.inflight >= SETTINGS["concurrency"]:
                    self.stats.skipped += 1
                    continue
                self.inflight += 1
                task = asyncio.ensure_future(self.one(kind))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        # Every request ends by its cap: wait for them (bounded all the same).
        if tasks:
            await asyncio.wait(list(tasks), timeout=ANSWER_CAP_S + 5)
        return launched

    async def slow_client(self, rng):
        """A byte at a time with pauses, then the answer read 1 KiB per 20 ms through a 4 KiB
        receive buffer, so triage's writes wait on it; recycled until the end."""
        choices = ["big", "big", "ok", "refused"]
        for _ in range(1_000_000):
            if self.stopping.is_set():
                return
            kind = self.by_name[rng.choice(choices)]
            label = f"slow client: {kind.name}"
            self.stats.sent[label] += 1
            pauses = [rng.uniform(0.01, 0.04) for _ in kind.wire]
            t0 = time.monotonic()

            async def run(watch):
                reader, writer = await open_connection(self.port, rcvbuf=4096, limit=4096)
                watch.attach(reader, writer)
                try:
                    for i, pause in enumerate(pauses):
                        writer.write(kind.wire[i:i + 1])
                        await writer.drain()
                        await asyncio.sleep(pause)
                        watch.touch()
                    return await read_response(reader, watch, pace=(1024, 0.02))
                finally:
                    close(writer)
            try:
                response = await self.watched_call(label, SLOW_CLIENT_CAP_S, run)
                self.record(label, kind, response, time.monotonic() - t0)
            except Hung:
                pass
            except (NoAnswer, asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
                self.stats.wrong[label][f"error: {type(e).__name__}"] += 1

    async def idle_client(self, rng):
        """One request, then idle on the keep-alive connection (up to idle_max s), then a
        second request on it, reconnecting if triage closed it meanwhile; recycled."""
        kind = self.by_name["ok"]
        label = "idle client"
        conn = []  # the connection, kept across the idle time

        async def ask(watch, second):
            if not conn:
                conn.extend(await open_connection(self.port))
            reader, writer = conn
            watch.attach(reader, writer)
            try:
                writer.write(kind.wire)
                await writer.drain()
                return await read_response(reader, watch)
            except (NoAnswer, ConnectionError):
                if not second:
                    raise
                # Closed by triage while idle: ask again on a new connection.
                self.stats.idle_closed += 1
                close(writer)
                conn[:] = await open_connection(self.port)
                watch.attach(*conn)
                conn[1].write(kind.wire)
                await conn[1].drain()
                return await read_response(conn[0], watch)

        for _ in range(1_000_000):
            if self.stopping.is_set():
                return
            try:
                for second in (False, True):
                    self.stats.sent[label] += 1
                    t0 = time.monotonic()
                    response = await self.watched_call(label, ANSWER_CAP_S, lambda w: ask(w, second))
                    self.record(label, kind, response, time.monotonic() - t0)
                    if second or not response.keep_alive:
                        break
                    try:
                        await asyncio.wait_for(self.stopping.wait(), rng.uniform(1, SETTINGS["idle_max"]))
                        break  # the run ends: close without the second request
                    except asyncio.TimeoutError:
                        pass
            except Hung:
                pass
            except (NoAnswer, asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
                self.stats.wrong[label][f"error: {type(e).__name__}"] += 1
            finally:
                if conn:
                    close(conn[1])
                    conn.clear()

    def close_pool(self):
        for _, writer in self.pool:
            close(writer)
        self.pool.clear()


async def admin_get(port, path, timeout=5):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        body = await asyncio.wait_for(reader.read(-1), timeout)
        return int(head.split(b" ", 2)[1]), body
    finally:
        close(writer)


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


async def monitor(proc, admin, stats, started, stop):
    """Every second: is triage alive, does /healthz answer; every sample_every seconds, its
    VmRSS and open fds."""
    next_sample = 0.0
    while not stop.is_set():
        t = time.monotonic() - started
        if not proc.alive():
            stats.healthz_failed.append((t, f"triage exited ({proc.popen.returncode})"))
            return
        try:
            status, _ = await admin_get(admin, "/healthz")
            if status == 200:
                stats.healthz_ok += 1
            else:
                stats.healthz_failed.append((t, f"/healthz {status}"))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            stats.healthz_failed.append((t, f"/healthz: {type(e).__name__}"))
        if t >= next_sample:
            stats.rss.append((t, load.rss_kib([proc.pid])))
            stats.fds.append((t, open_fds(proc.pid)))
            next_sample += SETTINGS["sample_every"]
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


def metric_sums(text):
    """From /metrics: failures by diagnosis token (summed over upstreams and phases), all
    requests answered, and the stored reports gauge."""
    failures = collections.Counter()
    requests = 0
    stored = None
    for line in text.splitlines():
        if line.startswith("triage_upstream_failures_total{"):
            token = line.split('diagnosis="', 1)[1].split('"', 1)[0]
            failures[token] += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("triage_requests_total{"):
            requests += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("triage_diagnoses_stored "):
            stored = int(float(line.rsplit(" ", 1)[1]))
    return {k: v for k, v in failures.items() if v}, requests, stored


async def drive(port, admin, proc, mix, stats):
    started = time.monotonic()
    driver = Driver(port, mix, stats, started)
    stop_monitor = asyncio.Event()
    monitor_task = asyncio.ensure_future(monitor(proc, admin, stats, started, stop_monitor))
    rng = random.Random(SETTINGS["seed"] + 1)
    helpers = [asyncio.ensure_future(driver.watchdog()), asyncio.ensure_future(driver.lag_meter())]
    background = [asyncio.ensure_future(driver.slow_client(random.Random(rng.random())))
                  for _ in range(SETTINGS["slow_clients"])]
    background += [asyncio.ensure_future(driver.idle_client(random.Random(rng.random())))
                   for _ in range(SETTINGS["idle_clients"])]
    last_report = 0
    gen = asyncio.ensure_future(driver.generate(SETTINGS["seconds"]))
    while not gen.done():
        await asyncio.wait([gen], timeout=10)
        t = int(time.monotonic() - started)
        if t - last_report >= 30 or gen.done():
            last_report = t
            rss = stats.rss[-1][1] / 1024 if stats.rss else 0
            recent = sum(stats.done_at[s] for s in range(max(t - 10, 0), t)) / 10
            log(f"{t:4d} s: {sum(stats.sent.values()):,} sent, ~{recent:,.0f}/s, "
                f"hung {sum(stats.hung.values())}, wrong {sum(sum(c.values()) for c in stats.wrong.values())}, "
                f"RSS {rss:.1f} MiB, healthz failures {len(stats.healthz_failed)}")
    launched = gen.result()
    driver.stopping.set()
    # The slow and idle clients finish what they are doing (each bounded by its cap): one cut
    # short would be a client_closed the clients did not count.
    await asyncio.wait(background, timeout=SLOW_CLIENT_CAP_S + 5)
    for task in background:
        task.cancel()
    load_seconds = time.monotonic() - started
    for task in helpers:
        task.cancel()
    driver.close_pool()
    await asyncio.sleep(2)  # triage finishes counting the last requests
    stop_monitor.set()
    await monitor_task
    metrics_text = None
    try:
        status, body = await admin_get(admin, "/metrics", timeout=10)
        if status == 200:
            metrics_text = body.decode(errors="replace")
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        stats.healthz_failed.append((load_seconds, f"/metrics: {type(e).__name__}"))
    return launched, load_seconds, metrics_text


# --------------------------------------------------------------------------------------------
# triage's output: the access log is counted and dropped, the rest kept (bounded)
# --------------------------------------------------------------------------------------------


def log_filter_main(result_path):
    """`soak.py --log-filter RESULT`: reads triage's stdout (the access log and the error
    lines) on stdin until triage exits, then writes to RESULT (JSON) how many lines, how many
    access lines, how many with "panicked", and up to 40 distinct other lines with their
    counts. A process of its own, so that triage's writes never wait on the busy driver."""
    lines = access = panics = 0
    kept = collections.OrderedDict()
    for raw in iter(sys.stdin.buffer.readline, b""):
        lines += 1
        if raw.startswith(b"127.0.0.1 - "):
            access += 1
            continue
        line = raw.decode(errors="replace").rstrip()
        if "panicked" in line:
            panics += 1
        # The shape of the line, without its time stamp, id and numbers.
        shape = " ".join(w for w in line.split()[1:] if not any(c.isdigit() for c in w))[:160]
        if shape in kept:
            kept[shape][1] += 1
        elif len(kept) < 40:
            kept[shape] = [line[:300], 1]
    with open(result_path, "w") as f:
        json.dump({"lines": lines, "access": access, "panics": panics, "kept": list(kept.values())}, f)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def least_squares_slope(points):
    """Slope of the least-squares line through (x, y) points; None with fewer than 2."""
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def memory_summary(stats, load_seconds):
    """VmRSS after the warm-up: start and end (medians of a window), max, growth, slope."""
    st = SETTINGS
    after = [(t, kib) for t, kib in stats.rss if st["warmup"] <= t <= load_seconds]
    window = max(min(30, (load_seconds - st["warmup"]) / 3), st["sample_every"])
    first = [kib for t, kib in after if t < st["warmup"] + window]
    last = [kib for t, kib in after if t > load_seconds - window]
    if not first or not last:
        return None
    start, end = statistics.median(first), statistics.median(last)
    slope = least_squares_slope([(t / 60, kib) for t, kib in after])
    growth = end - start
    return {
        "idle": stats.idle_rss,
        "start": start, "end": end, "max": max(kib for _, kib in after), "growth": growth,
        "slope": slope, "window": window, "samples": len(after),
        "ok": growth < st["rss_limit_mib"] * 1024,
    }


def fmt_ms(seconds):
    return "—" if seconds is None else f"{seconds * 1000:,.0f}"


def fmt_mib(kib):
    return "—" if kib is None else f"{kib / 1024:.1f}"


def render(r):
    st = SETTINGS
    stats, info = r["stats"], r["info"]
    lines = []
    mem = r["memory"]
    failures_metrics, requests_metrics, stored = r["metrics"]
    tokens = sorted(set(failures_metrics) | set(stats.tokens))
    count_diff = [t for t in tokens if failures_metrics.get(t, 0) != stats.tokens.get(t, 0)]
    hung = sum(stats.hung.values())
    wrong = sum(sum(c.values()) for c in stats.wrong.values())
    sent = sum(stats.sent.values())
    crashes = [what for _, what in stats.healthz_failed]
    checks = [
        ("crashes", "none: triage alive throughout, /healthz answered "
         f"{stats.healthz_ok}/{stats.healthz_ok + len(crashes)} probes (every second)"
         if not crashes else f"**{len(crashes)} failed probes: {', '.join(crashes[:5])}**", not crashes),
        ("panics", f"{r['output']['panics']} lines with \"panicked\" in triage's output "
         f"({r['stderr_panics']} on stderr)", r["output"]["panics"] == 0 and r["stderr_panics"] == 0),
        ("hung requests", f"{hung} of {sent:,} (triage silent for {DEADLINE_S} s while a client waits, "
         f"or an answer unfinished after {ANSWER_CAP_S} s, {SLOW_CLIENT_CAP_S} s for a slow client)",
         hung == 0),
        ("wrong answers", f"{wrong} of {sent:,} (status, X-Diagnosis token or body completeness "
         "not what the route must give)", wrong == 0),
        ("failures counted", (f"/metrics equals what the clients saw, for each of {len(tokens)} tokens"
                              if not count_diff else "**differs for " + ", ".join(count_diff) + "**")
         if r["metrics_ok"] else "**/metrics not read**", r["metrics_ok"] and not count_diff),
        ("memory flat", "—" if mem is None else
         f"VmRSS {fmt_mib(mem['start'])} MiB after the warm-up, {fmt_mib(mem['end'])} MiB at the end: "
         f"{mem['growth'] / 1024:+.1f} MiB (limit +{st['rss_limit_mib']} MiB); slope "
         f"{mem['slope']:+.0f} KiB/min", mem is not None and mem["ok"]),
    ]
    passed = all(ok for _, _, ok in checks)
    if st["seconds"] < 600:
        lines.append(f"**A short validation run** (`SOAK_SECONDS={st['seconds']}`), not the ten-minute soak.")
        lines.append("")
    lines.append(f"Run {r['started']} on {info['cpu']}, {info['memory']}; {info['os']}.  ")
    lines.append(f"{info['rustc']}, Pingora {info['pingora']}, triage {info['triage']}.  ")
    lines.append(f"{st['seconds']} s "
                 f"at a target of {st['rate']:,} req/s (at most {st['concurrency']} in flight), warm-up "
                 f"{st['warmup']} s, {st['slow_clients']} slow and {st['idle_clients']} idle clients; "
                 f"not pinned. Load average before/after: {r['load_before']} / {r['load_after']}.")
    lines.append("")
    lines.append(f"**Verdict: {'pass' if passed else 'FAIL'}**")
    lines.append("")
    lines.append("| check | result | |")
    lines.append("|---|---|---|")
    for name, text, ok in checks:
        lines.append(f"| {name} | {text} | {'ok' if ok else '**fail**'} |")
    lines.append("")
    post = [stats.done_at[s] for s in range(st["warmup"], st["seconds"])]
    windows = [sum(post[i:i + 10]) / 10 for i in range(0, max(len(post) - 9, 0), 10)]
    failed_share = (sum(k.weight for k in r["mix"] if k.expect != {OK} or k.cut_token)
                    / sum(k.weight for k in r["mix"]))
    main_sent = sum(stats.sent[k.name] for k in r["mix"])
    slow_sent = sum(n for label, n in stats.sent.items() if label.startswith("slow client"))
    cpu = lambda seconds: f"{seconds / r['load_seconds']:.0%}"  # noqa: E731
    lines += [
        f"- **Load**: the main mix, {main_sent:,} requests in {st['seconds']} s, "
        f"{main_sent / st['seconds']:,.0f} req/s (after the warm-up, the slowest 10 s: "
        f"{min(windows) if windows else 0:,.0f} req/s), {failed_share:.0%} of it meant to fail; of "
        f"{r['launched']:,} launches, {stats.skipped:,} were skipped at the bound of "
        f"{st['concurrency']} in flight. "
        f"Slow clients: {slow_sent:,} requests; idle clients: {stats.sent['idle client']:,}.",
        f"- **CPU** (over {r['load_seconds']:.0f} s): triage {cpu(r['cpu_s'])} of a core "
        f"({r['cpu_s'] * 1e6 / max(sent, 1):.0f} µs per request, TLS handshakes and 1.1 MB headers "
        f"included), the clients {cpu(r['driver_cpu_s'])}, the origins {cpu(r['origins_cpu_s'])}; "
        f"the clients' event loop ran late by {fmt_ms(percentile(stats.lag, 0.99))} ms at p99, "
        f"{fmt_ms(max(stats.lag, default=None))} ms at most.",
        f"- **Connections**: pooled client connections found closed by triage and asked again: "
        f"{stats.stale_retries}; idle clients' connections closed by triage: {stats.idle_closed}; "
        f"watchdog verdicts withdrawn because triage's bytes were already waiting: {stats.spared}.",
        f"- **triage's output**: {r['output']['lines']:,} lines ({r['output']['access']:,} access "
        f"lines); `triage_requests_total` {requests_metrics:,}; {stored} reports stored.",
        "",
    ]
    if mem is not None:
        lines.append(f"**Memory** (VmRSS of triage, every {st['sample_every']} s; start and end are "
                     f"medians of the first and last {mem['window']:.0f} s after the warm-up)")
        lines.append("")
        lines.append("| idle, before the load | start (after warm-up) | max | end | growth | slope | open fds start / max / end |")
        lines.append("|--:|--:|--:|--:|--:|--:|--:|")
        fds = [n for t, n in stats.fds if t >= st["warmup"] and n is not None]
        lines.append(f"| {fmt_mib(mem['idle'])} MiB | {fmt_mib(mem['start'])} MiB | {fmt_mib(mem['max'])} MiB | "
                     f"{fmt_mib(mem['end'])} MiB | {mem['growth'] / 1024:+.2f} MiB | {mem['slope']:+.0f} KiB/min | "
                     f"{fds[0] if fds else '—'} / {max(fds) if fds else '—'} / {fds[-1] if fds else '—'} |")
        lines.append("")
    lines.append("**Per kind**")
    lines.append("")
    lines.append("| kind | path | upstream does | must give | sent | as expected | wrong | hung | p50 ms | p99 ms |")
    lines.append("|---|---|---|---|--:|--:|--:|--:|--:|--:|")
    rows = [(k.name, k) for k in r["mix"]]
    rows += [(label, None) for label in sorted(stats.sent) if label.startswith(("slow client", "idle client"))]
    for label, kind in rows:
        if kind is None:
            base = r["by_name"][label.split(": ", 1)[1] if ": " in label else "ok"]
        else:
            base = kind
        wrong_here = stats.wrong.get(label, {})
        wrong_text = str(sum(wrong_here.values()))
        if wrong_here:
            wrong_text = "**" + ", ".join(f"{n}× {o}" for o, n in wrong_here.most_common(3)) + "**"
        lat = stats.latency.get(label, [])
        p50 = percentile(lat, 0.5)
        p99 = percentile(lat, 0.99)
        lines.append(
            f"| {label} | `{base.path}` | {base.origin_does} | {expected_text(base)} | {stats.sent[label]:,} | "
            f"{stats.as_expected[label]:,} | {wrong_text} | {stats.hung[label] or 0} | "
            f"{'—' if p50 is None else f'{p50 * 1000:.1f}'} | {'—' if p99 is None else f'{p99 * 1000:.1f}'} |")
    lines.append("")
    lines.append("**Failures counted** (`triage_upstream_failures_total` by diagnosis, against what the "
                 "clients saw: X-Diagnosis tokens, cut bodies, clients that left)")
    lines.append("")
    lines.append("| diagnosis | clients saw | /metrics | |")
    lines.append("|---|--:|--:|---|")
    for t in tokens:
        a, b = stats.tokens.get(t, 0), failures_metrics.get(t, 0)
        lines.append(f"| `{t}` | {a:,} | {b:,} | {'ok' if a == b else '**differs**'} |")
    return "\n".join(lines) + "\n", passed


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def build():
    if os.environ.get("SOAK_NO_BUILD", "") not in ("", "0"):
        log("SOAK_NO_BUILD set: using the binary already built")
    else:
        log("cargo build --release --bin triage")
        subprocess.run(["cargo", "build", "--release", "--bin", "triage"], cwd=load.REPO, check=True)
    path = os.path.join(load.target_dir(), "release", "triage")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: run without SOAK_NO_BUILD")
    return path


def read_ports(proc, timeout=15):
    """The origins process prints its ports as one JSON line once it listens."""
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline and proc.alive():
        ready, _, _ = select.select([proc.popen.stdout], [], [], 0.2)
        if ready:
            buf += os.read(proc.popen.stdout.fileno(), 65536)
            if b"\n" in buf:
                return json.loads(buf.split(b"\n", 1)[0])
    with open(proc.stderr_path, "rb") as f:
        raise RuntimeError(f"the origins did not start: {f.read()[-2000:].decode(errors='replace')}")


def main(argv):
    if "--log-filter" in argv:
        log_filter_main(argv[argv.index("--log-filter") + 1])
        return 0
    if "--origins" in argv:
        i = argv.index("--origins")
        origins_main(argv[i + 1], float(argv[i + 2]))
        return 0
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    unknown = [a for a in argv if a != "--update-readme"]
    if unknown:
        print(f"unknown arguments: {unknown}; see --help", file=sys.stderr)
        return 2
    update = "--update-readme" in argv or os.environ.get("SOAK_UPDATE_README", "") not in ("", "0")
    if SETTINGS["seconds"] < 10 or SETTINGS["seconds"] > 24 * 3600:
        raise RuntimeError("SOAK_SECONDS must be between 10 and 86400")

    load.ensure_tools(("cmake", "cc", "taskset"))
    triage_bin = build()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = load.loadavg()
    load.WORKDIR = tempfile.mkdtemp(prefix="triage-soak-")
    all_cpus = f"0-{(os.cpu_count() or 1) - 1}"
    try:
        cert_dir = os.path.join(load.WORKDIR, "certs")
        os.mkdir(cert_dir)
        have_certs = make_certificates(cert_dir)
        if not have_certs:
            log("no openssl command (or it failed): the certificate cases are left out")
        budget = SETTINGS["seconds"] + 300  # the origins stop by themselves after this
        origins = load.Proc("origins", [sys.executable, os.path.abspath(__file__), "--origins",
                                        cert_dir if have_certs else "-", str(budget)],
                            all_cpus, subprocess.PIPE, signal.SIGTERM)
        ports = read_ports(origins)
        mix = [k for k in mix_kinds() if have_certs or not k.needs_tls]
        refused = [load.refused_port() for _ in range(4)]
        port, admin = load.free_port(), load.free_port()
        conf = os.path.join(load.WORKDIR, "triage.toml")
        with open(conf, "w") as f:
            f.write(triage_conf(port, admin, ports, cert_dir, refused, mix))
        # triage's stdout goes through a pipe (1 MiB, some seconds of log) to the log filter.
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass
        filtered = os.path.join(load.WORKDIR, "triage-output.json")
        log_filter = load.Proc("log-filter", [sys.executable, os.path.abspath(__file__), "--log-filter",
                                              filtered], all_cpus, subprocess.DEVNULL, stdin=read_end)
        proc = load.Proc("triage", [triage_bin, "-c", conf], all_cpus, write_end, signal.SIGINT)
        os.close(read_end)
        os.close(write_end)
        load.wait_listening(port, proc)
        load.wait_listening(admin, proc)
        log(f"triage on 127.0.0.1:{port} (admin {admin}), {len(mix)} kinds, "
            f"{SETTINGS['seconds']} s at {SETTINGS['rate']} req/s")
        stats = Stats()
        stats.idle_rss = load.rss_kib([proc.pid])
        cpu0, origins0, driver0 = load.cpu_ticks([proc.pid]), load.cpu_ticks([origins.pid]), os.times()
        launched, load_seconds, metrics_text = asyncio.run(drive(port, admin, proc, mix, stats))
        cpu_s = (load.cpu_ticks([proc.pid]) - cpu0) / load.CLK_TCK
        origins_cpu_s = (load.cpu_ticks([origins.pid]) - origins0) / load.CLK_TCK
        driver1 = os.times()
        driver_cpu_s = driver1.user + driver1.system - driver0.user - driver0.system
        alive_at_end = proc.alive()
        if not alive_at_end:
            stats.healthz_failed.append((load_seconds, f"triage exited ({proc.popen.returncode})"))
        proc.stop()
        try:
            log_filter.popen.wait(timeout=10)  # it ends with triage's stdout
        except subprocess.TimeoutExpired:
            pass
        try:
            with open(filtered) as f:
                output = json.load(f)
        except (OSError, ValueError):
            output = {"lines": 0, "access": 0, "panics": None, "kept": []}
        with open(proc.stderr_path, "rb") as f:
            stderr_panics = f.read().count(b"panicked")
        info = load.machine_info()
        result = {
            "stats": stats, "info": info, "started": started, "mix": mix,
            "by_name": {k.name: k for k in mix}, "load_before": load_before,
            "load_after": load.loadavg(), "load_seconds": load_seconds, "cpu_s": cpu_s,
            "origins_cpu_s": origins_cpu_s, "driver_cpu_s": driver_cpu_s, "launched": launched,
            "output": output, "stderr_panics": stderr_panics,
            "metrics": metric_sums(metrics_text or ""), "metrics_ok": metrics_text is not None,
            # Memory under load: the samples up to the end of the main mix.
            "memory": memory_summary(stats, SETTINGS["seconds"]),
        }
        summary, passed = render(result)
        print(summary)
        if output["kept"]:
            log("triage's non-access lines (count, the first of each shape):")
            for line, n in output["kept"]:
                log(f"  {n}× {line}")
        if update:
            load.update_readme(summary, SUMMARY_START, SUMMARY_END)
        with open(os.path.join(load.WORKDIR, "rss.json"), "w") as f:
            json.dump({"rss": stats.rss, "fds": stats.fds}, f)
        return 0 if passed else 1
    finally:
        load.stop_all()
        for s in load.RESERVED:
            s.close()
        if os.environ.get("SOAK_KEEP", "") in ("", "0"):
            shutil.rmtree(load.WORKDIR, ignore_errors=True)
        else:
            log(f"kept the work dir (config, stderr, RSS samples): {load.WORKDIR}")


if __name__ == "__main__":
    load.run_main(main)
