#!/usr/bin/env python3
"""Benchmark of caddysnake against its peers, on loopback, with wrk.

Standard library only. See bench/README.md for what is measured and how.

    python3 bench/run.py                      # main suite, both placements
    python3 bench/run.py --quick              # smoke run: 2 s runs, 1 round
    python3 bench/run.py --cores 1 --only wsgi-hello
    python3 bench/run.py --suite interpreters # interpreters 1 vs 2 (issue 4)

Every configuration starts all of its servers (each on a fresh loopback port),
then loads them in turn, A B C A B C ..., for --rounds rounds, and reports the
median of each server's runs and the median of the per-round ratios between
servers, so that slow drift of a shared, noisy machine cancels out of the
ratios. A run with socket errors, non-2xx responses, a failed pre-check or a
dead server makes that server FAIL in that configuration.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
APPS = BENCH / "apps"
VENV = BENCH / ".venv"
TMP = BENCH / "tmp"
CADDY = REPO / "caddy"
POST_LUA = BENCH / "post64k.lua"
CHART = BENCH / "chart.py"
# The body post64k.lua sends; the pre-check sends the same one.
POST_BODY = b"0123456789abcdef" * 4096

HELLO = b"Hello, world!"
HELLO_JSON = {"message": "Hello, world!"}

MODULE_THREADS = 16  # `threads` of the module's python block
GUNICORN_THREADS = 4  # gunicorn gthread: 1 worker x 4 threads
GUNICORN_SAME = f"gunicorn-{MODULE_THREADS}t"  # gthread with the module's thread count (wsgi-sleep-10ms)

SERVER_CPU = "0"  # --cores 1: every server process is pinned here ...
WRK_CPU = "1"  # ... and wrk here

# asgi-ws-echo: each connection sends this many messages of this size, one
# at a time, waiting for each echo (bench/wsload).
WS_MESSAGES = 1000
WS_SIZE = 16
WSLOAD = None  # the built bench/wsload binary, set on first use

START_TIMEOUT = 90.0  # seconds for a server to listen and answer its first request
PAUSE = 0.3  # seconds between two runs (lets the previous run's sockets close)


# ---------------------------------------------------------------------------
# configurations and servers


@dataclass
class Config:
    name: str
    kind: str  # "wsgi" or "asgi": the interface the app speaks
    target: str  # module:attribute in bench/apps
    what: str  # one line for the README/table
    connections: int = 64
    post: bool = False  # POST the 64 KiB body (post64k.lua) instead of GET
    body: str = "hello"  # expected response: hello | json | echo | cpu
    respond: bool = False  # also measure caddy's `respond` with the same body
    ws: bool = False  # WebSocket echo driven by bench/wsload, not wrk


MAIN_CONFIGS = [
    Config("wsgi-hello", "wsgi", "bench_wsgi:hello",
           "raw WSGI, 13-byte text/plain 'Hello, world!'", respond=True),
    Config("asgi-hello", "asgi", "bench_asgi:hello",
           "raw ASGI, 13-byte text/plain 'Hello, world!'", respond=True),
    Config("flask-hello", "wsgi", "bench_flask:app",
           "Flask view returning a JSON dict", body="json"),
    Config("fastapi-hello", "asgi", "bench_fastapi:app",
           "FastAPI async route returning a JSON dict", body="json"),
    Config("wsgi-echo-64k", "wsgi", "bench_wsgi:echo",
           "raw WSGI, POST 64 KiB, body echoed back", post=True, body="echo"),
    Config("asgi-echo-64k", "asgi", "bench_asgi:echo",
           "raw ASGI, POST 64 KiB, body echoed back", post=True, body="echo"),
    Config("wsgi-sleep-10ms", "wsgi", "bench_wsgi:sleep",
           "raw WSGI, time.sleep(0.010) in a thread, 256 connections", connections=256),
    Config("asgi-sleep-10ms", "asgi", "bench_asgi:sleep",
           "raw ASGI, await asyncio.sleep(0.010), 256 connections", connections=256),
    Config("wsgi-cpu-1ms", "wsgi", "bench_wsgi:cpu",
           "raw WSGI, ~1 ms of pure-Python work per request", body="cpu"),
    Config("asgi-ws-echo", "asgi", "bench_asgi:ws_echo",
           f"raw ASGI WebSocket echo, {WS_MESSAGES:,} {WS_SIZE}-byte text messages per connection, "
           "one at a time, 64 connections", ws=True),
]

INTERPRETER_CONFIGS = [
    Config("wsgi-cpu-1ms", "wsgi", "bench_wsgi:cpu",
           "raw WSGI, ~1 ms of pure-Python work per request", body="cpu"),
    Config("wsgi-hello", "wsgi", "bench_wsgi:hello",
           "raw WSGI, 13-byte text/plain 'Hello, world!'"),
]
# Goals of issue 4 for interpreters 2 / interpreters 1, unpinned.
INTERPRETER_GOALS = {"wsgi-cpu-1ms": 1.8, "wsgi-hello": 1.0}

# The processes suite (issue 16): the module with `processes N` against peers
# with as many workers, unpinned, and the cost of the hop to a worker on one
# pinned core. "-w2" is a peer started with --workers 2.
_BY_NAME = {c.name: c for c in MAIN_CONFIGS}
PROCESS_PLAN = {
    "0": [
        (_BY_NAME["fastapi-hello"], ["processes=2", "uvicorn-w2", "granian-w2", "module"]),
        (_BY_NAME["flask-hello"], ["processes=2", "granian-w2", "gunicorn-w2", "module"]),
        (_BY_NAME["wsgi-cpu-1ms"], ["processes=2", "processes=1"]),
    ],
    "1": [
        (_BY_NAME["wsgi-hello"], ["processes=1", "module"]),
    ],
}
# (placement, config, a, b, goal): a / b must reach goal.
PROCESS_GOALS = [
    ("0", "fastapi-hello", "processes=2", "uvicorn-w2", 1.0),
    ("0", "fastapi-hello", "processes=2", "granian-w2", 1.0),
    ("0", "flask-hello", "processes=2", "granian-w2", 1.0),
    ("0", "wsgi-cpu-1ms", "processes=2", "processes=1", 1.8),
    ("1", "wsgi-hello", "processes=1", "module", 0.8),
]


def servers_for(cfg: Config, suite: str) -> list[str]:
    """The servers measured in a configuration, in the order they are run."""
    if suite == "interpreters":
        return ["interpreters=1", "interpreters=2"]
    if cfg.ws:
        # The client offers permessage-deflate to both: `module` negotiates
        # it (ws_compression on, the default), `module-ws-off` does not.
        # The peers here have no WebSocket library installed.
        return ["module", "module-ws-off"]
    names = ["module"]
    if cfg.respond:
        names.append("respond")
    if cfg.kind == "wsgi":
        peers = ["granian", "gunicorn"]
    else:
        peers = ["granian", "uvicorn"]
    names += peers
    if cfg.name == "wsgi-sleep-10ms":
        # The bar for blocking handlers compares equal thread counts: gunicorn
        # with as many threads as the module's `threads`.
        names.append(GUNICORN_SAME)
    names += ["caddy+" + p for p in peers]
    return names


def is_proxy(server: str) -> bool:
    return server.startswith("caddy+")


# ---------------------------------------------------------------------------
# processes


_next_port = 20000 + os.getpid() % 5000


def fresh_port() -> int:
    """A port no earlier server of this run had, free right now (below the
    ephemeral range, so wrk's own client ports never take it)."""
    global _next_port
    while True:
        port = _next_port
        _next_port += 1
        if _next_port > 32000:
            _next_port = 20000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def venv_env() -> dict:
    env = dict(os.environ)
    for var in ("PYTHONHOME", "PYTHONSTARTUP", "http_proxy", "https_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = str(VENV / "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(APPS)
    # Caddy keeps autosave.json and its data under these; keep them out of $HOME.
    env["XDG_CONFIG_HOME"] = str(TMP / "xdg" / "config")
    env["XDG_DATA_HOME"] = str(TMP / "xdg" / "data")
    return env


class Proc:
    """One server process in its own process group (killed as a group)."""

    def __init__(self, name: str, argv: list[str], pin: bool, logdir: Path):
        self.name = name
        self.argv = (["taskset", "-c", SERVER_CPU] if pin else []) + argv
        logdir.mkdir(parents=True, exist_ok=True)
        self.log_path = logdir / (re.sub(r"[^A-Za-z0-9_.=+-]", "_", name) + ".log")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv, cwd=str(APPS), env=venv_env(), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def failure(self) -> str:
        """The most telling line of the log: caddy's error message (its tail,
        where the cause is), else the last line (a Python traceback's)."""
        try:
            lines = [l for l in self.log_path.read_text(errors="replace").splitlines() if l.strip()]
        except OSError:
            return ""
        for line in reversed(lines):
            if line.startswith("{") and '"error"' in line:
                try:
                    msg = json.loads(line).get("msg", line)
                except ValueError:
                    msg = line
                # Caddy prefixes the module's message with the provisioning path.
                msg = msg.rsplit("provision http.handlers.python: ", 1)[-1]
                return msg if len(msg) <= 300 else "..." + msg[-300:]
        return lines[-1][-300:] if lines else ""

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a server that died first).
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def wait_port(port: int, procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode} "
                                   f"before listening: {p.failure()}\n{p.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s:\n"
                               + "\n".join(p.log_tail() for p in procs))
        time.sleep(0.1)


def caddy_global() -> str:
    # No admin endpoint: several Caddys run at once, and none is managed.
    return "{\n\tadmin off\n}\n\n"


def module_caddyfile(cfg: Config, port: int, interpreters: int | None = None,
                     extra: tuple[str, ...] = ()) -> str:
    directive = "module_wsgi" if cfg.kind == "wsgi" else "module_asgi"
    lines = [
        f'{directive} "{cfg.target}"',
        f"working_dir {APPS}",
        f"venv {VENV}",
    ]
    if cfg.kind == "wsgi":
        lines.append(f"threads {MODULE_THREADS}")
    else:
        # One event loop per interpreter (`threads` is WSGI only); uvloop, as
        # uvicorn and granian run here.
        lines.append("loop uvloop")
    if interpreters is not None:
        lines.append(f"interpreters {interpreters}")
    lines += extra
    body = "".join(f"\t\t{line}\n" for line in lines)
    return caddy_global() + f"http://127.0.0.1:{port} {{\n\tpython {{\n{body}\t}}\n}}\n"


def respond_caddyfile(cfg: Config, port: int) -> str:
    if cfg.body == "json":
        text = json.dumps(HELLO_JSON, separators=(",", ":"))
        ctype = "application/json"
    else:
        text = HELLO.decode()
        ctype = "text/plain"
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return caddy_global() + (
        f"http://127.0.0.1:{port} {{\n"
        f"\theader Content-Type {ctype}\n"
        f'\trespond "{quoted}" 200\n'
        f"}}\n")


# Idle upstream connections caddy keeps per host. Its default (32) is below the
# 64 and 256 connections of the configurations: the surplus requests would
# each open and close an upstream connection, and the proxied peers would
# measure connection churn (TIME_WAIT grew by thousands per run, and
# caddy+granian lost a third of its req/s on one core). Tuned in the peers'
# favour, as one would in production.
PROXY_IDLE_CONNS = 512


def proxy_caddyfile(port: int, upstream: int) -> str:
    return caddy_global() + (
        f"http://127.0.0.1:{port} {{\n"
        f"\treverse_proxy 127.0.0.1:{upstream} {{\n"
        f"\t\ttransport http {{\n"
        f"\t\t\tkeepalive_idle_conns_per_host {PROXY_IDLE_CONNS}\n"
        f"\t\t}}\n"
        f"\t}}\n"
        f"}}\n")


def peer_argv(peer: str, cfg: Config, port: int) -> list[str]:
    vbin = VENV / "bin"
    workers = "1"
    if peer.endswith("-w2"):
        peer, workers = peer[:-3], "2"
    if peer == "granian":
        argv = [str(vbin / "granian"), "--interface", cfg.kind, "--workers", workers,
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        if cfg.kind == "asgi":
            argv += ["--loop", "uvloop"]
        return argv + [cfg.target]
    if peer == "uvicorn":
        return [str(vbin / "uvicorn"), cfg.target, "--host", "127.0.0.1",
                "--port", str(port), "--workers", workers, "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--log-level", "warning",
                "--app-dir", str(APPS)]
    if peer in ("gunicorn", GUNICORN_SAME):
        threads = GUNICORN_THREADS if peer == "gunicorn" else MODULE_THREADS
        return [str(vbin / "gunicorn"), "--workers", workers, "--worker-class", "gthread",
                "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
                "--chdir", str(APPS), "--log-level", "warning", cfg.target]
    raise ValueError(peer)


def caddy_argv(caddyfile: Path) -> list[str]:
    return [str(CADDY), "run", "--config", str(caddyfile), "--adapter", "caddyfile"]


class Running:
    """A started server: its processes and the URL wrk loads."""

    def __init__(self, server: str, url: str, procs: list[Proc]):
        self.server = server
        self.url = url
        self.procs = procs

    def dead(self) -> str | None:
        for p in self.procs:
            if not p.alive():
                return (f"{p.name} exited with {p.popen.returncode}: {p.failure()}\n"
                        f"{p.log_tail()}")
        return None

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def start_server(server: str, cfg: Config, pin: bool, logdir: Path) -> Running:
    logdir.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    tag = f"{cfg.name}.{server}"
    try:
        if server in ("module", "module-ws-off") or server.startswith(("interpreters=", "processes=")):
            interp = int(server.split("=")[1]) if server.startswith("interpreters=") else None
            extra: tuple[str, ...] = ()
            if server == "module-ws-off":
                extra = ("ws_compression off",)
            elif server.startswith("processes="):
                extra = (f"processes {server.split('=')[1]}",)
            port = fresh_port()
            cf = logdir / f"{tag}.Caddyfile"
            cf.write_text(module_caddyfile(cfg, port, interp, extra))
            procs.append(Proc(tag, caddy_argv(cf), pin, logdir))
        elif server == "respond":
            port = fresh_port()
            cf = logdir / f"{tag}.Caddyfile"
            cf.write_text(respond_caddyfile(cfg, port))
            procs.append(Proc(tag, caddy_argv(cf), pin, logdir))
        elif is_proxy(server):
            peer = server[len("caddy+"):]
            upstream = fresh_port()
            procs.append(Proc(f"{tag}.upstream", peer_argv(peer, cfg, upstream), pin, logdir))
            wait_port(upstream, procs, START_TIMEOUT)
            port = fresh_port()
            cf = logdir / f"{tag}.Caddyfile"
            cf.write_text(proxy_caddyfile(port, upstream))
            procs.append(Proc(tag, caddy_argv(cf), pin, logdir))
        else:
            port = fresh_port()
            procs.append(Proc(tag, peer_argv(server, cfg, port), pin, logdir))
        wait_port(port, procs, START_TIMEOUT)
    except BaseException:
        for p in reversed(procs):
            p.stop()
        raise
    path = "/"
    return Running(server, f"http://127.0.0.1:{port}{path}", procs)


# ---------------------------------------------------------------------------
# checks and wrk

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def expected_cpu_body() -> bytes:
    sys.path.insert(0, str(APPS))
    try:
        import bench_wsgi  # standard library only
    finally:
        sys.path.pop(0)
    return str(bench_wsgi.burn()).encode()


_CPU_BODY: bytes | None = None


def precheck(cfg: Config, url: str) -> None:
    """One request with urllib; raises with what was wrong."""
    global _CPU_BODY
    data = POST_BODY if cfg.post else None
    req = urllib.request.Request(url, data=data, method="POST" if cfg.post else "GET")
    if cfg.post:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with _OPENER.open(req, timeout=15) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"pre-check: HTTP {e.code}: {e.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(f"pre-check: {e}") from None
    if status != 200:
        raise RuntimeError(f"pre-check: HTTP {status}")
    if cfg.body == "hello":
        ok = body == HELLO
    elif cfg.body == "json":
        try:
            ok = json.loads(body) == HELLO_JSON
        except ValueError:
            ok = False
    elif cfg.body == "echo":
        ok = body == POST_BODY
    elif cfg.body == "cpu":
        if _CPU_BODY is None:
            _CPU_BODY = expected_cpu_body()
        ok = body == _CPU_BODY
    else:
        raise ValueError(cfg.body)
    if not ok:
        raise RuntimeError(f"pre-check: unexpected body ({len(body)} bytes): {body[:80]!r}")


def precheck_until_ready(cfg: Config, url: str, procs: list[Proc], timeout: float) -> None:
    """The first request to a just-started server, retried while it warms up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            precheck(cfg, url)
            return
        except RuntimeError:
            if time.monotonic() > deadline or any(not p.alive() for p in procs):
                raise
            time.sleep(0.2)


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    """Requests/s, latency percentiles (ms), request count and error counts
    from the output of `wrk --latency`."""
    r: dict = {}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if not m:
        raise ValueError("no Requests/sec line in wrk output")
    r["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+), ([0-9.]+\w+) read", out, re.M)
    if not m:
        raise ValueError("no 'N requests in' line in wrk output")
    r["requests"] = int(m.group(1))
    r["elapsed_ms"] = _ms(m.group(2))
    r["read"] = m.group(3)
    r["latency_ms"] = {}
    for pct, val in re.findall(r"^\s+(50|75|90|99)%\s+([0-9.]+\w+)\s*$", out, re.M):
        r["latency_ms"]["p" + pct] = _ms(val)
    if "p50" not in r["latency_ms"] or "p99" not in r["latency_ms"]:
        raise ValueError("no latency distribution in wrk output (--latency)")
    m = re.search(r"^\s+Latency\s+([0-9.]+\w+)\s+([0-9.]+\w+)\s+([0-9.]+\w+)", out, re.M)
    if m:
        r["latency_ms"]["avg"] = _ms(m.group(1))
        r["latency_ms"]["max"] = _ms(m.group(3))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, m.groups()))) if m else {
        "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx"] = int(m.group(1)) if m else 0
    return r


def wrk_errors(parsed: dict) -> list[str]:
    errors = []
    if parsed["non_2xx"]:
        errors.append(f"{parsed['non_2xx']} non-2xx responses")
    bad = {k: v for k, v in parsed["socket_errors"].items() if v}
    if bad:
        errors.append("socket errors " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    if parsed["requests"] == 0:
        errors.append("no request completed")
    return errors


def run_wrk(cfg: Config, url: str, duration: float, pin: bool, threads: int) -> tuple[str, dict]:
    argv = (["taskset", "-c", WRK_CPU] if pin else []) + [
        "wrk", "-t", str(threads), "-c", str(cfg.connections), "-d", f"{duration:g}s",
        "--latency"]
    if cfg.post:
        argv += ["-s", str(POST_LUA)]
    argv.append(url)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=duration + 60, env=venv_env())
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stdout.strip()[-500:]}")
    return proc.stdout, parse_wrk(proc.stdout)


def run_wsload(running: Running, pin: bool) -> tuple[str, dict]:
    """asgi-ws-echo: bench/wsload (built here with go) against the server;
    its "rps" is echoed messages per second. It always offers
    permessage-deflate; the server decides."""
    global WSLOAD
    if WSLOAD is None:
        WSLOAD = TMP / "wsload"
        subprocess.run(["go", "build", "-o", str(WSLOAD), "./bench/wsload"], cwd=REPO, check=True)
    url = "ws" + running.url[len("http"):]
    argv = (["taskset", "-c", WRK_CPU] if pin else []) + [
        str(WSLOAD), "-url", url, "-c", "64", "-n", str(WS_MESSAGES), "-size", str(WS_SIZE)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"wsload exited with {proc.returncode}: {proc.stdout.strip()[-500:]}")
    out = json.loads(proc.stdout)
    parsed = {"rps": out["rps"], "requests": out["requests"], "elapsed_ms": out["elapsed_ms"],
              "read": "", "latency_ms": out["latency_ms"], "non_2xx": 0, "negotiated": out["negotiated"],
              "socket_errors": {"connect": 0, "read": out["failed_conns"], "write": 0, "timeout": 0}}
    if out["failed_conns"]:
        parsed["first_error"] = out["first_error"]
    want = 64 if running.server == "module" else 0
    if out["negotiated"] != want:
        raise RuntimeError(f"permessage-deflate negotiated on {out['negotiated']} of 64 connections, "
                           f"expected {want}")
    return proc.stdout, parsed


def measure(cfg: Config, running: Running, duration: float, pin: bool,
            threads: int) -> dict:
    """One run: pre-check, wrk, liveness. Returns the raw record."""
    rec: dict = {"ok": False, "errors": []}
    dead = running.dead()
    if dead:
        rec["errors"].append("server not running: " + dead)
        return rec
    try:
        precheck(cfg, running.url)
    except RuntimeError as e:
        rec["errors"].append(str(e))
        return rec
    try:
        if cfg.ws:
            out, parsed = run_wsload(running, pin)
        else:
            out, parsed = run_wrk(cfg, running.url, duration, pin, threads)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        rec["errors"].append(f"wrk: {e}")
        return rec
    rec["wrk_output"] = out
    rec.update(parsed)
    rec["errors"] += wrk_errors(parsed)
    dead = running.dead()
    if dead:
        rec["errors"].append("server died during the run: " + dead)
    rec["ok"] = not rec["errors"]
    return rec


# ---------------------------------------------------------------------------
# environment


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("wrk is missing; installing the Debian package", flush=True)
    if os.geteuid() != 0:
        sys.exit("wrk is not installed and this is not root: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True)
    if not shutil.which("wrk"):
        sys.exit("wrk still not found after apt-get install")


def check_setup(suite: str, placements: list[str], shown: Path, need_wrk: bool = True) -> None:
    """Checks CADDY (a copy of `shown`), the venv, taskset and wrk."""
    if not (VENV / "bin" / "python").exists():
        sys.exit(f"{VENV} is missing: run `make bench` (it creates it from bench/requirements.txt)")
    # The module refuses a venv of another Python than the one it is linked
    # against; say so before starting anything.
    ldd = subprocess.run(["ldd", str(CADDY)], stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r"libpython(\d+\.\d+)", ldd)
    venv_ver = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        stdout=subprocess.PIPE, text=True).stdout.strip()
    if m and m.group(1) != venv_ver:
        sys.exit(f"{shown} is linked against Python {m.group(1)} but {VENV} is Python {venv_ver}: "
                 f"rebuild caddy (make build) or use `make bench PYTHON=python{m.group(1)}`")
    if suite == "interpreters" and m and tuple(map(int, m.group(1).split("."))) < (3, 12):
        sys.exit(f"the interpreters suite needs a caddy linked against CPython 3.12 or later "
                 f"(own-GIL sub-interpreters, PEP 684); {shown} has Python {m.group(1)}: "
                 f"run `make bench-interpreters PYTHON=python3.12` (or PYTHON=/path/to/python3.12)")
    if "1" in placements and not shutil.which("taskset"):
        sys.exit("--cores 1 needs taskset (util-linux)")
    if "1" in placements and (os.cpu_count() or 1) < 2:
        sys.exit("--cores 1 needs two CPUs (server on CPU 0, wrk on CPU 1)")
    if need_wrk:
        ensure_wrk()


def _first_line(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
        return (p.stdout.strip().splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def versions() -> dict:
    v: dict = {}
    code = ("import sys, json, importlib.metadata as m\n"
            "out = {'python': sys.version.split()[0], 'python_full': sys.version}\n"
            "for p in ('caddysnake', 'granian', 'uvicorn', 'uvloop', 'httptools', 'gunicorn',"
            " 'flask', 'fastapi', 'starlette', 'matplotlib'):\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))\n")
    try:
        p = subprocess.run([str(VENV / "bin" / "python"), "-c", code], stdout=subprocess.PIPE,
                           text=True, timeout=60, check=True)
        v.update(json.loads(p.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        v["python"] = f"unknown ({e})"
    v["caddy"] = _first_line([str(CADDY), "version"])
    v["wrk"] = _first_line(["wrk", "-v"])
    ldd = subprocess.run(["ldd", str(CADDY)], stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r"(libpython\S+) => (\S+)", ldd)
    if m:
        v["caddy_libpython"] = m.group(2)
    v["git_commit"] = _first_line(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    v["git_dirty"] = bool(dirty)
    return v


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "machine": platform.machine()}
    try:
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


# ---------------------------------------------------------------------------
# the run


PLACEMENT_TEXT = {
    "1": "cores=1: every server process pinned to CPU 0, wrk (-t1) to CPU 1",
    "0": "unpinned: servers and wrk (-t2) share both CPUs",
}


def wrk_threads(placement: str) -> int:
    return 1 if placement == "1" else 2


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(runs: list[dict], plan: list[tuple[str, Config, list[str]]]):
    """Medians per (placement, config, server) and ratios per pair of servers."""
    summary, ratios = [], []
    for placement, cfg, servers in plan:
        by_server = {}
        for server in servers:
            rs = [r for r in runs if r["placement"] == placement and r["config"] == cfg.name
                  and r["server"] == server and not r.get("warmup")]
            ok = [r for r in rs if r["ok"]]
            errors = []
            for r in rs:
                for e in r["errors"]:
                    if e not in errors:
                        errors.append(e)
            failed = not rs or len(ok) != len(rs)
            if not rs:
                errors.append("not run")
            entry = {
                "placement": placement, "config": cfg.name, "server": server,
                "ok": not failed, "runs": len(rs), "ok_runs": len(ok),
                "rps_median": median([r["rps"] for r in ok]),
                "p50_ms_median": median([r["latency_ms"]["p50"] for r in ok]),
                "p99_ms_median": median([r["latency_ms"]["p99"] for r in ok]),
                "rps_runs": [r.get("rps") for r in rs],
                "errors": errors,
            }
            summary.append(entry)
            by_server[server] = (entry, {r["round"]: r for r in rs})
        for a in servers:
            for b in servers:
                if a == b:
                    continue
                ea, ra = by_server[a]
                eb, rb = by_server[b]
                per_round = []
                for rnd in sorted(set(ra) & set(rb)):
                    if ra[rnd]["ok"] and rb[rnd]["ok"] and rb[rnd]["rps"] > 0:
                        per_round.append(ra[rnd]["rps"] / rb[rnd]["rps"])
                ratios.append({
                    "placement": placement, "config": cfg.name, "a": a, "b": b,
                    # None when either side failed: a failure is not "fast".
                    "ratio_median": median(per_round) if ea["ok"] and eb["ok"] else None,
                    "per_round": per_round,
                })
    return summary, ratios


def ratio_of(ratios: list[dict], placement: str, config: str, a: str, b: str):
    for r in ratios:
        if (r["placement"], r["config"], r["a"], r["b"]) == (placement, config, a, b):
            return r["ratio_median"]
    return None


def fmt_ratio(x) -> str:
    return "FAIL" if x is None else f"{x:.2f}x"


def fmt_ms(x) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f}us" if x < 1 else f"{x:.2f}ms"


def print_table(result: dict) -> None:
    summary, ratios = result["summary"], result["ratios"]
    suite = result["suite"]
    base = "interpreters=1" if suite == "interpreters" else "module"
    if suite == "processes":
        base = None  # each configuration's first server
    for placement in result["settings"]["placements"]:
        print()
        print(f"== {PLACEMENT_TEXT[placement]}")
        head = (f"{'config':<16} {'server':<16} {'req/s':>10} {'p50':>9} {'p99':>9}  "
                + ("ratio to interpreters=1" if suite == "interpreters" else
                   "first / this" if suite == "processes" else "module / this"))
        print(head)
        print("-" * len(head))
        for cfg in result["configs"]:
            rows = [s for s in summary if s["placement"] == placement and s["config"] == cfg["name"]]
            if not rows or cfg.get("placement", placement) != placement:
                continue
            first = base or rows[0]["server"]
            for i, s in enumerate(rows):
                name = cfg["name"] if i == 0 else ""
                if s["ok"]:
                    rps = f"{s['rps_median']:,.0f}"
                    if suite == "interpreters":
                        rt = ratio_of(ratios, placement, cfg["name"], s["server"], base)
                    else:
                        rt = ratio_of(ratios, placement, cfg["name"], first, s["server"])
                    rt_s = "" if s["server"] == first else fmt_ratio(rt)
                    print(f"{name:<16} {s['server']:<16} {rps:>10} {fmt_ms(s['p50_ms_median']):>9} "
                          f"{fmt_ms(s['p99_ms_median']):>9}  {rt_s}")
                else:
                    why = s["errors"][0].splitlines()[0] if s["errors"] else "failed"
                    print(f"{name:<16} {s['server']:<16} {'FAIL':>10} {'':>9} {'':>9}  {why[:120]}")
            verdict = verdict_line(result, placement, cfg["name"], rows)
            if verdict:
                print("  => " + verdict)
        print()


def verdict_line(result: dict, placement: str, config: str, rows: list[dict]) -> str:
    ratios = result["ratios"]
    if result["suite"] == "interpreters":
        r = ratio_of(ratios, placement, config, "interpreters=2", "interpreters=1")
        goal = INTERPRETER_GOALS.get(config)
        if r is None:
            return f"interpreters 2 / 1: FAIL (goal >= {goal:.1f}x)"
        return (f"interpreters 2 / 1: {r:.2f}x (goal >= {goal:.1f}x: "
                f"{'met' if r >= goal else 'NOT met'})")
    if result["suite"] == "processes":
        parts = []
        for p, c, a, b, goal in PROCESS_GOALS:
            if (p, c) != (placement, config):
                continue
            r = ratio_of(ratios, placement, config, a, b)
            parts.append(f"{a} / {b}: {fmt_ratio(r)} (goal >= {goal:.1f}x: "
                         f"{'met' if r is not None and r >= goal else 'NOT met'})")
        return ";  ".join(parts)
    by = {s["server"]: s for s in rows}
    parts = []
    if "module" not in by or len(by) < 2:
        return ""
    if "respond" in by:
        parts.append("module / respond " + fmt_ratio(
            ratio_of(ratios, placement, config, "module", "respond")))

    def best(pred):
        cands = [s for s in rows if pred(s["server"])]
        ok = [s for s in cands if s["ok"]]
        if not cands:
            return None
        if not ok:
            return "all failed"
        top = max(ok, key=lambda s: s["rps_median"])
        return top["server"]

    for label, pred in (("best peer", lambda n: n in ("granian", "uvicorn", "gunicorn", GUNICORN_SAME)),
                        ("best reverse_proxy peer", is_proxy)):
        b = best(pred)
        if b is None:
            continue
        if b == "all failed":
            parts.append(f"module / {label}: all failed")
        else:
            parts.append(f"module / {label} ({b}) "
                         + fmt_ratio(ratio_of(ratios, placement, config, "module", b)))
    return ";  ".join(parts)


def write_results(result: dict, outdir: Path, draw: bool) -> tuple[Path, Path | None]:
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.fromisoformat(result["started"]).strftime("%Y%m%dT%H%M%SZ")
    prefix = "bench" if result["suite"] == "main" else result["suite"]
    latest_name = "latest" if result["suite"] == "main" else result["suite"] + "-latest"
    if result["settings"]["quick"]:
        prefix, latest_name = "quick-" + prefix, "quick-" + latest_name
    stamped = outdir / f"{prefix}-{stamp}.json"
    text = json.dumps(result, indent=1, sort_keys=False) + "\n"
    stamped.write_text(text)
    (outdir / f"{latest_name}.json").write_text(text)
    png = None
    if draw:
        png = outdir / f"{latest_name}.png"
        py = VENV / "bin" / "python"
        p = subprocess.run([str(py), str(CHART), str(stamped), str(png)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            print(f"chart not drawn (matplotlib in {VENV}?):\n{p.stdout[-1500:]}")
            png = None
    return stamped, png


def estimate_seconds(plan, rounds, duration, warmup) -> float:
    servers = sum(len(s) for _, _, s in plan)
    # Measured: ~0.4 s per run for wrk's start, the pre-check and the pause, and
    # ~0.5 s per server to start and stop it.
    return servers * (rounds * (duration + 0.4) + warmup + 0.4 + 0.5)


def main() -> int:
    global CADDY, VENV
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["main", "interpreters", "processes"], default="main",
                    help="main: module vs respond and peers (issue 5); interpreters: "
                         "module with interpreters 1 vs 2 (issue 4); processes: module with "
                         "processes N vs peers with N workers (issue 16)")
    ap.add_argument("--cores", choices=["1", "0", "both"], default=None,
                    help="1: servers pinned to CPU 0 and wrk to CPU 1; 0: unpinned; "
                         "both (default of the main suite; the interpreters suite is unpinned)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of each wrk run (default 5, interpreters suite 10; --quick 2)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds per configuration (default 3, interpreters suite 5; "
                         "--quick 1)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of unmeasured load per server after it starts (default 1; --quick 0.5)")
    ap.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                    help="keep only 'config/server' pairs containing SUBSTRING "
                         "(repeatable, or comma-separated; e.g. wsgi-hello, granian, hello/module)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 s runs, 1 round; results go to bench/tmp/results/")
    ap.add_argument("--out", type=Path, default=None,
                    help="results directory (default bench/results/ for a full run, "
                         "bench/tmp/results/ for --quick or --only)")
    ap.add_argument("--no-chart", action="store_true", help="do not draw the PNG")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    ap.add_argument("--caddy", type=Path, default=CADDY,
                    help="the caddy binary with the module (default ./caddy)")
    ap.add_argument("--venv", type=Path, default=VENV,
                    help="the venv of the apps and peers (default bench/.venv)")
    args = ap.parse_args()
    CADDY, VENV = args.caddy.resolve(), args.venv.absolute()

    # The interpreters suite is four pairs: it affords longer runs and more rounds.
    long_suite = args.suite == "interpreters"
    duration = args.duration if args.duration is not None else (
        2.0 if args.quick else 10.0 if long_suite else 5.0)
    rounds = args.rounds if args.rounds is not None else (
        1 if args.quick else 5 if long_suite or args.suite == "processes" else 3)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    if rounds < 1 or duration < 1:
        ap.error("--rounds must be >= 1 and --duration >= 1")
    if args.suite == "interpreters":
        if args.cores not in (None, "0"):
            ap.error("the interpreters suite runs unpinned (--cores 0): two interpreters need both CPUs")
        placements = ["0"]
        configs = INTERPRETER_CONFIGS
    elif args.suite == "processes":
        if args.cores is not None:
            ap.error("the processes suite sets its own placements (unpinned, and one pinned hop check)")
        placements = list(PROCESS_PLAN)
        configs = []
    else:
        placements = {"1": ["1"], "0": ["0"], "both": ["1", "0"], None: ["1", "0"]}[args.cores]
        configs = MAIN_CONFIGS
    filters = [f for item in args.only for f in item.split(",") if f]
    candidates = [(p, c, s) for p, pairs in PROCESS_PLAN.items() for c, s in pairs] \
        if args.suite == "processes" else \
        [(p, c, servers_for(c, args.suite)) for p in placements for c in configs]
    plan = []  # (placement, config, servers), in the order they run
    for placement, cfg, servers in candidates:
        servers = [s for s in servers
                   if not filters or any(f in f"{cfg.name}/{s}" for f in filters)]
        if servers:
            plan.append((placement, cfg, servers))
    placements = [p for p in placements if any(q == p for q, _, _ in plan)]
    if not plan:
        ap.error(f"--only {filters} matches no config/server")

    est = estimate_seconds(plan, rounds, duration, warmup)
    print(f"suite {args.suite}: {sum(len(s) for _, _, s in plan)} placement/config/server runs x "
          f"{rounds} round(s) of {duration:g}s; estimated {est / 60:.1f} min")
    for placement, cfg, servers in plan:
        print(f"  [{placement}] {cfg.name:<16} c={cfg.connections:<4} {', '.join(servers)}")
    if args.list:
        return 0

    if not CADDY.exists():
        sys.exit(f"{CADDY} is missing: run `make build` (or `make bench`)")
    # Measure a copy: a `make build` elsewhere during the run (another Python,
    # other sources) must not swap the binary between two rounds.
    original_caddy = CADDY
    TMP.mkdir(parents=True, exist_ok=True)
    snapshot = TMP / f"caddy-under-test.{os.getpid()}"
    shutil.copy2(original_caddy, snapshot)
    CADDY = snapshot
    try:
        check_setup(args.suite, placements, original_caddy,
                    need_wrk=any(not cfg.ws for _, cfg, _ in plan))
    except SystemExit:
        snapshot.unlink(missing_ok=True)
        raise
    full = not args.quick and not filters
    outdir = args.out or (BENCH / "results" if full else TMP / "results")
    started = datetime.datetime.now(datetime.timezone.utc)
    logdir = TMP / "logs" / started.strftime("%Y%m%dT%H%M%SZ")
    print(f"server logs and Caddyfiles: {logdir}", flush=True)

    result = {
        "suite": args.suite,
        "started": started.isoformat(timespec="seconds"),
        "finished": None,
        "argv": sys.argv[1:],
        "settings": {
            "placements": placements, "duration_s": duration, "rounds": rounds,
            "warmup_s": warmup, "quick": args.quick, "filters": filters,
            "wrk_threads": {p: wrk_threads(p) for p in placements},
            "module_threads": MODULE_THREADS, "gunicorn_threads": GUNICORN_THREADS,
            "proxy_keepalive_idle_conns_per_host": PROXY_IDLE_CONNS,
            "server_cpu_when_pinned": SERVER_CPU, "wrk_cpu_when_pinned": WRK_CPU,
        },
        "versions": {**versions(), "caddy_binary": str(original_caddy),
                     "caddy_sha256": sha256(snapshot)},
        "machine": machine(),
        "configs": [{"name": c.name, "kind": c.kind, "target": c.target, "what": c.what,
                     "connections": c.connections, "method": "POST" if c.post else "GET",
                     "servers": s, "placement": p} for p, c, s in plan],
        "runs": [],
    }
    v = result["versions"]
    print("versions: " + ", ".join(f"{k} {v[k]}" for k in (
        "python", "granian", "uvicorn", "gunicorn", "flask", "fastapi") if k in v))
    print(f"caddy: {v.get('caddy')}; wrk: {v.get('wrk')}; cpu: {result['machine']['cpu_model']}"
          f" x{result['machine']['cpus']}", flush=True)

    t0 = time.monotonic()
    running: list[Running] = []
    try:
        for placement in placements:
            pin = placement == "1"
            threads = wrk_threads(placement)
            print(f"\n== {PLACEMENT_TEXT[placement]}", flush=True)
            for _, cfg, servers in (e for e in plan if e[0] == placement):
                started_ok: dict[str, Running] = {}
                start_errors: dict[str, str] = {}
                for server in servers:
                    r = None
                    try:
                        r = start_server(server, cfg, pin, logdir / f"cores{placement}")
                        running.append(r)
                        precheck_until_ready(cfg, r.url, r.procs, START_TIMEOUT)
                        started_ok[server] = r
                    except (RuntimeError, OSError) as e:
                        if r is not None:
                            r.stop()
                            running.remove(r)
                        start_errors[server] = f"start: {e}"
                        print(f"  {cfg.name} {server}: FAILED TO START: "
                              f"{str(e).splitlines()[0][:200]}", flush=True)
                # Warm-up, not counted: lazy imports, thread pools, connection
                # pools (the proxies' upstream connections) and allocator arenas.
                for server, r in started_ok.items():
                    if warmup > 0:
                        rec = measure(cfg, r, warmup, pin, threads)
                        result["runs"].append({
                            "placement": placement, "config": cfg.name, "server": server,
                            "round": 0, "warmup": True, "ok": rec["ok"], "errors": rec["errors"],
                            "rps": rec.get("rps")})
                        time.sleep(PAUSE)
                for rnd in range(1, rounds + 1):
                    for server in servers:
                        base = {"placement": placement, "config": cfg.name, "server": server,
                                "round": rnd, "url": None}
                        if server in start_errors:
                            rec = {"ok": False, "errors": [start_errors[server]]}
                        else:
                            r = started_ok[server]
                            base["url"] = r.url
                            rec = measure(cfg, r, duration, pin, threads)
                            time.sleep(PAUSE)
                        result["runs"].append({**base, **rec})
                        if rec["ok"]:
                            lat = rec["latency_ms"]
                            print(f"  [{placement}] r{rnd} {cfg.name:<16} {server:<16} "
                                  f"{rec['rps']:>10,.0f} req/s  p50 {fmt_ms(lat['p50'])}  "
                                  f"p99 {fmt_ms(lat['p99'])}", flush=True)
                        else:
                            print(f"  [{placement}] r{rnd} {cfg.name:<16} {server:<16} FAIL: "
                                  f"{rec['errors'][0].splitlines()[0][:100]}", flush=True)
                for r in started_ok.values():
                    r.stop()
                    running.remove(r)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers; partial results follow", flush=True)
        if args.out is None:
            outdir = TMP / "results"  # never replace a full result with a partial one
        result["interrupted"] = True
    finally:
        for r in running:
            r.stop()
        snapshot.unlink(missing_ok=True)

    result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["summary"], result["ratios"] = summarize(result["runs"], plan)
    print_table(result)
    stamped, png = write_results(result, outdir, draw=not args.no_chart)
    print(f"results: {stamped}" + (f"\nchart:   {png}" if png else ""))
    print(f"elapsed: {result['elapsed_s'] / 60:.1f} min")
    return 0 if all(s["ok"] for s in result["summary"]) else 1


if __name__ == "__main__":
    sys.exit(main())
