#!/usr/bin/env python3
"""Memory per idle client connection: what a client can make triage hold by connecting and
doing nothing.

One command (see benches/README.md):

    python3 benches/idle_connections.py                  # 2,000 connections per phase
    IDLE_CONNECTIONS=500 python3 benches/idle_connections.py
    python3 benches/idle_connections.py --update-readme  # and write the table into benches/README.md

It builds the release `triage` (IDLE_NO_BUILD=1 uses the one built), starts a small keep-alive
origin and triage in front of it on 127.0.0.1, and measures triage's VmRSS in three phases of
IDLE_CONNECTIONS connections each, all held open at once:

- keep-alive: each connection makes one request (the app's 200), then sits idle, as a browser's
  kept-alive connection does;
- fresh: each connection is opened and sends nothing;
- unfinished head: each sends a request head of just under `[client] max_header_bytes` (the
  default, 32 KiB) without its end, the most a client can make triage buffer for a head.

Each phase runs against a triage started for it (freed memory that the allocator keeps for
reuse would otherwise hide the next phase's growth): its VmRSS before (after WARMUP
connections of the same phase, opened and closed, so that the runtime's first allocations are
not counted), with the connections open (sampled once `triage_client_connections` says they
all are and RSS settles), after they closed, and with as many open again (the memory freed is
reused, not added to). The table gives the growth per connection: (open - before) /
connections.
The `[client]` timeouts are set to 10 minutes so that nothing expires while it measures; with
the defaults, idle keep-alive connections are closed after 75 s and heads after 60 s, which is
what bounds how long this memory is held.

Everything listens on 127.0.0.1; every wait is bounded (a phase gives up after
IDLE_PHASE_SECONDS); every process started is stopped at the end, also on Ctrl-C, SIGTERM or
an error (load.py's Proc). Standard library only (Python 3.9+).
"""

import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing load.py leaves no __pycache__ in benches/

import load  # noqa: E402  (processes, /proc sampling, ports, README markers)

CONNECTIONS = load.env_int("IDLE_CONNECTIONS", 2000)
WARMUP = 50
PHASE_SECONDS = load.env_int("IDLE_PHASE_SECONDS", 120)
MAX_HEADER_BYTES = 32 << 10
TABLE_START = "<!-- idle-table:start -->"
TABLE_END = "<!-- idle-table:end -->"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


def log(msg):
    print(f"idle: {msg}", file=sys.stderr, flush=True)


def origin_main(port):
    """A keep-alive origin answering every request with 200 `ok`, for at most PHASE_SECONDS
    times the phases, then it exits on its own."""

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await asyncio.sleep(PHASE_SECONDS * 8 + 60)

    asyncio.run(serve())


def triage_conf(port, admin, origin):
    run = os.path.join(load.WORKDIR, "run")
    os.makedirs(run, mode=0o700, exist_ok=True)
    return f"""[listen]
http = ["127.0.0.1:{port}"]
[admin]
listen = "127.0.0.1:{admin}"
[server]
upgrade_socket = "{run}/upgrade.sock"
pid_file = "{run}/triage.pid"
[client]
header_timeout = "10m"
keepalive_timeout = "10m"
[log]
access = false
[upstreams.app]
servers = ["127.0.0.1:{origin}"]
[[routes]]
path_prefix = "/"
upstream = "app"
"""


def open_connections(port, count, phase, deadline):
    """Opens `count` connections and brings each into the phase's idle state."""
    conns = []
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\n"
    unfinished = head + b"X-Pad: " + b"a" * (MAX_HEADER_BYTES - len(head) - 1024)
    for _ in range(count):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{phase}: opening {count} connections took too long")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if phase == "keep-alive":
            s.sendall(head + b"\r\n")
            got = b""
            while not got.endswith(b"ok\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError(f"keep-alive: closed after {got!r}")
                got += chunk
            if not got.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"keep-alive: {got[:80]!r}")
        elif phase == "unfinished head":
            s.sendall(unfinished)
        conns.append(s)
    return conns


def open_count(admin):
    """`triage_client_connections` from /metrics."""
    with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("triage_client_connections "):
            return int(float(line.split()[1]))
    return -1


def settled_rss(proc, admin, expected, deadline):
    """VmRSS (KiB) once `expected` connections are open and RSS stops moving: the median of
    five samples 200 ms apart, taken after the count is reached."""
    while open_count(admin) != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"triage never reported {expected} open connections")
        time.sleep(0.1)
    time.sleep(1.0)
    samples = []
    for _ in range(5):
        samples.append(load.rss_kib([proc.pid]))
        time.sleep(0.2)
    return statistics.median(samples)


def close_all(conns):
    for s in conns:
        try:
            s.close()
        except OSError:
            pass


def phase_run(triage_bin, origin_port, phase, all_cpus):
    deadline = time.monotonic() + PHASE_SECONDS
    port, admin = load.free_port(), load.free_port()
    conf = os.path.join(load.WORKDIR, f"triage-{phase.replace(' ', '-')}.toml")
    with open(conf, "w") as f:
        f.write(triage_conf(port, admin, origin_port))
    proc = load.Proc(f"triage-{phase.replace(' ', '-')}", [triage_bin, "-c", conf], all_cpus,
                     subprocess.DEVNULL, signal.SIGINT)
    try:
        load.wait_listening(port, proc)
        load.wait_listening(admin, proc)
        return measure(proc, port, admin, phase, deadline)
    finally:
        proc.stop()


def measure(proc, port, admin, phase, deadline):
    close_all(open_connections(port, WARMUP, phase, deadline))
    before = settled_rss(proc, admin, 0, deadline)
    conns = open_connections(port, CONNECTIONS, phase, deadline)
    try:
        held = settled_rss(proc, admin, CONNECTIONS, deadline)
    finally:
        close_all(conns)
    after = settled_rss(proc, admin, 0, deadline)
    # The same again: memory freed by the first round is reused, not added to.
    conns = open_connections(port, CONNECTIONS, phase, deadline)
    try:
        again = settled_rss(proc, admin, CONNECTIONS, deadline)
    finally:
        close_all(conns)
    per = (held - before) * 1024 / CONNECTIONS
    log(f"{phase}: before {before / 1024:.1f} MiB, {CONNECTIONS} open {held / 1024:.1f} MiB, "
        f"closed {after / 1024:.1f} MiB, open again {again / 1024:.1f} MiB: "
        f"{per / 1024:.1f} KiB per connection")
    return {"phase": phase, "before": before, "held": held, "after": after, "again": again,
            "per": per}


def render(results, started):
    lines = [
        f"Measured {started} on {os.cpu_count()} CPUs, {CONNECTIONS} connections held at once "
        "per phase, each against a fresh triage (release build, `[client]` defaults but the "
        "timeouts):",
        "",
        "| phase | VmRSS before | with the connections open | after they closed | open again | per connection |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['phase']} | {r['before'] / 1024:.1f} MiB | {r['held'] / 1024:.1f} MiB | "
            f"{r['after'] / 1024:.1f} MiB | {r['again'] / 1024:.1f} MiB | "
            f"{r['per'] / 1024:.1f} KiB |")
    return "\n".join(lines) + "\n"


def main(argv):
    if "--origin" in argv:
        origin_main(int(argv[argv.index("--origin") + 1]))
        return 0
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    unknown = [a for a in argv if a != "--update-readme"]
    if unknown:
        print(f"unknown arguments: {unknown}; see --help", file=sys.stderr)
        return 2
    # Two descriptors per connection on this side and triage's (client and, briefly, upstream).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * CONNECTIONS + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} < {wanted}: lower IDLE_CONNECTIONS")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))

    load.ensure_tools(("cmake", "cc", "taskset"))
    if os.environ.get("IDLE_NO_BUILD", "") in ("", "0"):
        log("cargo build --release --bin triage")
        subprocess.run(["cargo", "build", "--release", "--bin", "triage"], cwd=load.REPO, check=True)
    triage_bin = os.path.join(load.target_dir(), "release", "triage")
    if not os.path.exists(triage_bin):
        raise RuntimeError(f"{triage_bin} is missing: run without IDLE_NO_BUILD")

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load.WORKDIR = tempfile.mkdtemp(prefix="triage-idle-")
    all_cpus = f"0-{(os.cpu_count() or 1) - 1}"
    try:
        origin_port = load.free_port()
        origin = load.Proc("origin", [sys.executable, os.path.abspath(__file__), "--origin",
                                      str(origin_port)], all_cpus, subprocess.DEVNULL)
        load.wait_listening(origin_port, origin)
        results = [phase_run(triage_bin, origin_port, phase, all_cpus)
                   for phase in ("keep-alive", "fresh", "unfinished head")]
        table = render(results, started)
        print(table)
        if "--update-readme" in argv:
            load.update_readme(table, TABLE_START, TABLE_END)
        return 0
    finally:
        load.stop_all()
        shutil.rmtree(load.WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    load.run_main(main)
