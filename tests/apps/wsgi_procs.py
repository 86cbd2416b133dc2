"""WSGI app for the worker-process tests (/segv stays on line 23): which
process serves, an echo, a stream, three ways to die, a leak, 2 GiB, stuck."""

import ctypes
import os


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk %d\n" % i for i in range(100))
    if path == "/exit":
        os._exit(7)
    if path == "/segv":
        ctypes.string_at(0)
    if path == "/ids":
        start_response("200 OK", [("Content-Type", "text/plain")])
        ids = (os.getuid(), os.getgid(), ",".join(map(str, os.getgroups())))
        return [("%d %d [%s]" % ids).encode()]
    if path == "/leak":
        leaked.append(b"x" * (32 << 20))  # written, so resident
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/csleep":
        ctypes.CDLL(None).sleep(30)  # GIL released: the thread is written off
    if path == "/cspin":
        ctypes.PyDLL(None).sleep(30)  # GIL held: the whole worker is stuck
    if path == "/abort":
        os.abort()  # SIGABRT
    if path == "/alloc2g":  # MemoryError under memory_limit 1GiB
        n = len(bytearray(2 << 30))  # calloc: no page is touched without a limit
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(n).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path"]


leaked = []  # /leak's
