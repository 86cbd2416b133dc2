"""Dumps the WSGI environ as JSON: {"env": {key: value}, "types": {key: type}}.

Values that JSON cannot carry (wsgi.input, wsgi.errors, ...) are given as
their type name; tuples become lists.
"""

import json


def app(environ, start_response):
    # Drain the body so the request is complete.
    inp = environ["wsgi.input"]
    while inp.read(65536):
        pass
    env = {}
    types = {}
    for k, v in environ.items():
        types[k] = type(v).__name__
        if isinstance(v, (str, bool, int, float)) or v is None:
            env[k] = v
        elif isinstance(v, tuple):
            env[k] = list(v)
        else:
            env[k] = "<%s>" % type(v).__name__
    body = json.dumps({"env": env, "types": types}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
