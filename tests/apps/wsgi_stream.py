"""/stream: a generator yielding 5 chunks, 300 ms apart."""

import time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return chunks()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def chunks():
    for i in range(5):
        if i:
            time.sleep(0.3)
        yield b"chunk-%d|" % i
