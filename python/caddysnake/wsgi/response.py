"""The response side of one request: start_response, write(), the response
iterable (with wsgi.file_wrapper sent by sendfile) and handing a whole
response back to the caller.
"""

import io
import os
import stat

from .. import bridge
from ..bridge import ClientDisconnected
from ..codes import WHOLE_BYTES_MAX, WHOLE_MAX
from .checks import NoStartResponse, WSGIAppError, check_headers, check_status

# WHOLE_MAX: the largest body of several chunks serve joins and hands back
# whole for Go to send after the call (the C side's whole-response buffer);
# larger ones are written chunk by chunk, without joining them first.
# WHOLE_BYTES_MAX: a body of one bytes object is handed back up to this size
# (the outbox's limit): the C side sends it from the object itself, without a
# copy. A larger one is written, and the thread waits while the client lags.


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
                raise WSGIAppError(
                    f"wsgi.file_wrapper: {_file_name(self.filelike)}: read() returned None "
                    f"(a non-blocking file with no data ready)"
                )
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
        raise WSGIAppError(
            f"wsgi.file_wrapper: {_file_name(filelike)} is a non-blocking {kind}, "
            f"not a regular file: its end cannot be told from a pause"
        )


def _is_bytes(chunk):
    return type(chunk) is bytes or isinstance(chunk, (bytes, bytearray))


class Response:
    """The response side of one request: start_response, write and sending."""

    __slots__ = (
        "handle",
        "head",
        "status",
        "code",
        "headers",
        "remaining",
        "sent",
        "disconnected",
        "finished",
        "whole",
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
        code = check_status(status)
        content_length = check_headers(response_headers)
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
                bridge.native.write(self.handle, code, headers, body, False)
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
            bridge.native.write(self.handle, self.code, headers, data, flush)
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
        if (
            type(result) is list
            and len(result) == 1
            and type(result[0]) is bytes
            and len(result[0]) <= WHOLE_BYTES_MAX
            and self.status is not None
            and not self.sent
        ):
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
                raise NoStartResponse()
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
                raise NoStartResponse()
            self._send(chunk, flush)
            if self.remaining == 0 and not self.head:
                break  # Content-Length reached: stop iterating
        if self.status is None:
            raise NoStartResponse()
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
            raise NoStartResponse()
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
            sent = bridge.native.sendfile(self.handle, self.code, headers, fd, offset, count)
        except ClientDisconnected:
            self.disconnected = True
            raise
        self.sent = True
        self.remaining -= sent
        return True
