#!/usr/bin/env python3
"""Load benchmark: triage against a direct connection, a bare Pingora proxy and nginx.

One command (see benches/README.md):

    python3 benches/load.py                   # full run: 3 rounds x 10 s per target and scenario
    BENCH_QUICK=1 python3 benches/load.py     # smoke run, under a minute once built

It installs wrk and nginx when they are missing, builds the release `triage` binary and the
`bare_pingora` example twice (on the vendored, patched Pingora, and on Pingora as crates.io
publishes it: benches/bare_pingora_unpatched), starts the origins and the proxies on 127.0.0.1 (free ports only), runs
every scenario against every target, and prints a markdown table. `--update-readme` (or
BENCH_UPDATE_README=1) also writes that table into benches/README.md.

How it measures, and why:

- Pinning. The proxy under test runs on one core (`taskset -c 0`) and the load generator and
  the origin on the other (`taskset -c 1`). Without pinning, wrk, the origin and the proxy
  fight for the same two cores and the numbers mostly measure the scheduler; pinned, the proxy
  owns a core, and its CPU time per request is its own. Every proxy has one worker (nginx
  `worker_processes 1`, Pingora's default `threads = 1`).
- Alternation. Each round runs every target once, A B C A B C ..., and the table shows the
  median over the rounds. Anything else happening on the machine (a compile, a cron job, CPU
  frequency changes) then hits every target alike instead of skewing whichever ran during it.
- CPU per request: utime + stime of the proxy's processes (/proc/PID/stat, clock ticks), before
  and after the run, divided by the requests wrk completed. RSS: VmRSS from /proc/PID/status,
  sampled during the run, the highest value (nginx: master + worker added up).
- Latency: wrk's own histogram (p50, p99), read through a Lua `done` hook that prints exact
  numbers instead of wrk's rounded text.
- Checks: before the runs each target is probed once per scenario (status and, for triage, the
  X-Diagnosis token), and every run's non-2xx count is checked against what the scenario must
  give, so a broken run (a proxy that answers 200 where the upstream is refused, or 502
  everywhere) is flagged in the table instead of producing good-looking numbers.

Everything listens on 127.0.0.1 only; every run is bounded by its duration (wrk -d) and every
process this script starts is stopped at the end, also on Ctrl-C, SIGTERM or an error.

Standard library only (Python 3.9+).
"""

import asyncio
import ctypes
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "benches", "README.md")
TABLE_START = "<!-- load-table:start -->"
TABLE_END = "<!-- load-table:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def log(msg):
    print(f"load: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Settings (all from the environment, so the one command stays one command)
# --------------------------------------------------------------------------------------------

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SETTINGS = {
    # Whole seconds (wrk takes no fractions) per measured run, rounds per scenario, warm-up
    # seconds per target before the first round (0: none).
    "duration": env_int("BENCH_DURATION", 1 if QUICK else 10),
    "rounds": env_int("BENCH_ROUNDS", 1 if QUICK else 3),
    "warmup": env_int("BENCH_WARMUP", 0 if QUICK else 2),
    # Before each measured run, wait at most this many seconds for the machine to be idle.
    "idle_wait": env_int("BENCH_IDLE_WAIT", 0 if QUICK else 10),
    # Client connections (wrk -c) in scenarios a-c, and in d (slow upstream).
    "connections": env_int("BENCH_CONNECTIONS", 50),
    "slow_connections": env_int("BENCH_SLOW_CONNECTIONS", 100),
    # Scenario d: the origin's delay and the proxies' upstream read timeout.
    "slow_delay_ms": env_int("BENCH_SLOW_DELAY_MS", 200),
    "slow_timeout_ms": env_int("BENCH_SLOW_TIMEOUT_MS", 250),
    # Scenario c: one request in this many goes to the refused upstream.
    "fail_every": env_int("BENCH_FAIL_EVERY", 10),
    # Scenario g: each wrk connection waits this long before each request, so every proxy gets
    # the same rate, well under what any of them can serve, and latency is not queueing.
    "pace_ms": env_int("BENCH_PACE_MS", 5),
    "proxy_cpu": os.environ.get("BENCH_PROXY_CPU", "0"),
    "load_cpu": os.environ.get("BENCH_LOAD_CPU", "1"),
}
SCENARIOS = [s for s in os.environ.get("BENCH_SCENARIOS", "success,paced,refused,mixed,slow,large,fastcgi").split(",") if s]
TARGETS = [t for t in os.environ.get("BENCH_TARGETS", "direct,nginx,bare,bare-nosteal,bare-patched,triage,triage-noaccess,triage-connect").split(",") if t]

# Scenario (e): the size of the origin's response body.
LARGE_BODY = 1 << 20

SCENARIO_TITLES = {
    "success": "(a) success, keepalive",
    "paced": f"(g) success at one rate for all: a request per connection every {SETTINGS['pace_ms']} ms",
    "refused": "(b) failure storm: upstream refused",
    "mixed": "(c) mixed: 1 request in 10 to a refused upstream",
    "slow": "(d) slow upstream near its timeout",
    "large": "(e) large response: 1 MiB body",
    "fastcgi": "(f) FastCGI: a tiny PHP script on php-fpm",
}
TARGET_TITLES = {
    "direct": "direct to origin",
    "nginx": "nginx",
    "bare": "bare Pingora",
    "bare-nosteal": "bare Pingora, work stealing off",
    "bare-patched": "bare Pingora with triage's patches, work stealing off",
    "triage": "triage",
    "triage-noaccess": "triage, access log off",
    "triage-connect": "triage, refused_holdoff off",
}

# Targets that differ from "triage" only in some scenarios run only in those: with the hold-off
# off, triage connects for every failed request, as nginx does; nothing else changes.
TARGET_SCENARIOS = {"triage-connect": {"refused", "mixed"}}
# The FastCGI scenario has no direct or bare-Pingora row: neither speaks FastCGI. nginx's
# fastcgi_pass and triage's protocol = "fastcgi" go to the same php-fpm.
SCENARIO_TARGETS = {"fastcgi": {"nginx", "triage", "triage-noaccess"}}


# --------------------------------------------------------------------------------------------
# Processes: started in their own process group, pinned, killed with the parent
# --------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    # If this script dies without running its cleanup (SIGKILL), the kernel kills the child.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Proc:
    """A child process started by the benchmark; `stop_signal` is its fast-shutdown signal."""

    def __init__(self, name, argv, cpu, stdout, stop_signal=signal.SIGTERM, stdin=subprocess.DEVNULL):
        self.name = name
        self.stop_signal = stop_signal
        self.argv = argv
        self.stderr_path = os.path.join(WORKDIR, f"{name}.stderr")
        with open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(
                ["taskset", "-c", cpu] + argv,
                stdin=stdin,
                stdout=stdout,
                stderr=err,
                start_new_session=True,
                preexec_fn=_child_setup,
                cwd=WORKDIR,
            )
        self.pid = self.popen.pid
        STARTED.append(self)

    def pids(self):
        """This process and its children (nginx's worker), for CPU and memory accounting."""
        pids = [self.pid]
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
        return pids

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (nginx workers included) goes now.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        if self in STARTED:
            STARTED.remove(self)


STARTED = []
WORKDIR = None


def stop_all():
    for proc in reversed(list(STARTED)):
        proc.stop()


def sweep_leftovers():
    """Stops what a previous run left behind when it was killed with SIGKILL (no cleanup ran):
    the kernel then kills its direct children (PR_SET_PDEATHSIG), but nginx's workers outlive
    their master. A work dir whose runner is gone marks them: every process still running in
    it (cwd) is that run's, and is killed, and the dir removed."""
    for workdir in glob.glob(os.path.join(tempfile.gettempdir(), "triage-load-*")):
        try:
            with open(os.path.join(workdir, "runner.pid")) as f:
                runner = int(f.read())
            with open(f"/proc/{runner}/cmdline", "rb") as f:
                if b"load.py" in f.read():
                    continue  # another run, still going
        except (OSError, ValueError):
            pass
        killed = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/cwd") == workdir:
                    os.kill(int(entry), signal.SIGKILL)
                    killed = True
                    log(f"killed pid {entry}, left over by a killed run in {workdir}")
            except OSError:
                pass
        if killed:  # (a dir kept with BENCH_KEEP by a run that ended normally stays)
            shutil.rmtree(workdir, ignore_errors=True)


def cpu_ticks(pids):
    return sum(cpu_split_ticks(pids))


def cpu_split_ticks(pids):
    """(user, system) clock ticks of these processes."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime (field 14)
            system += int(fields[12])  # stime (field 15)
        except (OSError, IndexError, ValueError):
            pass
    return user, system


def busy_ticks():
    """CPU time the whole machine (all cores) spent running processes, or lost to the
    hypervisor (steal), from /proc/stat. Interrupt and softirq time (loopback networking is
    mostly softirq) are left out: no process is charged for them, and they are not noise."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    return user + nice + system + steal


def wait_idle(limit):
    """Waits, at most `limit` seconds, until the machine is idle between runs (under 10% of a
    core busy over half a second), so another job's burst (a compile) does not land in a run."""
    if limit <= 0:
        time.sleep(0.3)  # let the previous run's connections close
        return 0.0
    deadline = time.monotonic() + limit
    while True:
        before = busy_ticks()
        time.sleep(0.5)
        busy = (busy_ticks() - before) / CLK_TCK / 0.5
        if busy < 0.1:
            return 0.0
        if time.monotonic() >= deadline:
            return busy


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_port():
    """A port where nothing listens, reserved for the whole run: a socket bound to it but not
    listening keeps anyone else from taking it, and connections to it are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    RESERVED.append(s)
    return s.getsockname()[1]


RESERVED = []


def wait_listening(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    detail = ""
    if proc is not None:
        with open(proc.stderr_path, "rb") as f:
            detail = f.read()[-2000:].decode(errors="replace")
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} ({proc.name if proc else '?'}) {detail}")


# --------------------------------------------------------------------------------------------
# Setup: tools and builds
# --------------------------------------------------------------------------------------------


def which(name):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


# The Debian package of each tool the benchmarks may need.
TOOL_PACKAGES = {"wrk": "wrk", "nginx": "nginx", "cmake": "cmake", "cc": "build-essential",
                 "taskset": "util-linux"}


def ensure_tools(tools=("wrk", "nginx", "cmake", "cc", "taskset")):
    """Installs wrk and nginx (and what building Pingora needs) from apt when missing; `tools`
    narrows that to the ones a benchmark uses (soak.py needs neither wrk nor nginx)."""
    wanted = [TOOL_PACKAGES[tool] for tool in tools if not which(tool)]
    if not wanted:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def candidate(pkg):
        out = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("Candidate:"):
                return line.split(":", 1)[1].strip() not in ("", "(none)")
        return False

    if not all(candidate(p) for p in wanted):
        log("apt-get update")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    if "nginx" in wanted and not candidate("nginx"):
        wanted[wanted.index("nginx")] = "nginx-light"
    # The nginx package starts a system nginx on port 80 on every interface when the init
    # system allows it; a policy-rc.d that says no keeps the install from starting anything.
    policy = "/usr/sbin/policy-rc.d"
    made_policy = False
    if os.geteuid() == 0 and not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# load.py: no service starts during its install\nexit 101\n")
        os.chmod(policy, 0o755)
        made_policy = True
    try:
        log(f"installing {' '.join(wanted)}")
        subprocess.run(
            sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + wanted,
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    finally:
        if made_policy:
            os.remove(policy)
    for tool in ("wrk", "nginx", "taskset"):
        if tool in tools and not which(tool):
            raise RuntimeError(f"{tool} is still missing after apt-get install")


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")


UNPATCHED_MANIFEST = os.path.join(REPO, "benches", "bare_pingora_unpatched", "Cargo.toml")


def unpatched_target_dir():
    return os.path.join(target_dir(), "bare-unpatched")


def build():
    """Builds triage, the bare_pingora example on the vendored (patched) Pingora, and the same
    example on Pingora as published (benches/bare_pingora_unpatched); returns the three paths."""
    if os.environ.get("BENCH_NO_BUILD", "") not in ("", "0"):
        log("BENCH_NO_BUILD set: using the binaries already built")
    else:
        # One cargo call for both: `cargo build --release` plus the example.
        args = ["build", "--release", "--bins", "--example", "bare_pingora"]
        log("cargo " + " ".join(args))
        subprocess.run(["cargo"] + args, cwd=REPO, check=True)
        # The baseline as everybody gets it: crates.io's Pingora, none of vendor/'s patches.
        args = ["build", "--release", "--manifest-path", UNPATCHED_MANIFEST,
                "--target-dir", unpatched_target_dir()]
        log("cargo " + " ".join(args))
        subprocess.run(["cargo"] + args, cwd=REPO, check=True)
    triage = os.path.join(target_dir(), "release", "triage")
    patched = os.path.join(target_dir(), "release", "examples", "bare_pingora")
    unpatched = os.path.join(unpatched_target_dir(), "release", "bare_pingora")
    for path in (triage, patched, unpatched):
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: run without BENCH_NO_BUILD")
    return triage, patched, unpatched


# --------------------------------------------------------------------------------------------
# The slow origin (scenario d): answers "ok" after a fixed delay, keep-alive, GET only
# --------------------------------------------------------------------------------------------


def slow_origin_main(port, delay_ms, max_seconds):
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
    delay = delay_ms / 1000.0

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(delay)
                writer.write(response)
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            try:
                # Bounded: it stops by itself even if nobody stops it.
                await asyncio.wait_for(server.serve_forever(), max_seconds)
            except asyncio.TimeoutError:
                pass

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def nginx_common(name):
    # Temp paths in the work dir: the packaged defaults (/var/lib/nginx) may not exist.
    return f"""
worker_processes 1;
daemon off;
pid {WORKDIR}/{name}.pid;
events {{ worker_connections 4096; }}
"""


def nginx_temp_paths(name):
    return "\n".join(
        f"    {kind}_temp_path {WORKDIR}/{name}-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def write_large_body(workdir):
    """Scenario (e)'s body, the origin's /large: 1 MiB served from a file (from the page cache
    after the first read)."""
    path = os.path.join(workdir, "large.bin")
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * (LARGE_BODY // 256))
    # Run as root, nginx's workers are `nobody`: the temp dir (0700) must let them through.
    os.chmod(workdir, 0o711)
    os.chmod(path, 0o644)


def origin_nginx_conf(port):
    """The origin: nginx answering "ok" from memory; /fail answers 502 itself (only the
    direct target asks for it, as the ceiling for the failure scenarios)."""
    return nginx_common("origin") + f"""
error_log {WORKDIR}/origin-error.log warn;
http {{
{nginx_temp_paths("origin")}
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain;
        location / {{ return 200 "ok\\n"; }}
        location /fail {{ return 502 "origin 502\\n"; }}
        location = /large {{ alias {WORKDIR}/large.bin; }}
    }}
}}
"""


def proxy_nginx_conf(port, origin, dead, slow, timeout_ms, fpm=None):
    """nginx as a reverse proxy, as one would deploy it: upstream keepalive (HTTP/1.1 and an
    empty Connection header, or nginx closes every upstream connection), one worker, and the
    default access log (combined format) on, to /dev/null like triage's stdout. The error log
    also goes to /dev/null: nginx writes a line for every refused connect, triage rate-limits
    its own, and both land in the same sink. max_fails=0: a single-server upstream is never
    marked down anyway, this only says so. keepalive 128 = Pingora's upstream pool size;
    keepalive_requests high on both sides so nginx does not close a connection every 1000
    requests, which Pingora never does."""
    return nginx_common("proxy") + f"""
error_log /dev/null error;
http {{
{nginx_temp_paths("proxy")}
    access_log /dev/null combined;
    keepalive_requests 1000000;
    upstream origin {{ server 127.0.0.1:{origin} max_fails=0; keepalive 128; keepalive_requests 1000000; }}
    upstream dead {{ server 127.0.0.1:{dead} max_fails=0; keepalive 128; }}
    upstream slow {{ server 127.0.0.1:{slow} max_fails=0; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / {{ proxy_pass http://origin; }}
        location /fail {{ proxy_pass http://dead; }}
        location /slow {{ proxy_pass http://slow; proxy_read_timeout {timeout_ms}ms; }}
{fastcgi_location(fpm)}
    }}
}}
"""


def fastcgi_location(fpm):
    """nginx's usual PHP setup (`fastcgi_pass` with Debian's `fastcgi_params`, as its
    snippets/fastcgi-php.conf has it) to the benchmark's php-fpm, or nothing without one."""
    if fpm is None:
        return ""
    params = "include /etc/nginx/fastcgi_params;" if os.path.exists("/etc/nginx/fastcgi_params") \
        else " ".join(f"fastcgi_param {k} {v};" for k, v in FASTCGI_PARAMS)
    return (f"        location /php/ {{ root {fpm['root']}; {params} "
            f"fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name; "
            f"fastcgi_pass 127.0.0.1:{fpm['port']}; }}")


# What Debian's /etc/nginx/fastcgi_params sets, when that file is not there.
FASTCGI_PARAMS = [
    ("QUERY_STRING", "$query_string"), ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"), ("CONTENT_LENGTH", "$content_length"),
    ("SCRIPT_NAME", "$fastcgi_script_name"), ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"), ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"), ("REQUEST_SCHEME", "$scheme"),
    ("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_SOFTWARE", "nginx"),
    ("REMOTE_ADDR", "$remote_addr"), ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"), ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"), ("REDIRECT_STATUS", "200"),
]


def php_fpm_binary():
    for name in ("php-fpm8.2", "php-fpm"):
        path = which(name)
        if path:
            return path
    found = sorted(glob.glob("/usr/sbin/php-fpm*"))
    return found[0] if found else None


def start_php_fpm(port, workers=4):
    """php-fpm in the foreground with one static pool on 127.0.0.1:port, no php.ini, serving
    WORKDIR/php-root; returns (Proc, root) or None when php-fpm is not installed."""
    binary = php_fpm_binary()
    if binary is None:
        return None
    root = os.path.join(WORKDIR, "php-root")
    os.makedirs(os.path.join(root, "php"), exist_ok=True)
    with open(os.path.join(root, "php", "hello.php"), "w") as f:
        f.write('<?php echo "ok\\n";\n')
    as_root = os.geteuid() == 0
    conf = os.path.join(WORKDIR, "php-fpm.conf")
    with open(conf, "w") as f:
        f.write(f"[global]\npid = {WORKDIR}/fpm.pid\nerror_log = {WORKDIR}/fpm.log\ndaemonize = no\n"
                f"[bench]\nlisten = 127.0.0.1:{port}\nlisten.backlog = 4096\npm = static\n"
                f"pm.max_children = {workers}\n"
                + ("user = root\ngroup = root\n" if as_root else ""))
    argv = [binary, "-F", "-n", "-y", conf, "-p", WORKDIR] + (["-R"] if as_root else [])
    proc = Proc("php-fpm", argv, SETTINGS["load_cpu"], subprocess.DEVNULL, signal.SIGQUIT)
    wait_listening(port, proc)
    return proc, root


def triage_conf(port, admin, origin, dead, slow, timeout_ms, access, holdoff=True, fpm=None):
    """triage as shipped (conf/triage.toml defaults), only the addresses filled in; with
    access = false for the second triage row, and refused_holdoff off for the third."""
    return f"""
[listen]
http = ["127.0.0.1:{port}"]

# One worker, like nginx's worker_processes 1 and bare Pingora; work_stealing stays at its
# default (off).
[server]
threads = 1

[admin]
listen = "127.0.0.1:{admin}"

[log]
access = {"true" if access else "false"}

[upstreams.origin]
servers = ["127.0.0.1:{origin}"]

[upstreams.dead]
servers = ["127.0.0.1:{dead}"]
{"" if holdoff else 'refused_holdoff = "off"'}

[upstreams.slow]
servers = ["127.0.0.1:{slow}"]
read_timeout = "{timeout_ms}ms"

[[routes]]
path_prefix = "/"
upstream = "origin"

[[routes]]
path_prefix = "/fail"
upstream = "dead"

[[routes]]
path_prefix = "/slow"
upstream = "slow"
""" + ("" if fpm is None else f"""
[upstreams.php]
servers = ["127.0.0.1:{fpm['port']}"]
protocol = "fastcgi"
root = "{fpm['root']}"

[[routes]]
path_prefix = "/php/"
upstream = "php"
""")


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

DONE_HOOK = r"""
function done(summary, latency, requests)
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

MIXED_HOOK = r"""
-- One request in FAIL_EVERY goes to /fail/ (a refused upstream behind every proxy).
local n = 0
local ok_req, fail_req
function init(args)
  ok_req = wrk.format(nil, "/")
  fail_req = wrk.format(nil, "/fail/")
end
function request()
  n = n + 1
  if n % FAIL_EVERY == 0 then return fail_req end
  return ok_req
end
"""


PACED_HOOK = r"""
-- Every connection waits PACE_MS before each request: the same offered rate for every proxy.
function delay()
  return PACE_MS
end
"""


def scenario_path(scenario):
    return {"success": "/", "paced": "/", "refused": "/fail/", "mixed": "/", "slow": "/slow/",
            "large": "/large", "fastcgi": "/php/hello.php"}[scenario]


def write_script(scenario):
    path = os.path.join(WORKDIR, f"{scenario}.lua")
    text = DONE_HOOK
    if scenario == "mixed":
        text = MIXED_HOOK.replace("FAIL_EVERY", str(SETTINGS["fail_every"])) + text
    if scenario == "paced":
        text = PACED_HOOK.replace("PACE_MS", str(SETTINGS["pace_ms"])) + text
    with open(path, "w") as f:
        f.write(text)
    return path


def expected_failure_share(scenario):
    """The share of non-2xx responses a correct run gives: (low, high)."""
    if scenario in ("success", "paced", "large", "fastcgi"):
        return (0.0, 0.0)
    if scenario == "refused":
        return (1.0, 1.0)
    if scenario == "mixed":
        share = 1.0 / SETTINGS["fail_every"]
        return (share * 0.9, share * 1.1)
    # Slow: the delay is below the timeout, so any 504 is a spurious timeout; reported, and
    # flagged only past 1%.
    return (0.0, 0.01)


# --------------------------------------------------------------------------------------------
# Targets: how to start each one for a scenario
# --------------------------------------------------------------------------------------------


class Target:
    def __init__(self, name, port, proc, admin=None):
        self.name = name
        self.port = port
        self.proc = proc
        self.admin = admin  # triage's admin port, for /metrics


def failures_counted(target):
    """triage's count of connect_refused failures so far, from /metrics; None for others."""
    if target.admin is None:
        return None
    conn = http.client.HTTPConnection("127.0.0.1", target.admin, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("triage_upstream_failures_total{")
               and 'diagnosis="connect_refused"' in line)


def start_target(name, scenario, ports, binaries):
    """Starts `name` in front of the origins, pinned to the proxy CPU; returns a Target (no
    process for direct)."""
    triage_bin, patched_bin, unpatched_bin = binaries
    cpu = SETTINGS["proxy_cpu"]
    timeout_ms = SETTINGS["slow_timeout_ms"]
    if name == "direct":
        return Target(name, None, None)
    port = free_port()
    if name == "nginx":
        conf = os.path.join(WORKDIR, "proxy-nginx.conf")
        with open(conf, "w") as f:
            f.write(proxy_nginx_conf(port, ports["origin"], ports["dead"], ports["slow"], timeout_ms,
                                     ports.get("fpm")))
        proc = Proc("nginx-proxy", [which("nginx"), "-e", "stderr", "-p", WORKDIR, "-c", conf], cpu,
                    subprocess.DEVNULL, signal.SIGTERM)
    elif name in ("bare", "bare-nosteal", "bare-patched"):
        # It has no routes: one upstream per start, the scenario's, plus the /fail prefix to the
        # refused port for the mixed scenario.
        upstream = ports["dead"] if scenario == "refused" else ports["slow"] if scenario == "slow" \
            else ports["origin"]
        binary = patched_bin if name == "bare-patched" else unpatched_bin
        argv = [binary, f"127.0.0.1:{port}", f"127.0.0.1:{upstream}"]
        if scenario == "mixed":
            argv += ["--fail-upstream", f"127.0.0.1:{ports['dead']}"]
        if scenario == "slow":
            argv += ["--read-timeout-ms", str(timeout_ms)]
        if name in ("bare-nosteal", "bare-patched"):
            argv += ["--no-work-stealing"]
        proc = Proc(name, argv, cpu, subprocess.DEVNULL, signal.SIGINT)
    elif name in ("triage", "triage-noaccess", "triage-connect"):
        conf = os.path.join(WORKDIR, f"{name}.toml")
        admin = free_port()
        with open(conf, "w") as f:
            f.write(triage_conf(port, admin, ports["origin"], ports["dead"], ports["slow"],
                                timeout_ms, access=(name != "triage-noaccess"),
                                holdoff=(name != "triage-connect"), fpm=ports.get("fpm")))
        # stdout (the access log and error lines) to /dev/null: the cost of formatting and
        # writing every line is measured, not the disk's.
        proc = Proc(name, [triage_bin, "-c", conf], cpu, subprocess.DEVNULL, signal.SIGINT)
    else:
        raise RuntimeError(f"unknown target {name}")
    wait_listening(port, proc)
    return Target(name, port, proc, admin if name.startswith("triage") else None)


def target_url(target, scenario, ports):
    if target.name == "direct":
        port = ports["slow"] if scenario == "slow" else ports["origin"]
        path = "/" if scenario == "slow" else scenario_path(scenario)
        return f"http://127.0.0.1:{port}{path}"
    return f"http://127.0.0.1:{target.port}{scenario_path(scenario)}"


def probe(target, scenario, ports):
    """One request per path the scenario uses; returns a short description, or raises when the
    answer is not what the scenario needs (so a misconfigured run never reaches the table)."""
    url = target_url(target, scenario, ports)
    port = int(url.split(":")[2].split("/")[0])
    paths = [url.split(str(port), 1)[1]]
    if scenario == "mixed":
        paths.append("/fail/")
    seen = []
    for path in paths:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            diagnosis = resp.getheader("x-diagnosis")
        finally:
            conn.close()
        want_fail = path.startswith("/fail")
        ok = (status >= 500) if want_fail else (status == 200)
        if ok and scenario == "large":
            # The whole body through, not a truncated or buffered-and-dropped one.
            ok = len(body) == LARGE_BODY
        if ok and target.name.startswith("triage") and want_fail:
            ok = diagnosis == "connect_refused"
        seen.append(f"{path} {status}" + (f" {diagnosis}" if diagnosis else ""))
        if not ok:
            raise RuntimeError(f"{target.name} {scenario}: GET {path} answered {status} "
                               f"(x-diagnosis {diagnosis}), not what the scenario needs")
    return ", ".join(seen)


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def run_wrk(target, scenario, ports, origin_procs, duration):
    connections = SETTINGS["slow_connections"] if scenario == "slow" else SETTINGS["connections"]
    script = os.path.join(WORKDIR, f"{scenario}.lua")
    url = target_url(target, scenario, ports)
    out_path = os.path.join(WORKDIR, f"wrk-{scenario}-{target.name}.out")
    argv = ["taskset", "-c", SETTINGS["load_cpu"], which("wrk"), "-t1", f"-c{connections}",
            f"-d{max(int(duration), 1)}s", "--latency", "-s", script, url]
    proxy_pids = target.proc.pids() if target.proc else []
    origin_pids = [p for proc in origin_procs for p in proc.pids()]

    rss_max = [0]
    stop = threading.Event()

    def sample_rss():
        while not stop.wait(0.25):
            rss_max[0] = max(rss_max[0], rss_kib(proxy_pids))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    counted0 = failures_counted(target)
    split0 = cpu_split_ticks(proxy_pids)
    proxy0, origin0, busy0 = sum(split0), cpu_ticks(origin_pids), busy_ticks()
    sampler.start()
    with open(out_path, "wb") as out:
        wrk = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_child_setup)
        try:
            # wait4 gives wrk's own CPU time (the load generator's side of the budget).
            _, status, usage = os.wait4(wrk.pid, 0)
            wrk.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            wrk.kill()
            wrk.wait()
            raise
    stop.set()
    sampler.join()
    split1 = cpu_split_ticks(proxy_pids)
    proxy1, origin1, busy1 = sum(split1), cpu_ticks(origin_pids), busy_ticks()
    rss_max[0] = max(rss_max[0], rss_kib(proxy_pids))
    counted1 = failures_counted(target)
    with open(out_path) as f:
        text = f.read()
    line = next((l for l in text.splitlines() if l.startswith("BENCH ")), None)
    if wrk.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({wrk.returncode}) for {target.name} {scenario}:\n{text}")
    fields = dict(kv.split("=") for kv in line.split()[1:])
    r = {k: int(v) for k, v in fields.items()}
    seconds = r["duration_us"] / 1e6
    requests = max(r["requests"], 1)
    load_cpu_s = usage.ru_utime + usage.ru_stime + (origin1 - origin0) / CLK_TCK
    # What the machine's processes spent beyond the proxy, wrk and the origin: anything else
    # running (a compile, another job on the same cores). The noise indicator.
    other_cpu_s = (busy1 - busy0 - (proxy1 - proxy0) - (origin1 - origin0)) / CLK_TCK \
        - (usage.ru_utime + usage.ru_stime)
    return {
        "rps": r["requests"] / seconds,
        "p50_ms": r["p50_us"] / 1000.0,
        "p99_ms": r["p99_us"] / 1000.0,
        "requests": r["requests"],
        "non2xx": r["status"],
        "socket_errors": r["connect"] + r["read"] + r["write"] + r["timeout"],
        "cpu_us": ((proxy1 - proxy0) / CLK_TCK * 1e6 / requests) if target.proc else None,
        # The same split into user and kernel time (the progress line shows it).
        "user_us": ((split1[0] - split0[0]) / CLK_TCK * 1e6 / requests) if target.proc else None,
        "system_us": ((split1[1] - split0[1]) / CLK_TCK * 1e6 / requests) if target.proc else None,
        "proxy_core": ((proxy1 - proxy0) / CLK_TCK / seconds) if target.proc else None,
        "load_core": load_cpu_s / seconds,
        "other_core": max(other_cpu_s, 0.0) / seconds,
        "rss_mib": (rss_max[0] / 1024.0) if target.proc else None,
        # Failures triage counted in its metrics during the run (every 502 of this run is a
        # connect_refused, so this must reach non2xx).
        "counted": None if counted0 is None else counted1 - counted0,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    s = {k: median([r[k] for r in runs]) for k in
         ("rps", "p50_ms", "p99_ms", "cpu_us", "user_us", "system_us", "proxy_core", "load_core",
          "other_core", "rss_mib")}
    rps = [r["rps"] for r in runs]
    s["spread"] = (max(rps) - min(rps)) / s["rps"] if len(rps) > 1 and s["rps"] else None
    s["requests"] = sum(r["requests"] for r in runs)
    s["non2xx"] = sum(r["non2xx"] for r in runs)
    s["socket_errors"] = sum(r["socket_errors"] for r in runs)
    counted = [r["counted"] for r in runs]
    s["counted"] = None if None in counted else sum(counted)
    return s


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def check(scenario, target, s):
    """'ok', or what is wrong with the run, from the share of non-2xx answers."""
    low, high = expected_failure_share(scenario)
    if target == "direct" and scenario == "slow":
        low, high = 0.0, 0.0
    share = s["non2xx"] / s["requests"] if s["requests"] else 0.0
    problems = []
    if not (low - 1e-9 <= share <= high + 1e-9):
        problems.append(f"non-2xx {share:.1%}, expected {low:.0%}" +
                        ("" if low == high else f"–{high:.0%}"))
    if s["socket_errors"] > 0.001 * s["requests"]:
        problems.append(f"{s['socket_errors']} socket errors")
    if s.get("counted") is not None and s["counted"] < s["non2xx"]:
        problems.append(f"only {s['counted']:,.0f} of {s['non2xx']:,} failures counted in /metrics")
    if s["other_core"] is not None and s["other_core"] > 0.15:
        problems.append("noisy: other processes were running")
    return "ok" if not problems else "**" + "; ".join(problems) + "**"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "—"


def machine_info():
    def run(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True)
            # nginx -v and wrk -v print to stderr, wrk -v exits 1.
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, TypeError):  # TypeError: the tool is not installed
            return "?"

    model, mhz = "?", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and not mhz:
                mhz = f" @ {float(line.split(':', 1)[1]):.0f} MHz"
    model += mhz
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    distro = "?"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    pingora = "?"
    lock = os.path.join(REPO, "Cargo.lock")
    if os.path.exists(lock):
        with open(lock) as f:
            text = f.read()
        marker = 'name = "pingora"\nversion = "'
        if marker in text:
            pingora = text.split(marker, 1)[1].split('"', 1)[0]
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True)
    commit = git.stdout.strip() if git.returncode == 0 else "(not a git checkout)"
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpu": f"{os.cpu_count()} × {model}",
        "memory": f"{mem_gib:.0f} GiB",
        "os": f"{distro}, kernel {os.uname().release}",
        "nginx": run([which("nginx"), "-v"]).replace("nginx version: ", ""),
        "wrk": run([which("wrk"), "-v"]).split(" [")[0],
        "rustc": run(["rustc", "--version"]),
        "pingora": pingora,
        "triage": commit + (" (with uncommitted changes in src/)" if dirty else ""),
    }


def render(results, info, started, load_before, load_after):
    st = SETTINGS
    lines = []
    lines.append(f"Run {started} on {info['cpu']}, {info['memory']}; {info['os']}.  ")
    lines.append(f"{info['nginx']}, {info['wrk']}, {info['rustc']}, Pingora {info['pingora']}, "
                 f"triage {info['triage']}.  ")
    lines.append(f"{st['rounds']} rounds × {st['duration']:g} s per target (medians), alternating; "
                 f"wrk -t1 -c{st['connections']} (slow scenario -c{st['slow_connections']}); "
                 f"proxy on CPU {st['proxy_cpu']}, wrk and origin on CPU {st['load_cpu']}. "
                 f"Load average before/after: {load_before} / {load_after}.")
    lines.append("")
    for scenario in SCENARIOS:
        if scenario not in results:
            continue
        lines.append(f"**{SCENARIO_TITLES[scenario]}**")
        lines.append("")
        lines.append("| target | req/s | spread | p50 ms | p99 ms | proxy CPU µs/req | proxy core | RSS MiB | "
                     "generator core | other CPU | non-2xx | check |")
        lines.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for target in TARGETS:
            s = results[scenario].get(target)
            if s is None:
                continue
            share = s["non2xx"] / s["requests"] if s["requests"] else 0
            lines.append(
                f"| {TARGET_TITLES[target]} | {fmt(s['rps'])} | {fmt(s['spread'] and s['spread'] * 100, 0, '%')} | "
                f"{fmt(s['p50_ms'], 2)} | {fmt(s['p99_ms'], 2)} | {fmt(s['cpu_us'], 1)} | "
                f"{fmt(s['proxy_core'] and s['proxy_core'] * 100, 0, '%')} | {fmt(s['rss_mib'], 1)} | "
                f"{fmt(s['load_core'] * 100, 0, '%')} | {fmt(s['other_core'] * 100, 0, '%')} | {share:.1%} | {check(scenario, target, s)} |")
        lines.append("")
    lines.append("**Ratios** (triage with its default access log; req/s above 1: triage is faster; "
                 "CPU and p99 above 1: triage costs more)")
    lines.append("")
    lines.append("| scenario | req/s triage/nginx | req/s triage/bare | req/s triage/direct | "
                 "CPU/req triage/nginx | CPU/req triage/bare | CPU/req triage/bare (same runtime) | "
                 "CPU/req triage/bare with triage's patches (same runtime) | "
                 "p99 triage/nginx | p99 triage/bare | p99 triage/direct | "
                 "req/s triage, refused_holdoff off/nginx |")
    lines.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for scenario in SCENARIOS:
        res = results.get(scenario, {})
        t = res.get("triage")
        if t is None:
            continue
        n, b, d = res.get("nginx"), res.get("bare"), res.get("direct")
        bs, bp = res.get("bare-nosteal"), res.get("bare-patched")
        tc = res.get("triage-connect")
        g = lambda s, k: s[k] if s else None  # noqa: E731
        lines.append(
            f"| {SCENARIO_TITLES[scenario].split(' ', 1)[0]} | {ratio(t['rps'], g(n, 'rps'))} | "
            f"{ratio(t['rps'], g(b, 'rps'))} | {ratio(t['rps'], g(d, 'rps'))} | "
            f"{ratio(t['cpu_us'], g(n, 'cpu_us'))} | {ratio(t['cpu_us'], g(b, 'cpu_us'))} | "
            f"{ratio(t['cpu_us'], g(bs, 'cpu_us'))} | {ratio(t['cpu_us'], g(bp, 'cpu_us'))} | "
            f"{ratio(t['p99_ms'], g(n, 'p99_ms'))} | {ratio(t['p99_ms'], g(b, 'p99_ms'))} | "
            f"{ratio(t['p99_ms'], g(d, 'p99_ms'))} | "
            f"{ratio(g(tc, 'rps'), g(n, 'rps'))} |")
    return "\n".join(lines) + "\n"


def update_readme(table, start=TABLE_START, end=TABLE_END):
    """Replaces what benches/README.md has between the markers `start` and `end`."""
    with open(README) as f:
        text = f.read()
    if start not in text or end not in text:
        raise RuntimeError(f"{README} has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(README, "w") as f:
        f.write(head + start + "\n" + table + end + tail)
    log(f"table written into {README}")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv):
    global WORKDIR
    if "--slow-origin" in argv:
        i = argv.index("--slow-origin")
        slow_origin_main(int(argv[i + 1]), int(argv[i + 2]), float(argv[i + 3]))
        return 0
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    unknown = [a for a in argv if a not in ("--update-readme", "--quick")]
    if unknown:
        print(f"unknown arguments: {unknown}; see --help", file=sys.stderr)
        return 2
    global QUICK
    if "--quick" in argv and not QUICK:
        # Same as BENCH_QUICK=1; explicit BENCH_* values still win.
        QUICK = True
        SETTINGS["duration"] = env_int("BENCH_DURATION", 1)
        SETTINGS["rounds"] = env_int("BENCH_ROUNDS", 1)
        SETTINGS["warmup"] = env_int("BENCH_WARMUP", 0)
        SETTINGS["idle_wait"] = env_int("BENCH_IDLE_WAIT", 0)
    update = "--update-readme" in argv or os.environ.get("BENCH_UPDATE_README", "") not in ("", "0")
    for s in SCENARIOS:
        if s not in SCENARIO_TITLES:
            raise RuntimeError(f"unknown scenario {s}; known: {', '.join(SCENARIO_TITLES)}")
    for t in TARGETS:
        if t not in TARGET_TITLES:
            raise RuntimeError(f"unknown target {t}; known: {', '.join(TARGET_TITLES)}")
    if (os.cpu_count() or 1) < 2:
        log("warning: one CPU only; proxy and load generator share it")
        SETTINGS["proxy_cpu"] = SETTINGS["load_cpu"] = "0"

    ensure_tools()
    binaries = build()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = loadavg()
    # The load average still remembers the build; what matters is whether the cores are idle now.
    busy0 = busy_ticks()
    time.sleep(2)
    idle_busy = (busy_ticks() - busy0) / CLK_TCK / 2
    if idle_busy > 0.1:
        log(f"warning: before the first run the machine was already using {idle_busy:.0%} of a core "
            "(a compile?): the numbers will be noisy; see the 'other CPU' column")

    sweep_leftovers()
    WORKDIR = tempfile.mkdtemp(prefix="triage-load-")
    with open(os.path.join(WORKDIR, "runner.pid"), "w") as f:
        f.write(str(os.getpid()))
    try:
        ports = {"origin": free_port(), "slow": free_port(), "dead": refused_port()}
        with open(os.path.join(WORKDIR, "origin.conf"), "w") as f:
            f.write(origin_nginx_conf(ports["origin"]))
        write_large_body(WORKDIR)
        origin = Proc("nginx-origin", [which("nginx"), "-e", "stderr", "-p", WORKDIR, "-c",
                                       os.path.join(WORKDIR, "origin.conf")],
                      SETTINGS["load_cpu"], subprocess.DEVNULL, signal.SIGTERM)
        wait_listening(ports["origin"], origin)
        # Bounded lifetime: the whole benchmark's worst case plus margin.
        budget = 600 + len(SCENARIOS) * len(TARGETS) * (
            SETTINGS["rounds"] * (SETTINGS["duration"] + SETTINGS["idle_wait"] + 2)
            + SETTINGS["warmup"] + 30)
        slow = Proc("slow-origin", [sys.executable, os.path.abspath(__file__), "--slow-origin",
                                    str(ports["slow"]), str(SETTINGS["slow_delay_ms"]), str(budget)],
                    SETTINGS["load_cpu"], subprocess.DEVNULL, signal.SIGTERM)
        wait_listening(ports["slow"], slow)
        fpm_procs = []
        if "fastcgi" in SCENARIOS:
            fpm_port = free_port()
            started_fpm = start_php_fpm(fpm_port)
            if started_fpm is None:
                log("php-fpm is not installed (scripts/setup.sh installs it): no FastCGI rows")
                SCENARIOS.remove("fastcgi")
            else:
                fpm_procs = [started_fpm[0]]
                ports["fpm"] = {"port": fpm_port, "root": started_fpm[1]}

        results = {}
        for scenario in SCENARIOS:
            write_script(scenario)
            origin_procs = [slow] if scenario == "slow" else fpm_procs if scenario == "fastcgi" \
                else [origin]
            targets = []
            try:
                for name in TARGETS:
                    if scenario in TARGET_SCENARIOS.get(name, {scenario}) \
                            and name in SCENARIO_TARGETS.get(scenario, {name}):
                        targets.append(start_target(name, scenario, ports, binaries))
                for target in targets:
                    log(f"{scenario}: probe {target.name}: {probe(target, scenario, ports)}")
                    # Warm-up: pools filled, caches and allocators settled; not measured.
                    if SETTINGS["warmup"] > 0:
                        run_wrk(target, scenario, ports, origin_procs, SETTINGS["warmup"])
                runs = {t.name: [] for t in targets}
                for round_no in range(SETTINGS["rounds"]):
                    for target in targets:
                        busy = wait_idle(SETTINGS["idle_wait"])
                        if busy:
                            log(f"machine still busy ({busy:.0%} of a core) after "
                                f"{SETTINGS['idle_wait']} s; running anyway")
                        r = run_wrk(target, scenario, ports, origin_procs, SETTINGS["duration"])
                        runs[target.name].append(r)
                        log(f"{scenario} round {round_no + 1}/{SETTINGS['rounds']} {target.name}: "
                            f"{r['rps']:,.0f} req/s, p99 {r['p99_ms']:.2f} ms, "
                            f"cpu {fmt(r['cpu_us'], 1)} µs/req (user {fmt(r['user_us'], 1)}, "
                            f"system {fmt(r['system_us'], 1)}), non-2xx {r['non2xx']}/{r['requests']}, "
                            f"other CPU {r['other_core']:.0%}")
                results[scenario] = {name: summarize(rs) for name, rs in runs.items()}
            finally:
                for target in targets:
                    if target.proc:
                        target.proc.stop()
        table = render(results, machine_info(), started, load_before, loadavg())
        print(table)
        if update:
            update_readme(table)
        with open(os.path.join(WORKDIR, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        return 0
    finally:
        stop_all()
        for s in RESERVED:
            s.close()
        if os.environ.get("BENCH_KEEP", "") in ("", "0"):
            shutil.rmtree(WORKDIR, ignore_errors=True)
        else:
            log(f"kept the work dir (configs, wrk output): {WORKDIR}")


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main_function):
    """Runs a benchmark's main with SIGTERM and SIGHUP stopping it like Ctrl-C (everything it
    started is stopped on the way out), and exits with its status."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main_function(sys.argv[1:]))
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        sys.exit(130)


if __name__ == "__main__":
    run_main(main)
