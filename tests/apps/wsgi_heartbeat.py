"""A WSGI app that starts a non-daemon thread that never ends, as apps with
a background heartbeat do: a sub-interpreter cannot end while it runs
(Py_EndInterpreter joins it), which must not hold up later app loads."""

import threading
import time


def _beat():
    while True:
        time.sleep(0.5)


threading.Thread(target=_beat, name="heartbeat").start()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"beat"]
