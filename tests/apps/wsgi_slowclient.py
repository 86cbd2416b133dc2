"""/big: 64 MiB, more than loopback socket buffers hold, so a client that
does not read blocks the thread writing it; anything else: "ok"."""

CHUNK = b"x" * (1024 * 1024)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (CHUNK for _ in range(64))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
