"""Response headers and wsgi.file_wrapper files that must be refused
(start_response raises, PEP 3333; the app's request becomes a 500)."""

import os

import pytest

from caddysnake import wsgi


@pytest.mark.parametrize(
    "header, needle",
    [
        (("X-A", "a\x00b"), "control character"),
        (("X-A", "a\x01b"), "control character"),
        (("X-A", "a\x1fb"), "control character"),
        (("X-A", "a\x7fb"), "control character"),
        (("X A", "v"), "not a token"),
        (("X-A:", "v"), "not a token"),
        (("X-\x00", "v"), "not a token"),
        (("X-(A)", "v"), "not a token"),
    ],
)
def test_bad_header_refused(run, native, header, needle):
    def app(environ, start_response):
        start_response("200 OK", [header])
        return [b"x"]

    code, r = run(app)
    assert code == 1
    assert r.calls == []
    assert needle in native.errors()[0]
    assert repr(header[0]) in native.errors()[0]


@pytest.mark.parametrize("header", [("X-A", "a\tb"), ("X-A", "caf\u00e9"), ("X-A", ""), ("x!#$%&'*+-.^_`|~0Z", "v")])
def test_allowed_headers_pass(run, header):
    def app(environ, start_response):
        start_response("200 OK", [header])
        return [b"x"]

    code, r = run(app)
    assert code == 0 and r.header(header[0]) == header[1]


def test_refused_header_is_not_cached_as_valid():
    with pytest.raises(wsgi.WSGIAppError):
        wsgi.checks._check_header(("X-A", "a\x00"))
    assert ("X-A", "a\x00") not in wsgi.checks._VALID_HEADERS


def _nonblocking_fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path, os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")


def test_file_wrapper_nonblocking_fifo_refused(run, native, tmp_path):
    path, f = _nonblocking_fifo(tmp_path)

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)

    code, r = run(app)
    assert code == 1  # before any header: a 500
    assert r.calls == []
    assert str(path) in native.errors()[0] and "non-blocking FIFO" in native.errors()[0]
    assert f.closed


def test_file_wrapper_nonblocking_fifo_after_headers_aborts(run, native, tmp_path):
    path, f = _nonblocking_fifo(tmp_path)

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"first"
            yield from environ["wsgi.file_wrapper"](f)

        return body()

    code, r = run(app)
    assert code == 2  # after the headers: the response is aborted
    assert str(path) in native.errors()[0]


def test_file_wrapper_read_none_is_not_the_end(run, native):
    class Pending:
        def read(self, n):
            return None

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](Pending())

    code, _ = run(app)
    assert code == 1
    assert "returned None" in native.errors()[0]
