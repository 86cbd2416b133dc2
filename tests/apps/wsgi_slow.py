"""Sleeps 1 s, then answers the ?i= query value."""

import time
from urllib.parse import parse_qs


def app(environ, start_response):
    if environ["PATH_INFO"] == "/fast":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fast"]
    time.sleep(1)
    i = parse_qs(environ.get("QUERY_STRING", "")).get("i", [""])[0]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [i.encode()]
