# Apps the Go unit tests serve (caddysnake_test.go).
import threading
import time

_local = threading.local()


def hello(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":  # keeps a thread busy (TestBusyGives503)
        time.sleep(0.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from ", environ["PATH_INFO"].encode("latin-1")]


def thread_local(environ, start_response):
    # An OS thread keeps one PyThreadState for its life, so threading.local
    # survives between the requests it serves.
    _local.count = getattr(_local, "count", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d %d" % (threading.get_ident(), _local.count)]


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def boom(environ, start_response):
    raise RuntimeError("boom from unit_app")


not_callable = 42


def stuck(environ, start_response):
    """Never returns: /loop in Python, anything else blocked inside C."""
    if environ["PATH_INFO"] == "/loop":
        while True:
            pass
    threading.Event().wait()


def getenv(environ, start_response):
    # os.environ as the app sees it: /NAME answers NAME's value (env_test.go).
    import os

    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.environ.get(environ["PATH_INFO"][1:], "<unset>").encode()]
