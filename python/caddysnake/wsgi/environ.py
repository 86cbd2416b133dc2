"""The environ of one request (PEP 3333, "environ Variables").

build_environ is the pure-Python reference builder; the C side builds the
environ itself (environ.c) from _TEMPLATE, InputStream and ErrorStream, and
the tests check the two agree.
"""

from .. import __version__
from .response import FileWrapper
from .streams import ErrorStream, InputStream

# Everything that is the same for every request (PEP 3333, "environ
# Variables"); build_environ() copies it, which is faster than setting keys.
_TEMPLATE = {
    "SERVER_SOFTWARE": "caddysnake/" + __version__,
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
    # The server de-chunks the body and signals its end with b"" (the
    # "wsgi.input_terminated" extension): Werkzeug/Flask need it to read
    # bodies that have no Content-Length (chunked uploads).
    "wsgi.input_terminated": True,
}

# Keys of the most common headers, in the canonical form Go sends them.
_KEYS = {
    "Content-Type": "CONTENT_TYPE",
    "Content-Length": "CONTENT_LENGTH",
    "Host": "HTTP_HOST",
    "User-Agent": "HTTP_USER_AGENT",
    "Accept": "HTTP_ACCEPT",
    "Accept-Encoding": "HTTP_ACCEPT_ENCODING",
    "Accept-Language": "HTTP_ACCEPT_LANGUAGE",
    "Cookie": "HTTP_COOKIE",
    "Referer": "HTTP_REFERER",
    "Authorization": "HTTP_AUTHORIZATION",
    "X-Forwarded-For": "HTTP_X_FORWARDED_FOR",
    "X-Forwarded-Proto": "HTTP_X_FORWARDED_PROTO",
    "X-Forwarded-Host": "HTTP_X_FORWARDED_HOST",
}

# Upper-cases ASCII letters only: str.upper() would turn some latin-1
# characters into non-latin-1 ones ("\xff" -> "\u0178"), and every environ
# string must stay a latin-1 "native string" (PEP 3333, "Unicode Issues").
_ASCII_KEY = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
_ASCII_KEY[ord("-")] = ord("_")


def _header_key(name):
    if name.isascii():
        key = "HTTP_" + name.upper().replace("-", "_")
    else:
        key = "HTTP_" + name.translate(_ASCII_KEY)
    # PEP 3333: these two have no HTTP_ prefix.
    if key == "HTTP_CONTENT_TYPE":
        return "CONTENT_TYPE"
    if key == "HTTP_CONTENT_LENGTH":
        return "CONTENT_LENGTH"
    return key


def build_environ(req, handle):
    """Builds the environ dict for one request (PEP 3333, "environ Variables").

    req is the flat tuple of latin-1 str the C side passes: ten request
    fields, then header name/value pairs. A pure reference implementation.
    """
    env = _TEMPLATE.copy()
    (
        env["REQUEST_METHOD"],
        env["SCRIPT_NAME"],
        env["PATH_INFO"],
        env["QUERY_STRING"],
        env["SERVER_PROTOCOL"],
        env["wsgi.url_scheme"],
        env["SERVER_NAME"],
        env["SERVER_PORT"],
        env["REMOTE_ADDR"],
        remote_port,
    ) = req[:10]
    if remote_port:
        env["REMOTE_PORT"] = remote_port
    env["wsgi.input"] = InputStream(handle)
    env["wsgi.errors"] = ErrorStream(handle)

    n = len(req)
    if n < 10 or (n - 10) % 2:
        raise ValueError(f"malformed request tuple of length {n}")
    for i in range(10, n, 2):
        name = req[i]
        # "X-Foo_Bar" and "X-Foo-Bar" both mangle to HTTP_X_FOO_BAR: a client
        # could spoof a header a proxy in front of us set (e.g. an auth or
        # client-IP header). Drop names with "_", as nginx and Apache do.
        if "_" in name:
            continue
        key = _KEYS.get(name) or _header_key(name)
        value = req[i + 1]
        old = env.get(key)
        if old is None:
            env[key] = value
        else:
            # RFC 9110 5.3: repeated fields combine with ", "; cookies are
            # the exception and combine with "; " (RFC 9113 8.2.3).
            env[key] = old + ("; " if key == "HTTP_COOKIE" else ", ") + value
    return env
