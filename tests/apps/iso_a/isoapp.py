"""Reports what this interpreter sees, for the isolation tests.
iso_b/isoapp.py links to this file, so both apps use the module name isoapp
and differ only by the shared_mod beside them."""

import json
import sys
import time
import uuid

import _caddysnake
import shared_mod

# Made once per import: tells interpreters apart.
INSTANCE = uuid.uuid4().hex


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/mutate":
        # A module-level value of the app's own module and of a stdlib module
        # that every interpreter imports.
        shared_mod.VALUE = "mutated by " + shared_mod.NAME
        json.caddysnake_marker = shared_mod.NAME
    elif path == "/raise":
        raise RuntimeError("boom in " + shared_mod.NAME)
    elif path == "/exit":
        raise SystemExit(3)
    elif path == "/recurse":
        def down(n):
            return down(n + 1)
        down(0)
    elif path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "0.5"))
    out = {
        "name": shared_mod.NAME,
        "value": shared_mod.VALUE,
        "json_marker": getattr(json, "caddysnake_marker", None),
        "sys_path": sys.path,
        "instance": INSTANCE,
        "interpreters": _caddysnake.interpreter_count(),
        "venv_modules": sorted(m for m in ("flask", "django") if m in sys.modules),
    }
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
