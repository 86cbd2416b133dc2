"""What PEP 3333 and RFC 9110 ask of an app's status line and response
headers, checked before anything is sent; results are memoised.
"""

import re

# PEP 3333, "Other HTTP Features": hop-by-hop headers belong to the server and
# an application must not send them.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    )
)


class WSGIAppError(Exception):
    """The application broke a rule of PEP 3333."""


class NoStartResponse(WSGIAppError):
    """The response iterable ended and start_response() was never called."""


_VALID_STATUS = {}  # status lines that passed, and their codes (bounded as below)


def check_status(status):
    code = _VALID_STATUS.get(status) if type(status) is str else None
    if code is not None:
        return code
    code = _parse_status(status)
    if type(status) is str:
        if len(_VALID_STATUS) >= 256:
            _VALID_STATUS.clear()
        _VALID_STATUS[status] = code
    return code


def _parse_status(status):
    if not isinstance(status, str):
        raise TypeError(f"status must be a str like '200 OK', not {type(status).__name__}")
    code = status[:3]
    if len(status) < 4 or status[3] != " " or not (code.isascii() and code.isdigit()):
        raise WSGIAppError(f"status {status!r} is not of the form '200 OK' (three digits, a space, a reason)")
    if "\r" in status or "\n" in status:
        raise WSGIAppError(f"status {status!r} contains a line break")
    if code[0] == "0":
        raise WSGIAppError(f"status {status!r} is not a valid HTTP status code")
    if code[0] == "1":
        # WSGI has no interim responses; Go would take 1xx as one.
        raise WSGIAppError(f"status {status!r}: a WSGI response status must be 200-999")
    return int(code)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_VALUE_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search

# Headers that passed _check_header, with their Content-Length (or None):
# apps send the same few headers again and again, so most responses skip the
# checks. Keyed by value, so it is exact; bounded by clearing when full.
_VALID_HEADERS = {}
_VALID_HEADERS_MAX = 1024


def check_headers(headers):
    """Validates response headers; returns the Content-Length if set, else None."""
    if type(headers) is not list:
        raise TypeError(f"response_headers must be a list of (name, value) tuples, not {type(headers).__name__}")
    content_length = None
    valid = _VALID_HEADERS
    for item in headers:
        if type(item) is tuple and len(item) == 2 and type(item[0]) is str and type(item[1]) is str:
            try:
                n = valid[item]
            except KeyError:
                n = _check_header(item)
        else:
            n = _check_header(item)
        if n is not None:
            content_length = n
    return content_length


def _check_header(item):
    if type(item) is not tuple or len(item) != 2:
        raise TypeError(f"response header {item!r} is not a (name, value) tuple")
    name, value = item
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"response header {item!r}: name and value must be str")
    lname = name.lower()
    if lname in HOP_BY_HOP:
        raise WSGIAppError(
            f"response header {name!r} is hop-by-hop: the server handles it, apps must not set it (PEP 3333)"
        )
    if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
        raise WSGIAppError(f"response header {name!r} contains a line break")
    if not name:
        raise WSGIAppError("response header with an empty name")
    # RFC 9110 5.1, 5.5: a name is a token; a value has no control
    # characters but HTAB. Go would send a NUL or a space in a name as is.
    if not _TOKEN(name):
        raise WSGIAppError(f"response header name {name!r} is not a token (RFC 9110: no spaces, colons or controls)")
    if _VALUE_CTL(value):
        raise WSGIAppError(f"response header {name!r} has a control character in its value: {value!r}")
    # PEP 3333, "Unicode Issues": header strings must be latin-1.
    for s in (name, value):
        if not s.isascii():
            try:
                s.encode("latin-1")
            except UnicodeEncodeError:
                raise WSGIAppError(f"response header {name!r}: {s!r} is not latin-1 encodable") from None
    content_length = None
    if lname == "content-length":
        v = value.strip()
        if not (v.isascii() and v.isdigit()):
            raise WSGIAppError(f"response header Content-Length: {value!r} is not a number")
        content_length = int(v)
    if type(name) is str and type(value) is str:  # subclasses may compare oddly
        if len(_VALID_HEADERS) >= _VALID_HEADERS_MAX:
            _VALID_HEADERS.clear()
        _VALID_HEADERS[item] = content_length
    return content_length
