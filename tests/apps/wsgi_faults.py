"""Apps that end the whole process: a segfault in C code, abort(), and
os._exit() (tests/faults_test.go)."""

import os


def segv_view():
    import ctypes  # not at the top: CPython 3.12 cannot load it in a sub-interpreter

    return ctypes.string_at(0)  # reads address 0: SIGSEGV inside libc


def abort_view():
    os.abort()  # SIGABRT


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/segv":
        segv_view()
    if path == "/abort":
        abort_view()
    if path == "/exit":
        os._exit(3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/exit":
        os._exit(4)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
