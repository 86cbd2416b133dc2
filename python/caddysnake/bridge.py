"""The one place that knows about the native `_caddysnake` module.

Inside Caddy, `_caddysnake` is a built-in module registered by the embedding C
code. Outside Caddy (tests, tooling) it does not exist: `native` is then None
and the exception classes are plain Python stand-ins, so the rest of the
package can be imported and exercised with a fake native module.

The rest of the package calls `bridge.native.<name>`, looked up at call time,
so that tests replace the native module in this one place.
"""

# The levels native.log takes (Go maps them to Caddy's logger's levels).
from .codes import LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARNING  # noqa: F401

try:
    import _caddysnake as native
except ImportError:  # not running inside Caddy
    native = None


if native is not None:
    # Use the native classes so that `except ClientDisconnected` in Python
    # catches exactly what the C functions raise.
    ClientDisconnected = native.ClientDisconnected
    RequestBodyError = native.RequestBodyError
    RequestTimeout = native.RequestTimeout
else:

    class ClientDisconnected(OSError):
        """The client went away; nothing more can be sent for this request."""

    class RequestBodyError(OSError):
        """The request body is malformed or the client stopped sending it."""

    class RequestTimeout(BaseException):
        """Raised in a WSGI request's thread once it ran longer than
        request_timeout (a BaseException, so `except Exception` lets it by)."""


class ConfigError(Exception):
    """A configuration problem; the message says what to fix."""


def log(handle, level, message):
    """native.log for handle (a request's or an app's), which never raises:
    a failure to log must not break a request or the event loop."""
    try:
        native.log(handle, level, message)
    except BaseException:  # noqa: B036
        pass
