"""What the Go side asks of an interpreter around loading an app, besides
the load itself (loader.py): the app's environment variables (the env and
env_file settings) and which interface an app speaks (caddy python-server).

Each function takes and returns one string, so that one small C entry point
(caddysnake_call_prepare) serves them all.
"""

import inspect
import json
import os

from . import loader


def set_environ(pairs_json):
    """Sets os.environ from a JSON object {name: value}, before the app is
    imported. os.environ also calls putenv, so the process environment (and
    so subprocesses and C libraries) sees the same values. Returns ""."""
    pairs = json.loads(pairs_json)
    for name, value in pairs.items():
        os.environ[name] = value
    return ""


def interface_of(obj):
    """ "asgi" or "wsgi" for an app object, as uvicorn's --interface auto
    tells ASGI 3 from ASGI 2, extended to WSGI:

    - a coroutine function (async def app(scope, receive, send)), or an
      object whose __call__ is one (FastAPI, Starlette, Django's
      ASGIHandler): ASGI 3;
    - a class whose instances are awaitable or have an async __call__
      (an ASGI 2 double callable): ASGI;
    - otherwise a callable of three positional parameters is ASGI (a sync
      function returning a coroutine), anything else WSGI (Flask, Django's
      WSGIHandler, a plain def app(environ, start_response))."""
    if inspect.isclass(obj):
        call = getattr(obj, "__call__", None)  # noqa: B004 - the instances' __call__, not callable()
        if hasattr(obj, "__await__") or inspect.iscoroutinefunction(call):
            return "asgi"
        return "wsgi"
    if inspect.iscoroutinefunction(obj):
        return "asgi"
    call = getattr(obj, "__call__", None)  # noqa: B004 - the method itself, not callable()
    if call is not None and not inspect.isfunction(obj) and inspect.iscoroutinefunction(call):
        return "asgi"
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return "wsgi"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return "asgi" if len(positional) == 3 else "wsgi"


def detect_interface(args_json):
    """Imports the app described by a JSON object {"target", "working_dir",
    "venv"} as load_app would, and returns interface_of(it)."""
    args = json.loads(args_json)
    obj = loader.load_app(args["target"], args.get("working_dir", ""), args.get("venv", ""))
    return interface_of(obj)
