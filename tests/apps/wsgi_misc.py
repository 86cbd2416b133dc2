"""HEAD, the write() callable and wsgi.file_wrapper.

/body    "hello, head" with a Content-Length
/write   write(b"part1-"), write(b"part2-"), then returns [b"part3"]
/file    a 3 MiB temp file through wsgi.file_wrapper; X-SHA256 is its hash
"""

import hashlib
import random
import tempfile

DATA = random.Random(42).randbytes(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()
SIZE = len(DATA)


def temp_file():
    """An open, already unlinked file holding DATA (nothing is left behind)."""
    f = tempfile.TemporaryFile()
    f.write(DATA)
    f.flush()
    f.seek(0)
    return f


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"part1-")
        write(b"part2-")
        return [b"part3"]
    if path == "/file":
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is None:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"no wsgi.file_wrapper"]
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(SIZE)),
            ("X-SHA256", SHA),
        ])
        return wrapper(temp_file(), 65536)
    body = b"hello, head"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
