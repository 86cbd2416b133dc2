"""wsgi.input and wsgi.errors (PEP 3333, "Input and Error Streams"): the
request body read from Go, and the app's error text sent to Caddy's log.
"""

import sys

from .. import bridge
from ..bridge import LOG_WARNING

# Size of the reads wsgi.input makes when it has to buffer (readline, read()).
CHUNK = 64 * 1024


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
        data = (bridge.native.read1 if partial else bridge.native.read)(self._handle, size)
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


class ErrorStream:
    """wsgi.errors (PEP 3333, "Input and Error Streams"): a text stream.

    Complete lines go to Caddy's log at warning level, one entry per
    write(); a partial line waits for its newline or for flush() (serve()
    flushes at the end of a request).
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
            bridge.native.log(self._handle, LOG_WARNING, line)

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
        # The complete lines of one write are one log entry: a logging
        # handler writes a record (Flask's traceback of an unhandled error
        # among them) in one call, and it must not become one entry a line.
        self._emit("\n".join(lines))
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
