"""The WSGI (PEP 3333) server side of caddysnake.

The C code calls `serve(app, req, handle)` once per request on a worker
thread. Everything that talks to Caddy goes through `_native` (the
`_caddysnake` module); it is looked up at call time so tests can replace it.
"""

import io
import os
import re
import stat
import sys
import traceback

from . import __version__, bridge
from .bridge import ClientDisconnected, RequestTimeout

# The native module. A module attribute read at call time: tests monkeypatch it.
_native = bridge.native

# serve() result codes, as understood by the C/Go caller.
OK = 0
# The largest body of several chunks serve joins and hands back whole for Go
# to send after the call (the C side copies it into a buffer of
# wholeResponseBytes, threads.go); larger ones are written chunk by chunk,
# without joining them first.
WHOLE_MAX = 32 * 1024
# A body of one bytes object is handed back up to this size (the outbox's
# OUTBOX_LIMIT, lanes.h): the C side sends one past 16 KiB from the object
# itself, without a copy (KEEP_BODY_MAX, caddysnake.c). A larger one is
# written, and the worker waits while the client lags behind.
WHOLE_BYTES_MAX = 256 * 1024
APP_ERROR = 1  # the app failed before headers were sent: answer 500 (or 400)
APP_ERROR_AFTER_HEADERS = 2  # the response is half sent: abort the connection
CLIENT_GONE = 3  # the client disconnected: nothing more to do

# Size of the reads wsgi.input makes when it has to buffer (readline, read()).
CHUNK = 64 * 1024

LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR = 0, 1, 2, 3

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


class _NoStartResponse(WSGIAppError):
    """The response iterable ended and start_response() was never called."""


# ---------------------------------------------------------------- wsgi.input


class InputStream:
    """wsgi.input (PEP 3333, "Input and Error Streams").

    Streams the body from Caddy: nothing is read before the app asks for it.
    read(n) asks the native side for exactly the bytes it still needs, so a
    large read(n) is one native call and nothing is over-buffered; only
    readline() needs read-ahead, in reads of up to CHUNK bytes that return
    as soon as anything arrived. The buffer is a
    bytearray: deleting from its front is cheap, so there is no quadratic
    copying. End of body is a b"" from the native read; after it no more
    native calls are made and every read returns b"".
    """

    __slots__ = ("_handle", "_buf", "_eof", "_finished")

    def __init__(self, handle):
        self._handle = handle
        self._buf = bytearray()
        self._eof = False
        self._finished = False

    def _native_read(self, size, partial=False):
        if self._finished:
            # The handle is dead once serve() returned: refuse rather than
            # read some other request's body.
            raise ValueError("wsgi.input used after the request finished")
        # partial: return as soon as anything came (readline's read-ahead must
        # not hold a line back until CHUNK bytes of a slow upload arrived).
        data = (_native.read1 if partial else _native.read)(self._handle, size)
        if not data:
            self._eof = True
        return data

    def _take(self, n):
        buf = self._buf
        if n >= len(buf):
            out = bytes(buf)
            buf.clear()
        else:
            out = bytes(buf[:n])
            del buf[:n]
        return out

    def read(self, size=-1):
        if size is None or size < 0:
            return self._read_all()
        buf = self._buf
        if len(buf) >= size or self._eof:
            return self._take(size)
        parts = [self._take(len(buf))] if buf else []
        have = len(parts[0]) if parts else 0
        # The native read returns fewer bytes only at the end of the body, but
        # loop anyway: a short read must never truncate the body.
        while have < size:
            data = self._native_read(size - have)
            if not data:
                break
            parts.append(data)
            have += len(data)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def _read_all(self):
        parts = [self._take(len(self._buf))] if self._buf else []
        while not self._eof:
            data = self._native_read(CHUNK)
            if data:
                parts.append(data)
        return b"".join(parts)

    def readline(self, size=-1):
        # PEP 3333 allows readline(size) (a "hint" in the PEP, but honoured
        # here as a limit, like io does).
        if size is None:
            size = -1
        buf = self._buf
        start = 0  # bytes of buf already known to hold no newline
        while True:
            limit = len(buf) if size < 0 else min(len(buf), size)
            i = buf.find(b"\n", start, limit)
            if i >= 0:
                return self._take(i + 1)
            if (0 <= size <= len(buf)) or self._eof:
                return self._take(limit)
            start = limit
            want = CHUNK if size < 0 else min(CHUNK, size - len(buf))
            data = self._native_read(want, partial=True)
            if data:
                buf += data

    def readlines(self, hint=-1):
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


# ---------------------------------------------------------------- wsgi.errors


class ErrorStream:
    """wsgi.errors (PEP 3333, "Input and Error Streams"): a text stream.

    Complete lines go to Caddy's log at warning level; a partial line waits
    for its newline or for flush() (serve() flushes at the end of a request).
    """

    __slots__ = ("_handle", "_pending", "_finished")

    def __init__(self, handle):
        self._handle = handle
        self._pending = []
        self._finished = False

    def _emit(self, line):
        if self._finished:
            # The request is over (an app kept a reference): its handle is
            # no longer valid, so fall back to the process's stderr.
            sys.stderr.write(line + "\n")
        else:
            _native.log(self._handle, LOG_WARNING, line)

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(s).__name__}")
        if "\n" not in s:
            if s:
                self._pending.append(s)
            return len(s)
        lines = s.split("\n")
        last = lines.pop()
        if self._pending:
            lines[0] = "".join(self._pending) + lines[0]
            self._pending.clear()
        for line in lines:
            self._emit(line)
        if last:
            self._pending.append(last)
        return len(s)

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        if self._pending:
            line = "".join(self._pending)
            self._pending.clear()
            self._emit(line)


# ---------------------------------------------------------------- file_wrapper


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333, "Optional Platform-Specific File Handling").

    Iterating yields blocks of the file. serve() recognises it and, when the
    file is a regular file with a descriptor, has Caddy send it with sendfile
    instead of copying it through Python.
    """

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        _check_sendable(self.filelike)
        read = self.filelike.read
        size = self.blksize
        while True:
            block = read(size)
            if block is None:
                # A non-blocking file with nothing to read yet: ending here
                # would pass a cut response off as whole.
                raise WSGIAppError(f"wsgi.file_wrapper: {_file_name(self.filelike)}: read() returned None "
                                   f"(a non-blocking file with no data ready)")
            if not block:
                return
            yield block

    def close(self):
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def _file_name(filelike):
    name = getattr(filelike, "name", None)
    if isinstance(name, int):  # os.fdopen(fd): the path is the descriptor's
        try:
            name = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return repr(name) if name is not None else type(filelike).__name__


def _check_sendable(filelike):
    """Refuses a file whose bytes cannot be sent as a response: a directory,
    or a non-blocking FIFO, socket or device (its reads cannot tell "nothing
    yet" from the end). A blocking pipe streams as any file-like does."""
    try:
        fd = filelike.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError, TypeError):
        return  # no descriptor: a file-like object, read as such
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise WSGIAppError(f"wsgi.file_wrapper: {_file_name(filelike)} is a directory, not a file")
    try:
        blocking = os.get_blocking(fd)
    except OSError:
        blocking = True
    if not blocking:
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise WSGIAppError(f"wsgi.file_wrapper: {_file_name(filelike)} is a non-blocking {kind}, "
                           f"not a regular file: its end cannot be told from a pause")


# ---------------------------------------------------------------- environ

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


# ---------------------------------------------------------------- response


_VALID_STATUS = {}  # status lines that passed, and their codes (bounded as below)


def _check_status(status):
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


def _check_headers(headers):
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
        raise WSGIAppError(f"response header {name!r} is hop-by-hop: the server handles it, apps must not set it (PEP 3333)")
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


def _is_bytes(chunk):
    return type(chunk) is bytes or isinstance(chunk, (bytes, bytearray))


class _Response:
    """The response side of one request: start_response, write and sending."""

    __slots__ = (
        "handle", "head", "status", "code", "headers", "remaining",
        "sent", "disconnected", "finished", "whole",
    )

    def __init__(self, handle, head):
        self.handle = handle
        self.head = head  # HEAD request: send headers, never body bytes
        self.status = None  # set by start_response
        self.code = 0
        self.headers = None
        self.remaining = None  # body bytes still allowed by Content-Length
        self.sent = False  # headers sent
        self.disconnected = False
        self.finished = False
        # (status code, headers, body) of a response known whole before
        # anything was sent, for serve to hand back (see finish).
        self.whole = None

    # PEP 3333, "The start_response() Callable".
    def start_response(self, status, response_headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    # Too late to change the response: re-raise the app's
                    # error so it aborts (the PEP requires the re-raise).
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # avoid a frame <-> traceback cycle
        elif self.status is not None:
            raise WSGIAppError("start_response() called a second time without exc_info")
        code = _check_status(status)
        content_length = _check_headers(response_headers)
        self.status = status
        self.code = code
        # A copy: the app may mutate its list afterwards, and we may add
        # Content-Length to ours.
        self.headers = list(response_headers)
        self.remaining = content_length
        return self.write

    # PEP 3333, "The write() Callable": unbuffered, so flush now.
    def write(self, data):
        if self.status is None:
            raise WSGIAppError("write() called before start_response()")
        if not _is_bytes(data):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if self.sent and not data:
            return
        self._send(data, True)

    def _send(self, data, flush):
        if self.finished:
            raise WSGIAppError("write() called after the request finished")
        if self.whole is not None:
            # Something writes after finish (from close()): the whole
            # response goes first.
            code, headers, body = self.whole
            self.whole = None
            try:
                _native.write(self.handle, code, headers, body, False)
            except ClientDisconnected:
                self.disconnected = True
                raise
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if self.head:
            data = b""
        elif self.remaining is not None:
            # PEP 3333, "Handling the Content-Length Header": never send
            # more than the app declared.
            if len(data) > self.remaining:
                data = data[: self.remaining]
            self.remaining -= len(data)
        headers = None if self.sent else self.headers
        if headers is None and not data:
            return
        try:
            _native.write(self.handle, self.code, headers, data, flush)
        except ClientDisconnected:
            self.disconnected = True
            raise
        self.sent = True

    def _hand_back(self, body):
        """Keeps the whole response for serve to return instead of writing
        it: Go sends it after the call, which saves a call back into Go and
        two GIL hand-overs per request. Nothing may have been sent yet."""
        if self.head:
            body = b""
        elif len(body) > self.remaining:
            body = body[: self.remaining]  # PEP 3333: never past Content-Length
        self.remaining -= len(body)
        self.whole = (self.code, self.headers, body)
        self.sent = True

    def _set_content_length(self, n):
        self.headers.append(("Content-Length", str(n)))
        self.remaining = n

    def finish(self, result):
        """Sends the response iterable (PEP 3333, "Buffering and Streaming")."""
        if (type(result) is list and len(result) == 1 and type(result[0]) is bytes
                and len(result[0]) <= WHOLE_BYTES_MAX and self.status is not None and not self.sent):
            # The most common body of all, one bytes in a list: what the
            # general case below does, in fewer steps.
            body = result[0]
            if self.remaining is None:
                self._set_content_length(len(body))
            self._hand_back(body)
            return
        if isinstance(result, FileWrapper) and self._sendfile(result):
            return
        if isinstance(result, (list, tuple)):
            # The whole body is known: send it with a Content-Length and let
            # the server flush once at the end.
            flush = False
            for chunk in result:
                if not _is_bytes(chunk):
                    raise TypeError(f"WSGI app returned a {type(chunk).__name__} in its body, body items must be bytes")
            if self.status is None:
                raise _NoStartResponse()
            total = sum(map(len, result))
            if self.remaining is None:
                self._set_content_length(total)
            if not self.sent and total <= WHOLE_MAX:
                self._hand_back(b"".join(result))
                return
        else:
            # A generator or other iterable: stream each chunk as produced.
            flush = True
        for chunk in result:
            if not chunk:
                # PEP 3333: headers wait for the first non-empty chunk.
                if not _is_bytes(chunk):
                    raise TypeError(f"WSGI app yielded a {type(chunk).__name__}, body items must be bytes")
                continue
            if not _is_bytes(chunk):
                raise TypeError(f"WSGI app yielded a {type(chunk).__name__}, body items must be bytes")
            if self.status is None:
                raise _NoStartResponse()
            self._send(chunk, flush)
            if self.remaining == 0 and not self.head:
                break  # Content-Length reached: stop iterating
        if self.status is None:
            raise _NoStartResponse()
        if not self.sent:
            self._send(b"", False)

    def _sendfile(self, wrapper):
        """Sends a FileWrapper's regular file with native.sendfile.

        Returns False (the caller iterates it instead) when the file-like has
        no usable descriptor, is not a regular file, or is not seekable.
        """
        f = wrapper.filelike
        if isinstance(f, io.TextIOBase):
            return False  # iterating yields str: let that path report it
        _check_sendable(f)
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            seekable = getattr(f, "seekable", None)
            if seekable is not None and not seekable():
                return False
            offset = f.tell()
        except (AttributeError, OSError, ValueError, TypeError):
            return False
        if self.status is None:
            raise _NoStartResponse()
        count = max(st.st_size - offset, 0)
        if self.remaining is None:
            self._set_content_length(count)
        else:
            count = min(count, self.remaining)
        if self.head or count == 0:
            self._send(b"", False)
            return True
        if self.finished:
            raise WSGIAppError("response sent after the request finished")
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        headers = None if self.sent else self.headers
        try:
            sent = _native.sendfile(self.handle, self.code, headers, fd, offset, count)
        except ClientDisconnected:
            self.disconnected = True
            raise
        self.sent = True
        self.remaining -= sent
        return True


# ---------------------------------------------------------------- serve


def _log(handle, level, message):
    try:
        _native.log(handle, level, message)
    except BaseException:
        pass  # serve() must not raise, even if logging fails


def _failed(resp, handle, exc, what):
    """Logs an exception from the app and returns serve()'s result code."""
    if isinstance(exc, ClientDisconnected) or (resp is not None and resp.disconnected):
        _log(handle, LOG_DEBUG, f"client disconnected: {exc}")
        return CLIENT_GONE
    # A whole response still waiting to be handed back was not sent: the
    # failure (in close()) can still become a clean 500.
    sent = resp is not None and resp.sent and resp.whole is None
    if isinstance(exc, RequestTimeout):
        # Go logs the timeout with the stack it was stuck in, and answers.
        _log(handle, LOG_DEBUG, "request_timeout: RequestTimeout unwound the request")
        return APP_ERROR_AFTER_HEADERS if sent else APP_ERROR
    if isinstance(exc, _NoStartResponse):
        _log(handle, LOG_ERROR, "WSGI app error: start_response() was not called before the response iterable ended")
        return APP_ERROR
    where = " after the response headers were sent" if sent else ""
    tb = "".join(traceback.format_exception(exc))
    _log(handle, LOG_ERROR, f"{what}{where}:\n{tb}")
    return APP_ERROR_AFTER_HEADERS if sent else APP_ERROR


def _thread_stack(ident):
    """The Python stack thread ident is in, for the log line of a request
    that ran over request_timeout (called by the C side, with the GIL)."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return "(no Python frame: the thread is not running Python code)"
    return "".join(traceback.format_stack(frame))


def serve(app, req, handle):
    """Runs one request; returns OK, APP_ERROR, APP_ERROR_AFTER_HEADERS or
    CLIENT_GONE, or (OK, status code, headers, body) for a response that is
    still to be sent whole. Never raises: apps' SystemExit and KeyboardInterrupt are
    caught too, since they must not unwind into the C caller."""
    code = OK
    resp = None
    result = None
    streams = None
    try:
        # The C side builds the environ itself (environ.c); the tuple form
        # is the pure-Python reference, for tests and tools.
        environ = req if type(req) is dict else build_environ(req, handle)
        # Kept aside: middleware may replace the environ entries.
        streams = (environ["wsgi.input"], environ["wsgi.errors"])
        resp = _Response(handle, environ["REQUEST_METHOD"] == "HEAD")
        result = app(environ, resp.start_response)
        resp.finish(result)
        if resp.disconnected:
            # The app caught ClientDisconnected and carried on: the response
            # is still incomplete.
            raise ClientDisconnected("client disconnected")
    except BaseException as exc:
        code = _failed(resp, handle, exc, "WSGI app raised an exception")
    if result is not None:
        # PEP 3333, "Specification Details": close() must be called whenever
        # the request ends, normally or not.
        try:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            c = _failed(resp, handle, exc, "WSGI app raised an exception in close()")
            if code == OK:
                code = c
    if resp is not None:
        resp.finished = True
    if streams is not None:
        # The handle dies with this request: flush what the app logged and
        # make late uses of the streams harmless.
        stream, errors = streams
        stream._finished = True
        if getattr(errors, "_pending", True):
            try:
                errors.flush()
            except BaseException:
                pass
        errors._finished = True
    if resp is not None and resp.whole is not None:
        whole, resp.whole = resp.whole, None  # late writes must not send it again
        if code == OK:
            return (OK, *whole)
    return code
