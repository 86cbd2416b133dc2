"""For caddy python-server and the env settings (cli_test.go): /NAME answers
os.environ's value of NAME, or <unset>; /interface answers "wsgi"."""

import os


def app(environ, start_response):
    name = environ["PATH_INFO"].lstrip("/")
    body = "wsgi" if name == "interface" else os.environ.get(name, "<unset>")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
