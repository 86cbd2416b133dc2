import io
import os

import pytest

from caddysnake import RequestBodyError, wsgi
from caddysnake.wsgi import CHUNK, ErrorStream, FileWrapper, InputStream


def stream(native, data, piece=None, fail_at=None, handle=1):
    native.set_body(handle, data, piece=piece, fail_at=fail_at)
    return InputStream(handle)


def test_read_all_and_after_eof(native):
    s = stream(native, b"hello world")
    assert s.read() == b"hello world"
    calls = len(native.read_sizes)
    assert s.read() == b""
    assert s.read(10) == b""
    assert s.readline() == b""
    assert len(native.read_sizes) == calls  # no native call after EOF


def test_read_none_and_negative(native):
    assert stream(native, b"abc").read(None) == b"abc"
    assert stream(native, b"abc", handle=2).read(-5) == b"abc"


def test_read_n_requests_exactly_what_is_needed(native):
    body = os.urandom(4 * CHUNK)
    s = stream(native, body)
    assert s.read(200_000) == body[:200_000]
    assert native.read_sizes == [200_000]
    assert s.read(0) == b""
    assert native.read_sizes == [200_000]


def test_read_n_after_readline_uses_buffer_first(native):
    body = b"line1\n" + b"x" * (CHUNK * 2)
    s = stream(native, body)
    assert s.readline() == b"line1\n"
    assert native.read_sizes == [CHUNK]
    buffered = CHUNK - 6
    out = s.read(CHUNK)
    assert out == body[6 : 6 + CHUNK]
    assert native.read_sizes == [CHUNK, CHUNK - buffered]


def test_short_reads_never_truncate(native):
    body = bytes(range(256)) * 40
    s = stream(native, body, piece=7)
    assert s.read(1000) == body[:1000]
    assert s.read(3) == body[1000:1003]
    assert s.read() == body[1003:]


def test_readline_across_chunk_boundaries(native):
    lines = [b"a" * (CHUNK - 1) + b"\n", b"b" * (CHUNK + 10) + b"\n", b"\n", b"tail"]
    s = stream(native, b"".join(lines), piece=1000)
    assert [s.readline() for _ in range(5)] == lines + [b""]


def test_readline_size_limit(native):
    s = stream(native, b"abcdef\nxyz\n")
    assert s.readline(3) == b"abc"
    assert s.readline(10) == b"def\n"
    assert s.readline(0) == b""
    assert s.readline(4) == b"xyz\n"
    assert s.readline(4) == b""


def test_readline_size_does_not_overread(native):
    s = stream(native, b"x" * 1000)
    assert s.readline(10) == b"x" * 10
    assert max(native.read_sizes) <= 10


def test_readlines_and_hint(native):
    data = b"one\ntwo\nthree\nfour"
    assert stream(native, data).readlines() == [b"one\n", b"two\n", b"three\n", b"four"]
    assert stream(native, data, handle=2).readlines(5) == [b"one\n", b"two\n"]


def test_iteration(native):
    data = b"".join(b"line %d\n" % i for i in range(10_000))
    s = stream(native, data, piece=4096)
    lines = list(s)
    assert len(lines) == 10_000
    assert b"".join(lines) == data
    assert lines[1234] == b"line 1234\n"


def test_10mib_body_in_pieces(native):
    body = os.urandom(10 * 1024 * 1024)
    s = stream(native, body)
    parts = []
    while True:
        part = s.read(100_003)
        if not part:
            break
        assert len(part) <= 100_003
        parts.append(part)
    assert b"".join(parts) == body
    assert max(native.read_sizes) <= 100_003
    assert len(native.read_sizes) <= len(parts) + 2


def test_10mib_body_read_all(native):
    body = os.urandom(10 * 1024 * 1024)
    s = stream(native, body)
    assert s.read(10) == body[:10]
    assert s.read() == body[10:]
    assert max(native.read_sizes) <= CHUNK


def test_read_returns_bytes(native):
    s = stream(native, b"ab\ncd")
    assert type(s.readline()) is bytes
    assert type(s.read(1)) is bytes
    assert type(s.read()) is bytes


def test_request_body_error_propagates(native):
    s = stream(native, b"x" * 100, fail_at=50)
    with pytest.raises(RequestBodyError):
        s.read()
    assert issubclass(RequestBodyError, OSError)


def test_errors_stream_lines(native):
    e = ErrorStream(4)
    e.write("partial ")
    assert native.logs == []
    e.write("line\nsecond\nthi")
    e.writelines(["rd\n", "x"])
    # One entry per write: the lines a logging record writes at once stay together.
    assert native.logs == [(4, 2, "partial line\nsecond"), (4, 2, "third")]
    e.flush()
    assert native.logs[-1] == (4, 2, "x")
    e.flush()
    assert len(native.logs) == 3
    with pytest.raises(TypeError):
        e.write(b"bytes")


def test_errors_stream_print(native):
    e = ErrorStream(1)
    print("hello", "world", file=e)
    assert native.logs == [(1, 2, "hello world")]


def test_file_wrapper_iterates_and_closes():
    f = io.BytesIO(b"0123456789")
    w = FileWrapper(f, 4)
    assert list(w) == [b"0123", b"4567", b"89"]
    w.close()
    assert f.closed


def test_file_wrapper_without_close():
    class Reader:
        def __init__(self):
            self.data = [b"a", b"b"]

        def read(self, n):
            return self.data.pop(0) if self.data else b""

    w = FileWrapper(Reader())
    assert list(w) == [b"a", b"b"]
    w.close()  # no close() on the file-like: nothing to do


def test_input_after_request_is_refused(native, run):
    kept = {}

    def app(environ, start_response):
        kept["input"] = environ["wsgi.input"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    code, _ = run(app, body=b"body")
    assert code == 0
    with pytest.raises(ValueError):
        kept["input"].read()
    assert wsgi.InputStream  # module still importable


def test_readline_reads_may_return_early_but_read_n_fills(native):
    # readline's read-ahead uses read1, which returns as soon as anything
    # arrived: a line of a slowly trickling upload is not held back until
    # CHUNK bytes came. read(n) keeps asking for the full n.
    s = stream(native, b"first\nsecond\n" + b"x" * 100)
    assert s.readline() == b"first\n"
    assert native.read1_sizes and native.read_sizes[-1] == native.read1_sizes[-1]
    before = len(native.read1_sizes)
    s2 = stream(native, b"y" * 50, handle=2)
    assert s2.read(50) == b"y" * 50
    assert len(native.read1_sizes) == before  # read(n) used the filling read
