"""The Autobahn TestSuite's fuzzingclient cases against ./caddy serving the
raw ASGI echo app (tests/apps/asgi_autobahn.py), driven by kosoku (PyPI).

    python tests/autobahn/run.py --caddy ./caddy [--cases '6.*' ...]

Exits non-zero if any case failed or is unimplemented (kosoku counts OK,
NON-STRICT and INFORMATIONAL as passed). Dials 127.0.0.1 only; `make
test-autobahn` runs it inside a loopback-only network namespace.
"""

import argparse
import asyncio
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time

import kosoku

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "apps")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_caddy(caddy, port, tmp, extra):
    cfg = os.path.join(tmp, "Caddyfile")
    with open(cfg, "w") as f:
        f.write(f"""{{
	admin off
	auto_https off
	persist_config off
}}

http://127.0.0.1:{port} {{
	python {{
		module_asgi asgi_autobahn:app
		working_dir {APPS}
		{extra}
	}}
}}
""")
    log = open(os.path.join(tmp, "caddy.log"), "w+")
    env = dict(os.environ, HOME=tmp, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp)
    proc = subprocess.Popen([caddy, "run", "--config", cfg, "--adapter", "caddyfile"],
                            stdout=log, stderr=log, env=env, cwd=tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            sys.exit(f"autobahn: caddy exited before serving:\n{log.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, log
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("autobahn: caddy did not answer within 30s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caddy", default="./caddy")
    ap.add_argument("-i", "--cases", action="append", help="case ids or globs (default: all)")
    ap.add_argument("-x", "--exclude", action="append", help="case ids or globs to leave out")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--extra", default="", help="more lines for the python block, e.g. 'ws_compression off'")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case, not only the failed ones")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="autobahn-") as tmp:
        port = free_port()
        proc, log = start_caddy(os.path.abspath(args.caddy), port, tmp, args.extra)
        try:
            try:
                results = asyncio.run(kosoku.run_fuzzingclient(
                    f"ws://127.0.0.1:{port}", args.cases, args.exclude, concurrency=args.parallel))
            except kosoku.FailureError as e:
                results = e.results
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        counts = collections.Counter()
        for r in results:
            b = r.behavior.value
            verdict = "passed" if r.passed else ("unimplemented" if b == "UNIMPLEMENTED" else "failed")
            counts[verdict] += 1
            if verdict != "passed" or args.verbose:
                print(f"{r.case_id:10} {verdict:13} {b:13} close={r.behavior_close.value} "
                      f"remote_close={r.remote_close_code}", flush=True)
        by_group = collections.Counter(r.case_id.split(".")[0] for r in results if not r.passed)
        if by_group:
            print("not passed by group:", dict(sorted(by_group.items(), key=lambda kv: int(kv[0]))))
        print(f"autobahn: {len(results)} cases, {counts['unimplemented']} unimplemented")
        print(f"{counts['passed']} passed, {counts['failed'] + counts['unimplemented']} failed")
        if counts["failed"] or counts["unimplemented"] or not results:
            log.seek(0)
            tail = log.read()[-4000:]
            print("autobahn: caddy log tail:\n" + tail, file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
