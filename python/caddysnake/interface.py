"""Telling a WSGI app from an ASGI one, so that serving one under the other's
directive fails at configuration time instead of answering every request
with a 500 TypeError.

Only a sure answer refuses an app: anything this cannot classify is served
as configured.
"""

import inspect
import sys

from .bridge import ConfigError

WSGI = "wsgi"
ASGI = "asgi"

_DIRECTIVE = {WSGI: "module_wsgi", ASGI: "module_asgi"}


def _is_async(fn):
    if fn is None:
        return False
    if inspect.iscoroutinefunction(fn):
        return True
    # asgiref's markcoroutinefunction before 3.12 (and asyncio's legacy
    # marker): asyncio.iscoroutinefunction sees it, inspect's does not.
    asyncio = sys.modules.get("asyncio")
    marker = getattr(getattr(asyncio, "coroutines", None), "_is_coroutine", None)
    return marker is not None and getattr(fn, "_is_coroutine", None) is marker


def _binds(fn, n):
    """Whether fn accepts n positional arguments; None if unknown."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*range(n))
        return True
    except TypeError:
        return False


def detect(app):
    """WSGI, ASGI, or None when unsure.

    ASGI: a coroutine function, or an object whose __call__ is one
    (Starlette, FastAPI, Django's ASGIHandler, socketio.ASGIApp, Channels),
    or a plain callable that takes exactly (scope, receive, send). WSGI: a
    plain (not async) callable that takes exactly (environ,
    start_response): Flask, Django's WSGIHandler, a WSGI function. Classes
    are left alone (an ASGI 2 app may be a class taking the scope)."""
    if inspect.isclass(app):
        return None
    if _is_async(app) or _is_async(getattr(app, "__call__", None)):  # noqa: B004 - the object's __call__
        return ASGI
    one, two, three = _binds(app, 1), _binds(app, 2), _binds(app, 3)
    if None in (one, two, three):
        return None
    if two and not one and not three:
        return WSGI
    if three and not two:
        return ASGI
    return None


def check(target, app, interface):
    """Raises ConfigError if app is surely not of interface ("wsgi" or
    "asgi"), naming the directive that serves it."""
    if interface not in _DIRECTIVE:
        return
    found = detect(app)
    if found is None or found == interface:
        return
    if found == ASGI:
        what = "an ASGI application (an async callable taking scope, receive, send)"
    else:
        what = "a WSGI application (a callable taking environ, start_response)"
    raise ConfigError(f'"{target}" is {what}: serve it with {_DIRECTIVE[found]}, not {_DIRECTIVE[interface]}')
