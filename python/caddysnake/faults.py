"""Leaving a trace when an app ends the whole process.

os._exit() skips every cleanup, Caddy's included: without this, an app that
calls it takes Caddy and every site down with nothing in the log. install()
wraps os._exit in this interpreter so that the call is logged first, naming
the app, the request being served (method and URI, from the bridge's
logger) and the Python stack, and then proceeds: the exit is not refused,
since a caller that wants it has no other way out and may be a library
giving up on purpose. Fatal signals are faulthandler's job (startup.c, faultchain.c).
"""

import os
import sys
import traceback

from . import bridge
from .bridge import LOG_ERROR

# The process that installed the wrapper: a forked child (multiprocessing's
# fork start method ends its children with os._exit) must not call into
# Caddy's Go runtime, which does not survive fork, so it just exits.
_pid = None

# Apps loaded in this interpreter: id(callable) -> "module:attribute"
# (caddysnake.loader.load_app fills it).
targets = {}


def _request():
    """(handle, app callable) of the request the calling thread serves, or
    (0, None): found on the stack, in the frame of caddysnake.wsgi.serve or
    of the ASGI exchange's run(), so that serving pays nothing for it. The
    file names below must follow those functions if they move."""
    f = sys._getframe(2)
    while f is not None:
        code = f.f_code
        if code.co_filename.endswith("caddysnake/wsgi/server.py") and code.co_name == "serve":
            return f.f_locals.get("handle", 0), f.f_locals.get("app")
        if code.co_filename.endswith("caddysnake/asgi/exchange.py") and code.co_name == "run":
            ex = f.f_locals.get("self")
            server = getattr(ex, "server", None)
            return getattr(ex, "handle", 0), getattr(server, "app", None)
        f = f.f_back
    return 0, None


def _app_name(app):
    if app is not None and id(app) in targets:
        return targets[id(app)]
    if len(targets) == 1:
        return next(iter(targets.values()))
    return "an app" if not targets else "one of " + ", ".join(sorted(set(targets.values())))


def _exit(status, _real=os._exit):
    if os.getpid() == _pid and bridge.native is not None:
        try:
            handle, app = _request()
            where = "".join(traceback.format_stack(sys._getframe(1)))
            during = "while serving this request" if handle else "outside any request"
            bridge.native.log(
                handle,
                LOG_ERROR,
                f"python app {_app_name(app)} called os._exit({status!r}) {during}: the Caddy process "
                f'exits now, with every site it serves (see "When an app crashes the process" in '
                f"caddysnake's README). Called from:\n{where}",
            )
        except BaseException:  # noqa: B036 - the exit must happen whatever logging does
            pass
    _real(status)


def install():
    """Wraps os._exit in this interpreter; safe to call again."""
    global _pid
    _pid = os.getpid()
    if getattr(os._exit, "__caddysnake_original__", None) is None:
        _exit.__caddysnake_original__ = os._exit
        os._exit = _exit
