"""ASGI scopes from the inbox's event tuples: HTTP (spec 2.5) and WebSocket
(spec 2.4).

build_scope and build_websocket_scope are the pure-Python reference
builders: Go sends EV_REQUEST / EV_WS_CONNECT with the request's parts, and
the C builder (scope.c), which makes the scope of EV_REQUEST_SCOPE events,
is checked against build_scope by the tests.
"""

# Request fields in an EV_REQUEST parts tuple before the header pairs.
_FIXED_PARTS = 12


def _address(host, port):
    if not host:
        return None
    return (host.decode("latin-1"), int(port) if port else None)


def _split_parts(parts):
    n = len(parts)
    if n < _FIXED_PARTS or (n - _FIXED_PARTS) % 2:
        raise ValueError(f"malformed request parts tuple of length {n}")
    pairs = iter(parts[_FIXED_PARTS:])
    return parts[:_FIXED_PARTS], list(zip(pairs, pairs, strict=False))


def _connection_fields(fixed, headers, state):
    """The scope keys HTTP and WebSocket scopes share."""
    (
        http_version,
        _method,
        scheme,
        path,
        raw_path,
        query_string,
        root_path,
        client_host,
        client_port,
        server_host,
        server_port,
        _has_body,
    ) = fixed
    return {
        "http_version": http_version.decode("latin-1"),
        "scheme": scheme.decode("latin-1"),
        # The spec wants path decoded from UTF-8; surrogateescape keeps bytes
        # that are not UTF-8 recoverable instead of failing the request.
        "path": path.decode("utf-8", "surrogateescape"),
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path.decode("utf-8", "surrogateescape"),
        "headers": headers,
        "client": _address(client_host, client_port),
        "server": _address(server_host, server_port),
        # Lifespan spec, "Lifespan State": each request gets a shallow copy,
        # so a request adding keys does not leak them into the next ones.
        "state": state.copy(),
    }


# The "asgi" and "extensions" values of an HTTP scope; each scope gets
# copies (the C builder, scope.c, reads these too).
HTTP_ASGI = {"version": "3.0", "spec_version": "2.5"}
HTTP_EXTENSIONS = {
    "http.response.pathsend": {},
    "http.response.early_hint": {},
    "http.response.trailers": {},
}


def build_scope(parts, state):
    """Builds an HTTP scope (ASGI HTTP spec 2.5, "Connection Scope") from an
    EV_REQUEST parts tuple; returns (scope, has_body). The reference for the
    C builder (scope.c), which makes the scope of EV_REQUEST_SCOPE events."""
    fixed, headers = _split_parts(parts)
    scope = {
        "type": "http",
        "asgi": dict(HTTP_ASGI),
        "method": fixed[1].decode("latin-1"),
        **_connection_fields(fixed, headers, state),
        "extensions": {name: dict(opts) for name, opts in HTTP_EXTENSIONS.items()},
    }
    return scope, fixed[11] != b"0"


def _subprotocols(headers):
    # WebSocket spec, "Connection Scope": subprotocols come from the
    # Sec-WebSocket-Protocol headers; RFC 6455 4.1 allows several headers,
    # each a comma-separated list.
    out = []
    for name, value in headers:
        if name.lower() == b"sec-websocket-protocol":
            out += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return out


def build_websocket_scope(parts, state):
    """Builds a WebSocket scope (ASGI WebSocket spec 2.4, "Connection Scope")
    from an EV_WS_CONNECT parts tuple, which has the HTTP layout; its method
    and has_body fields are not part of a WebSocket scope."""
    fixed, headers = _split_parts(parts)
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        **_connection_fields(fixed, headers, state),
        "subprotocols": _subprotocols(headers),
        "extensions": {"websocket.http.response": {}},
    }


def request_args(event, state):
    """Request's constructor arguments (after server and handle) from an
    EV_REQUEST event."""
    return build_scope(event[2], state)


def c_request_args(event, state):
    """The same from an EV_REQUEST_SCOPE event."""
    scope = event[2]
    # Lifespan spec, "Lifespan State": a shallow copy per request.
    scope["state"] = state.copy()
    return scope, event[3]


def websocket_args(event, state):
    """WebSocket's constructor arguments from an EV_WS_CONNECT event."""
    return (build_websocket_scope(event[2], state),)
