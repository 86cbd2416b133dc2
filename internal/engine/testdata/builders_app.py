"""Apps the builder fuzz targets (builders_fuzz_test.go) post their inputs
to: each decodes the request parts from the body, runs the C builder
(_caddysnake.build_environ / build_scope) and the pure-Python reference
(caddysnake.wsgi.build_environ / caddysnake.asgi.build_scope) on them and
answers the differences as JSON, an empty list when they agree."""

import json
import struct

import _caddysnake
from caddysnake import asgi, wsgi


def decode_parts(body):
    """The body is a list of byte strings, each a little-endian uint32
    length and then the bytes."""
    parts, at = [], 0
    while at < len(body):
        (n,) = struct.unpack_from("<I", body, at)
        parts.append(body[at + 4 : at + 4 + n])
        at += 4 + n
    return tuple(parts)


def _outcome(build, *args):
    """(result, None), or (None, the error's kind): ValueError for any
    refusal of a malformed request (the C side may raise a subclass, such
    as UnicodeDecodeError for a port that is not ASCII), else its type."""
    try:
        return build(*args), None
    except ValueError:
        return None, "ValueError"
    except Exception as e:  # noqa: BLE001 - the type is what gets compared
        return None, type(e).__name__


def _comparable_environ(env):
    out = {}
    for k, v in env.items():
        if k in ("wsgi.input", "wsgi.errors"):
            v = (type(v).__name__, getattr(v, "_handle", None))
        out[k] = v
    return out


def compare_environ(parts):
    req = tuple(p.decode("latin-1") for p in parts)
    ref, ref_err = _outcome(wsgi.build_environ, req, 7)
    got, got_err = _outcome(_caddysnake.build_environ, req, 7)
    if ref_err or got_err:
        if ref_err != got_err:
            return [f"error: python {ref_err}, C {got_err}"]
        return []
    ref, got = _comparable_environ(ref), _comparable_environ(got)
    return [
        f"{k}: python {ref.get(k, '<absent>')!r}, C {got.get(k, '<absent>')!r}"
        for k in sorted(set(ref) | set(got))
        if ref.get(k, "<absent>") != got.get(k, "<absent>")
    ]


def compare_scope(parts):
    ref, ref_err = _outcome(asgi.build_scope, parts, {})
    got, got_err = _outcome(_caddysnake.build_scope, parts)
    if ref_err or got_err:
        if ref_err != got_err:
            return [f"error: python {ref_err}, C {got_err}"]
        return []
    (ref, ref_body), (got, got_body) = ref, got
    del ref["state"]  # the loop adds it to a C-built scope
    diffs = []
    if ref_body != got_body:
        diffs.append(f"has_body: python {ref_body!r}, C {got_body!r}")
    for k in sorted(set(ref) | set(got)):
        a, b = ref.get(k, "<absent>"), got.get(k, "<absent>")
        if a != b or type(a) is not type(b):
            diffs.append(f"{k}: python {a!r}, C {b!r}")
    if any(type(h) is not tuple for h in got.get("headers", ())):
        diffs.append(f"headers are not tuples: {got['headers']!r}")
    return diffs


def environ_app(environ, start_response):
    diffs = compare_environ(decode_parts(environ["wsgi.input"].read()))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(diffs).encode()]


async def scope_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    diffs = compare_scope(decode_parts(body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(diffs).encode()})
