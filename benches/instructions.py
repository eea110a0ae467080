#!/usr/bin/env python3
"""Instructions per request, counted by callgrind: nginx, bare Pingora and triage.

    python3 benches/instructions.py                  # every target, success and refused
    python3 benches/instructions.py triage bare      # only those targets
    INSTR_REQUESTS=2000 python3 benches/instructions.py
    INSTR_BREAKDOWN=1 python3 benches/instructions.py   # and where a request's instructions go, by component

CPU time on a shared 2-core VM is noisy; instruction counts are not. Each proxy runs under
`valgrind --tool=callgrind --separate-threads=yes` (the origin, nginx answering "ok" from
memory, runs natively) and gets N sequential requests on one keep-alive connection, then is
stopped; this is done twice, with N1 and N2 requests, and the instructions of the proxy's
busiest thread (the one worker, where every request runs) are subtracted:
(I(N2) - I(N1)) / (N2 - N1) is what one more request costs, free of start-up, shutdown and
the once-a-second background samplers, which run on other threads. The table also gives the
whole process's per-request difference, background threads included, for reference.

Scenarios, the same as load.py's (a) and (b):
- success: `GET /` proxied to the origin over a pooled upstream connection.
- refused: `GET /fail/` to a port where nothing listens. For triage twice: as shipped
  (`refused_holdoff` on: a connect at most every 100 ms, the rest answered from that refusal)
  and with `refused_holdoff = "off"` (a connect per request, as nginx and bare Pingora do).

The proxies are configured exactly as in load.py (its config functions are reused); nginx
runs with `master_process off` so that one process does everything. User-space instructions
only: the kernel's share is counted with `strace -c` (benches/README.md).

Everything listens on 127.0.0.1; every process started is stopped at the end.
Standard library only (Python 3.9+), plus valgrind (installed when missing).
"""

import glob
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the load benchmark's builders, configs and process handling)

N1 = int(os.environ.get("INSTR_REQUESTS_LOW", "500"))
N2 = int(os.environ.get("INSTR_REQUESTS", "2500"))
# The scenarios to count, of success, refused and large (load.py's (e): a 1 MiB body, whose
# cost is the copy path: fewer requests, INSTR_LARGE_LOW and INSTR_LARGE).
SCENARIOS = os.environ.get("INSTR_SCENARIOS", "success,refused").split(",")
SCENARIO_PATHS = {"success": "/", "refused": "/fail/", "large": "/large"}
LARGE_COUNTS = (int(os.environ.get("INSTR_LARGE_LOW", "20")),
                int(os.environ.get("INSTR_LARGE", "100")))
BREAKDOWN = os.environ.get("INSTR_BREAKDOWN", "") not in ("", "0")

# Components of a request's cost, matched in order against each function's name (the first
# match wins): the worker thread's self cost per function, grouped, is where its instructions
# go. Inlined code counts where it was inlined, as callgrind attributes it.
COMPONENTS = [
    ("memcpy, memmove, memset, memcmp (libc)", r"\bmem(cpy|move|set|cmp)|__mem(cpy|move|set|cmp)|\bbcmp"),
    ("allocator (mimalloc or glibc malloc, Rust's growth of Vec and String)",
     r"\bmi_|_mi_|mimalloc|malloc|\bfree\b|cfree|_int_free|tcache|__rust_|alloc::alloc|raw_vec|"
     r"finish_grow|grow_one|realloc"),
    ("http crate: header maps and names", r"^<?http::"),
    ("pingora-http: request and response headers", r"pingora_http"),
    ("httparse", r"httparse"),
    ("pingora-core: HTTP/1 sessions", r"pingora_core::protocols::http"),
    ("pingora-core: streams, connectors, pool, apps", r"pingora_core|pingora_pool"),
    ("pingora-proxy", r"pingora_proxy"),
    ("pingora-timeout", r"pingora_timeout"),
    ("tokio", r"tokio"),
    ("bytes", r"^<?bytes::"),
    ("clock reads", r"Timespec|clock_gettime|Instant|SystemTime|__vdso"),
    ("triage", r"triage"),
    ("nginx (its own functions)", r"^ngx_|^0x[0-9a-f]+ \[.*/nginx\]"),
    ("libc: system call wrappers", r"recv|send|epoll|writev?\b|readv?\b|syscall|__libc"),
]


def self_cost(path):
    """Self instructions per function in one callgrind file, by function name."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S+?):(.*?)(\s+\[.*\])?$", line)
        if m:
            name = m.group(3).strip()
            if re.fullmatch(r"0x[0-9a-f]+", name) and m.group(4):
                # A stripped binary's function has only its address: keep its object's name.
                name += m.group(4)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def breakdown(worker_files, counts):
    """The worker's instructions per request, by component: the per-function difference
    between the two runs' worker files, grouped by `COMPONENTS` (the rest is "other")."""
    (c1, f1), (c2, f2) = zip(counts, worker_files)
    a, b = self_cost(f1), self_cost(f2)
    by_component = {}
    for name in set(a) | set(b):
        component = next((label for label, pattern in COMPONENTS if re.search(pattern, name)),
                         "other")
        by_component[component] = by_component.get(component, 0) + b.get(name, 0) - a.get(name, 0)
    return {k: v / (c2 - c1) for k, v in by_component.items()}


def request_loop(port, path, count, timeout=120.0):
    """Sends `count` GETs, reading each whole response, on one keep-alive connection as long
    as the proxy keeps it (a proxy that closes after an error page, as bare Pingora does, gets
    a new connection for the next request, as a browser would); returns the statuses seen and
    the connections opened. Bounded: each read waits at most `timeout`."""
    statuses = {}
    connections = 0
    request = f"GET {path} HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: instructions\r\n\r\n".encode()
    sock = None
    for _ in range(count):
        for attempt in (1, 2):
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                connections += 1
            try:
                status, keep = read_response(sock, request)
                break
            except (ConnectionError, EOFError):
                sock.close()
                sock = None
                if attempt == 2:
                    raise
        statuses[status] = statuses.get(status, 0) + 1
        if not keep:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return statuses, connections


def read_response(sock, request):
    """One request and its whole response (Content-Length framed); returns the status and
    whether the connection stays open."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the proxy closed the connection")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    keep = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise RuntimeError("chunked response: not expected here")
        elif name == b"connection" and value == b"close":
            keep = False
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the proxy closed the connection mid-body")
        buf += chunk
    if len(buf) != length:
        raise RuntimeError("more bytes than the response's Content-Length")
    return status, keep


def thread_totals(prefix):
    """Instructions per thread from callgrind's per-thread files `prefix-NN`."""
    totals = {}
    for path in glob.glob(prefix + "*"):
        with open(path) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    totals[path] = int(line.split()[1])
    return totals


def run_once(name, argv, port, path, count, out_prefix, stop_signal):
    proc = load.Proc(
        f"{name}-{count}",
        ["valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={out_prefix}"] + argv,
        "0", subprocess.DEVNULL, stop_signal=stop_signal,
    )
    load.wait_listening(port, proc, timeout=120.0)
    statuses, connections = request_loop(port, path, count)
    statuses["connections"] = connections
    # A graceful stop, so callgrind writes its files; bounded.
    try:
        os.killpg(proc.pid, stop_signal)
        proc.popen.wait(timeout=120)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    proc.stop()
    totals = thread_totals(out_prefix)
    if not totals:
        raise RuntimeError(f"{name}: callgrind wrote no counts (see {proc.stderr_path})")
    return statuses, totals


def measure(name, argv_for_port, path, workdir, counts=(N1, N2)):
    results = []
    for count in counts:
        port = load.free_port()
        prefix = os.path.join(workdir, f"callgrind.{name}.{count}")
        argv, stop_signal = argv_for_port(port)
        statuses, totals = run_once(name, argv, port, path, count, prefix, stop_signal)
        results.append((count, statuses, totals))
    (c1, s1, t1), (c2, s2, t2) = results
    # The worker is the thread whose count grows with the requests (threads are numbered in
    # the order they start, the same in both runs); the main thread's start-up is larger
    # than a few hundred requests, so the largest count alone would pick the wrong thread.
    def by_thread(totals):
        return {path.rsplit("-", 1)[-1]: n for path, n in totals.items()}
    b1, b2 = by_thread(t1), by_thread(t2)
    worker = max(b2, key=lambda k: b2[k] - b1.get(k, 0))
    busiest = (b2[worker] - b1.get(worker, 0)) / (c2 - c1)
    whole = (sum(t2.values()) - sum(t1.values())) / (c2 - c1)
    parts = None
    if BREAKDOWN:
        files = [next(p for p in t if p.rsplit("-", 1)[-1] == worker) for t in (t1, t2)]
        parts = breakdown(files, (c1, c2))
    return busiest, whole, s2, parts


def main(argv):
    wanted = [a for a in argv if not a.startswith("-")] or ["nginx", "bare", "triage"]
    unknown = [a for a in wanted if a not in ("nginx", "bare", "triage")]
    if unknown:
        raise SystemExit(f"unknown targets {unknown}: nginx, bare, triage")
    load.ensure_tools(("nginx", "taskset", "cc", "cmake"))
    if not load.which("valgrind"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True)
    triage_bin, patched_bin, unpatched_bin = load.build()
    nginx = load.which("nginx")
    workdir = tempfile.mkdtemp(prefix="triage-instr-")
    load.WORKDIR = workdir
    rows = []
    try:
        origin_port = load.free_port()
        dead = load.refused_port()
        conf = os.path.join(workdir, "origin.conf")
        with open(conf, "w") as f:
            f.write(load.origin_nginx_conf(origin_port))
        load.write_large_body(workdir)
        origin = load.Proc("origin", [nginx, "-c", conf, "-p", workdir], "1", subprocess.DEVNULL)
        load.wait_listening(origin_port, origin)

        def nginx_argv(port):
            path = os.path.join(workdir, f"proxy-{port}.conf")
            text = load.proxy_nginx_conf(port, origin_port, dead, origin_port, 1000)
            text = text.replace("daemon off;", "daemon off;\nmaster_process off;")
            with open(path, "w") as f:
                f.write(text)
            return [nginx, "-c", path, "-p", workdir], load.signal.SIGTERM

        def bare_argv_of(binary):
            def argv_for(port):
                return [binary, f"127.0.0.1:{port}", f"127.0.0.1:{origin_port}",
                        "--fail-upstream", f"127.0.0.1:{dead}"], load.signal.SIGINT
            return argv_for

        # INSTR_EVIDENCE=1: the origin upstream also follows a log file and a pidfile
        # ([upstreams.origin.evidence]), to show that the app's evidence costs the request
        # path nothing (it is read on a thread of its own).
        evidence = ""
        if os.environ.get("INSTR_EVIDENCE", "") not in ("", "0"):
            app_log = os.path.join(workdir, "app.log")
            with open(app_log, "w") as f:
                f.write("started\n")
            pidfile = os.path.join(workdir, "app.pid")
            with open(pidfile, "w") as f:
                f.write(f"{origin.pid}\n")
            evidence = (f'\n[upstreams.origin.evidence]\nlog_file = "{app_log}"\n'
                        f'pidfile = "{pidfile}"\n')

        def triage_argv_with(holdoff):
            def argv_for(port):
                path = os.path.join(workdir, f"triage-{port}.toml")
                with open(path, "w") as f:
                    f.write(load.triage_conf(port, load.free_port(), origin_port, dead,
                                             origin_port, 1000, True, holdoff=holdoff)
                            + evidence)
                return [triage_bin, "-c", path], load.signal.SIGTERM
            return argv_for

        targets = {
            "nginx": [("nginx", nginx_argv)],
            "bare": [("bare Pingora (crates.io, unpatched)", bare_argv_of(unpatched_bin)),
                     ("bare Pingora with triage's patches", bare_argv_of(patched_bin))],
            "triage": [("triage", triage_argv_with(True)),
                       ("triage, refused_holdoff off", triage_argv_with(False))],
        }
        for key in wanted:
            for label, argv_for in targets[key]:
                for scenario in SCENARIOS:
                    path = SCENARIO_PATHS[scenario]
                    counts = LARGE_COUNTS if scenario == "large" else (N1, N2)
                    if label.endswith("off") and scenario == "success":
                        continue
                    load.log(f"{label}: {scenario}, {counts[0]} and {counts[1]} requests "
                             "under callgrind")
                    busiest, whole, statuses, parts = measure(
                        f"{key}-{scenario}-{len(rows)}", argv_for, path, workdir, counts)
                    rows.append((label, scenario, busiest, whole, statuses, parts))
    finally:
        load.stop_all()
    print()
    print("| proxy | scenario | instructions per request (worker thread) | whole process | statuses (the longer run) |")
    print("|---|---|--:|--:|---|")
    for label, scenario, busiest, whole, statuses, _ in rows:
        st = ", ".join(f"{k}×{v}" for k, v in statuses.items())
        print(f"| {label} | {scenario} | {busiest/1000:.1f}k | {whole/1000:.1f}k | {st} |")
    if BREAKDOWN:
        print_breakdown(rows)
    print(f"\ncallgrind files kept in {workdir}")


def print_breakdown(rows):
    """One column per row measured: its worker's instructions per request by component,
    components in `COMPONENTS`' order, the ones that are empty in every column left out."""
    labels = [label for label, _ in COMPONENTS] + ["other"]
    columns = [(f"{label}, {scenario}", parts) for label, scenario, _, _, _, parts in rows]
    print()
    print("| component | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|" + "--:|" * len(columns))
    for label in labels:
        values = [parts.get(label, 0) for _, parts in columns]
        if all(abs(v) < 50 for v in values):
            continue
        print(f"| {label} | " + " | ".join(f"{v/1000:.1f}k" for v in values) + " |")
    print("| total | " + " | ".join(f"{sum(p.values())/1000:.1f}k" for _, p in columns) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
