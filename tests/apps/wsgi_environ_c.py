"""Compares the C environ builder (environ.c, reached as
_caddysnake.build_environ) with the pure-Python reference,
caddysnake.wsgi.build_environ, on crafted requests; answers "ok" or the
differences, one per line."""

import json

import _caddysnake
from caddysnake import wsgi

BASE = ["GET", "", "/", "", "HTTP/1.1", "http", "example.com", "80", "10.0.0.1", "54321"]


def case(*headers, base=BASE, **fields):
    req = list(base)
    names = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
             "wsgi.url_scheme", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT"]
    for k, v in fields.items():
        req[names.index(k)] = v
    for name, value in headers:
        req += [name, value]
    return tuple(req)


CASES = {
    "minimal": case(("Host", "example.com")),
    "no remote port": case(("Host", "h"), REMOTE_PORT=""),
    "fields": case(("Host", "h"), REQUEST_METHOD="POST", SCRIPT_NAME="/app", PATH_INFO="/a b",
                   QUERY_STRING="x=1&y=%20", SERVER_PROTOCOL="HTTP/2.0", **{"wsgi.url_scheme": "https"}),
    "repeated": case(("Accept", "a/b"), ("Accept", "c/d"), ("X-Multi", "1"), ("X-Multi", "2"), ("X-Multi", "3")),
    "cookies": case(("Cookie", "a=1"), ("Cookie", "b=2")),
    "underscore dropped": case(("X-Real_IP", "1.2.3.4"), ("X-Real-IP", "5.6.7.8")),
    "content": case(("Content-Type", "text/plain"), ("Content-Length", "12"), ("content-type", "x/y")),
    "lower-case names": case(("x-custom-thing", "v"), ("accept-encoding", "gzip")),
    "latin-1": case(("X-Caf\xe9", "\xff\xfe caf\xe9"), ("X-Empty", "")),
    "long name": case(("X-" + "L" * 300, "v" * 5000)),
    "many": case(*[(f"X-H{i}", str(i)) for i in range(60)]),
    "prefix lookalikes": case(("Content-Types", "a"), ("Content-Length-X", "b"), ("Http-Host", "c")),
}

BAD = {
    "too short": tuple(BASE[:9]),
    "odd header count": case(("Host", "h")) + ("X-Dangling",),
}


def comparable(env):
    out = {}
    for k, v in env.items():
        if k in ("wsgi.input", "wsgi.errors"):
            v = (type(v).__name__, getattr(v, "_handle", None))
        out[k] = v
    return out


def compare():
    diffs = []
    for name, req in CASES.items():
        ref = comparable(wsgi.build_environ(req, 7))
        got = comparable(_caddysnake.build_environ(req, 7))
        if ref != got:
            keys = sorted(set(ref) | set(got))
            for k in keys:
                if ref.get(k, "<absent>") != got.get(k, "<absent>"):
                    diffs.append(f"{name}: {k}: python {ref.get(k, '<absent>')!r}, C {got.get(k, '<absent>')!r}")
    for name, req in BAD.items():
        for label, build in (("python", wsgi.build_environ), ("C", _caddysnake.build_environ)):
            try:
                build(req, 7)
                diffs.append(f"{name}: {label} accepted a malformed request")
            except ValueError:
                pass
    return diffs


def app(environ, start_response):
    diffs = compare()
    # The environ this very request got came from the C builder too.
    streams = [type(environ[k]).__name__ for k in ("wsgi.input", "wsgi.errors")]
    body = json.dumps({"diffs": diffs, "cases": len(CASES) + len(BAD), "streams": streams}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
