"""Compares the C scope builder (scope.c, reached as
_caddysnake.build_scope) with the pure-Python reference,
caddysnake.asgi.build_scope, on crafted requests; answers JSON with the
differences, and what the scope of this very request looked like."""

import json

import _caddysnake
from caddysnake import asgi

FIELDS = ["http_version", "method", "scheme", "path", "raw_path", "query_string", "root_path",
          "client_host", "client_port", "server_host", "server_port", "has_body"]
BASE = [b"1.1", b"GET", b"http", b"/", b"/", b"", b"", b"10.0.0.1", b"54321", b"example.com", b"80", b"0"]


def case(*headers, **fields):
    req = list(BASE)
    for k, v in fields.items():
        req[FIELDS.index(k)] = v
    for name, value in headers:
        req += [name, value]
    return tuple(req)


CASES = {
    "minimal": case((b"host", b"example.com")),
    "no headers": case(),
    "fields": case((b"host", b"h"), method=b"POST", scheme=b"https", http_version=b"2",
                   path=b"/app/caf\xc3\xa9 x", raw_path=b"/app/caf%C3%A9%20x", query_string=b"a=1&b=%20",
                   root_path=b"/app", has_body=b"1"),
    "path not utf-8": case(path=b"/\xff\xfe", raw_path=b"/%FF%FE"),
    "no client": case(client_host=b"", client_port=b""),
    "client without port": case(client_host=b"10.1.2.3", client_port=b""),
    "ipv6": case(client_host=b"::1", client_port=b"1", server_host=b"::1", server_port=b"8443"),
    "no server": case(server_host=b"", server_port=b""),
    "body flag other than 0": case(has_body=b"1"),
    "repeated and empty": case((b"accept", b"a/b"), (b"accept", b"c/d"), (b"x-empty", b""), (b"cookie", b"a=1")),
    "latin-1 bytes": case((b"x-caf\xe9", b"\xff\xfe caf\xe9")),
    "many": case(*[(f"x-h{i}".encode(), str(i).encode()) for i in range(60)]),
    "long": case((b"x-" + b"l" * 300, b"v" * 5000)),
}

BAD = {
    "too short": tuple(BASE[:11]),
    "odd header count": case((b"host", b"h")) + (b"dangling",),
    "bad port": case(client_port=b"x1"),
}


def compare():
    diffs = []
    for name, parts in CASES.items():
        ref, ref_body = asgi.build_scope(parts, {})
        del ref["state"]  # the loop adds it to a C-built scope
        got, got_body = _caddysnake.build_scope(parts)
        if ref_body != got_body:
            diffs.append(f"{name}: has_body: python {ref_body!r}, C {got_body!r}")
        for k in sorted(set(ref) | set(got)):
            a, b = ref.get(k, "<absent>"), got.get(k, "<absent>")
            if a != b or type(a) is not type(b):
                diffs.append(f"{name}: {k}: python {a!r}, C {b!r}")
        for k in ("asgi", "extensions"):
            if got[k] is asgi.HTTP_ASGI or got[k] is asgi.HTTP_EXTENSIONS:
                diffs.append(f"{name}: {k} is the shared template, not a copy")
        if any(got["extensions"][e] is asgi.HTTP_EXTENSIONS[e] for e in got["extensions"]):
            diffs.append(f"{name}: an extension's dict is the shared template's")
        if any(type(h) is not tuple for h in got["headers"]):
            diffs.append(f"{name}: headers are not tuples: {got['headers']!r}")
    for name, parts in BAD.items():
        for label, build in (("python", lambda p: asgi.build_scope(p, {})), ("C", _caddysnake.build_scope)):
            try:
                build(parts)
                diffs.append(f"{name}: {label} accepted a malformed request")
            except ValueError:
                pass
    return diffs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    served = {
        "keys": sorted(scope),
        "state_is_dict": type(scope["state"]) is dict,
        "path": scope["path"],
        "query_string": scope["query_string"].decode(),
        "headers": [[n.decode(), v.decode()] for n, v in scope["headers"] if n == b"x-probe"],
    }
    diffs = compare()
    body = json.dumps({"diffs": diffs, "cases": len(CASES) + len(BAD), "served": served}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
