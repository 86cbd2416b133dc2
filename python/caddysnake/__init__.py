"""caddysnake: the Python half of a Caddy module that serves WSGI and ASGI apps.

Kept deliberately light: the embedding server imports this package at start-up
and the Go side reads the version below with a regex, so that assignment must
keep its exact form (name, space, equals sign, space, double-quoted string)
and be the only text here that looks like it.
"""

__version__ = "0.1.0"

from .bridge import ClientDisconnected, ConfigError, RequestBodyError, RequestTimeout  # noqa: E402

__all__ = ["__version__", "ClientDisconnected", "ConfigError", "RequestBodyError", "RequestTimeout"]
