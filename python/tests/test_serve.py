import io
import os
import sys

import pytest

from caddysnake import ClientDisconnected, wsgi

TEXT = [("Content-Type", "text/plain")]


class Closing:
    """A response iterable that counts close() calls."""

    def __init__(self, chunks, fail_at=None, close_raises=False):
        self.chunks = chunks
        self.fail_at = fail_at
        self.close_raises = close_raises
        self.closed = 0

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("boom in iteration")
            yield c

    def close(self):
        self.closed += 1
        if self.close_raises:
            raise ValueError("boom in close")


def simple(status="200 OK", headers=TEXT, body=(b"hello",)):
    def app(environ, start_response):
        start_response(status, list(headers))
        return list(body)

    return app


def test_hello_list_sets_content_length(run, native):
    code, r = run(simple(body=[b"hello ", b"world"]))
    assert code == 0
    assert r.status == 200
    assert r.header("Content-Length") == "11"
    assert r.body == b"hello world"
    # Known whole before anything was sent: one unflushed write, headers
    # and all chunks together.
    assert [(c.data, c.flush) for c in r.calls] == [(b"hello world", False)]


def test_whole_response_is_returned_not_written(native):
    from conftest import make_req

    res = wsgi.serve(simple(body=[b"hello ", b"world"]), make_req(), 1)
    assert res == (0, 200, [("Content-Type", "text/plain"), ("Content-Length", "11")], b"hello world")
    assert native.calls == []
    # A HEAD request: the same headers, no body bytes.
    res = wsgi.serve(simple(body=[b"hello"]), make_req(method="HEAD"), 2)
    assert res[0] == 0 and res[3] == b"" and ("Content-Length", "5") in res[2]
    # A declared Content-Length caps the body, as it does for writes.
    res = wsgi.serve(simple(headers=[("Content-Length", "3")], body=[b"hello"]), make_req(), 3)
    assert res[3] == b"hel"


def test_whole_response_goes_first_when_close_writes(native):
    from conftest import make_req

    class Body(list):
        def close(self):
            self.write(b"late")

    def app(environ, start_response):
        body = Body([b"hello"])
        body.write = start_response("200 OK", list(TEXT))
        return body

    # A write from close() comes after the body it follows, so the whole
    # response is written out first instead of being handed back (and the
    # late bytes are cut by the Content-Length the list body set).
    code = wsgi.serve(app, make_req(), 1)
    assert code == 0
    assert [(c.data, c.headers is not None) for c in native.calls] == [(b"hello", True)]


def test_tuple_and_existing_content_length_kept(run):
    def app(environ, start_response):
        start_response("201 Created", [("Content-Length", "3"), ("Content-Type", "a/b")])
        return (b"abc",)

    code, r = run(app)
    assert code == 0 and r.status == 201
    assert [v for n, v in r.headers if n == "Content-Length"] == ["3"]


def test_content_length_truncates_extra_bytes(run):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "4")])
        return iter([b"ab", b"cdef", b"never"])

    code, r = run(app)
    assert code == 0
    assert r.body == b"abcd"


def test_generator_streams_with_flush_and_delays_headers(run, native):
    seen = []

    def app(environ, start_response):
        start_response("200 OK", TEXT)
        yield b""
        seen.append(len(native.calls))  # headers not sent for an empty chunk
        yield b"one"
        seen.append(len(native.calls))
        yield b""
        yield b"two"

    code, r = run(app)
    assert code == 0
    assert seen == [0, 1]
    assert [(c.data, c.flush, c.headers is not None) for c in r.calls] == [
        (b"one", True, True),
        (b"two", True, False),
    ]
    assert r.header("Content-Length") is None


def test_start_response_inside_generator(run):
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        yield b"lazy"

    code, r = run(app)
    assert code == 0 and r.body == b"lazy"


def test_empty_iterable_sends_headers_once(run):
    code, r = run(lambda e, s: (s("204 No Content", []), iter([b"", b""]))[1])
    assert code == 0
    assert r.status == 204
    assert [(c.data, c.headers) for c in r.calls] == [(b"", [])]


def test_empty_list_has_content_length_zero(run):
    code, r = run(simple(body=[]))
    assert code == 0
    assert r.header("Content-Length") == "0"
    assert len(r.calls) == 1


def test_write_callable(run, native):
    def app(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"first")
        write(b"")
        write(b"second")
        return [b"third"]

    code, r = run(app)
    assert code == 0
    assert r.body == b"firstsecondthird"
    assert [c.flush for c in r.calls][:2] == [True, True]
    assert r.calls[0].headers is not None
    # Headers were already sent: no Content-Length can be added any more.
    assert r.header("Content-Length") is None


def test_write_before_start_response_is_an_error(run, native):
    def app(environ, start_response):
        write = start_response.__self__.write
        write(b"x")

    code, r = run(app)
    assert code == 1
    assert "write() called before start_response()" in native.errors()[0]


def test_head_sends_no_body(run):
    ran = []

    def gen_app(environ, start_response):
        start_response("200 OK", TEXT)
        yield b"abc"
        ran.append(True)

    code, r = run(simple(body=[b"hello"]), method="HEAD")
    assert code == 0 and r.body == b"" and r.header("Content-Length") == "5"
    code, r = run(gen_app, method="HEAD", handle=2)
    assert code == 0 and r.body == b"" and r.status == 200
    assert ran == [True]


def test_head_with_write(run):
    def app(environ, start_response):
        w = start_response("200 OK", TEXT)
        w(b"abc")
        w(b"def")
        return []

    code, r = run(app, method="HEAD")
    assert code == 0 and r.body == b"" and len(r.calls) == 1


def test_exception_before_headers(run, native):
    def app(environ, start_response):
        raise KeyError("missing-thing")

    code, r = run(app)
    assert code == 1
    assert r.calls == []
    (msg,) = native.errors()
    assert msg.startswith("WSGI app raised an exception")
    assert "Traceback" in msg and "KeyError: 'missing-thing'" in msg and "in app" in msg


def test_exception_after_headers(run, native):
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        yield b"partial"
        raise RuntimeError("kaboom")

    code, r = run(app)
    assert code == 2
    assert r.body == b"partial"
    (msg,) = native.errors()
    assert msg.startswith("WSGI app raised an exception") and "RuntimeError: kaboom" in msg


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_base_exceptions_are_caught(run, native, exc):
    def app(environ, start_response):
        raise exc

    code, _ = run(app)
    assert code == 1
    assert type(exc).__name__ in native.errors()[0]


def test_start_response_not_called(run, native):
    code, r = run(lambda e, s: [b"x"])
    assert code == 1
    assert "start_response() was not called" in native.errors()[0]
    code, r = run(lambda e, s: iter([]), handle=2)
    assert code == 1
    assert r.calls == []


def test_exc_info_replaces_headers_before_send(run):
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/html")], sys.exc_info())
        return [b"error page"]

    code, r = run(app)
    assert code == 0
    assert r.status == 500
    assert r.header("Content-Type") == "text/html"
    assert r.body == b"error page"


def test_exc_info_after_send_reraises(run, native):
    def app(environ, start_response):
        w = start_response("200 OK", TEXT)
        w(b"sent")
        try:
            raise ValueError("original")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"not reached"]

    code, r = run(app)
    assert code == 2
    assert "ValueError: original" in native.errors()[0]
    assert r.body == b"sent"


def test_second_start_response_without_exc_info(run, native):
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        start_response("200 OK", TEXT)
        return []

    code, _ = run(app)
    assert code == 1
    assert "second time" in native.errors()[0]


@pytest.mark.parametrize(
    "status, headers, needle",
    [
        ("200", TEXT, "200 OK"),
        ("2000 OK", TEXT, "200 OK"),
        ("abc OK", TEXT, "200 OK"),
        (200, TEXT, "str"),
        (b"200 OK", TEXT, "str"),
        ("200 OK", (("A", "b"),), "list"),
        ("200 OK", [["A", "b"]], "tuple"),
        ("200 OK", [("A", 1)], "str"),
        ("200 OK", [("Connection", "close")], "Connection"),
        ("200 OK", [("Transfer-Encoding", "chunked")], "Transfer-Encoding"),
        ("200 OK", [("keep-alive", "x")], "keep-alive"),
        ("200 OK", [("Upgrade", "h2c")], "Upgrade"),
        ("200 OK", [("X-A", "b\r\nSet-Cookie: x")], "line break"),
        ("200 OK", [("X-A\n", "b")], "line break"),
        ("200 OK\r\n", [], "line break"),
        ("200 OK", [("X-A", "caf\u00e9 \u2603")], "latin-1"),
        ("200 OK", [("Content-Length", "ten")], "Content-Length"),
    ],
)
def test_start_response_validation(run, native, status, headers, needle):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"x"]

    code, r = run(app)
    assert code == 1
    assert r.calls == []
    assert needle in native.errors()[0]


def test_latin1_header_value_allowed(run):
    code, r = run(simple(headers=[("X-Name", "caf\u00e9")]))
    assert code == 0 and r.header("X-Name") == "caf\u00e9"


def test_str_body_is_an_error(run, native):
    code, _ = run(simple(body=["text"]))
    assert code == 1
    assert "bytes" in native.errors()[0]


def test_close_called_on_success(run):
    body = Closing([b"a", b"b"])
    code, r = run(lambda e, s: (s("200 OK", TEXT), body)[1])
    assert code == 0 and body.closed == 1 and r.body == b"ab"


def test_close_called_on_error(run):
    body = Closing([b"a", b"b"], fail_at=1)
    code, _ = run(lambda e, s: (s("200 OK", TEXT), body)[1])
    assert code == 2 and body.closed == 1
    body = Closing([b"a"], fail_at=0)
    code, _ = run(lambda e, s: (s("200 OK", TEXT), body)[1], handle=2)
    assert code == 1 and body.closed == 1


def test_close_called_on_disconnect(run, native):
    native.disconnect_after = 1
    body = Closing([b"a", b"b", b"c"])
    code, r = run(lambda e, s: (s("200 OK", TEXT), body)[1])
    assert code == 3
    assert body.closed == 1
    assert r.body == b"a"
    assert native.errors() == []
    assert any(level == 0 for _, level, _ in native.logs)


def test_close_raising_counts_as_app_error(run, native):
    body = Closing([b"a"], close_raises=True)
    code, _ = run(lambda e, s: (s("200 OK", TEXT), body)[1])
    assert code == 2
    assert "boom in close" in native.errors()[0]
    body = Closing([], close_raises=True)
    code, _ = run(lambda e, s: body, handle=2)
    assert code == 1  # start_response missing; close still called
    assert body.closed == 1


def test_disconnect_on_first_write(run, native):
    native.disconnect_after = 0

    def app(environ, start_response):
        start_response("200 OK", list(TEXT))
        yield b"hello"

    code, r = run(app)
    assert code == 3
    assert r.calls == []


def test_disconnect_caught_by_app_still_reports_3(run, native):
    native.disconnect_after = 1

    def app(environ, start_response):
        w = start_response("200 OK", TEXT)
        w(b"one")
        try:
            w(b"two")
        except ClientDisconnected:
            pass
        try:
            w(b"three")  # must not reach the native side again
        except ClientDisconnected:
            pass
        return []

    code, r = run(app)
    assert code == 3
    assert len(native.calls) == 1


def test_request_body_error_is_app_error(run, native):
    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", TEXT)
        return [b"x"]

    code, _ = run(app, body=b"x" * 100, fail_at=10)
    assert code == 1
    assert "RequestBodyError" in native.errors()[0]


def test_echo_body(run):
    def app(environ, start_response):
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(n)
        start_response("200 OK", TEXT)
        return [data[::-1]]

    code, r = run(app, body=b"abcdef", headers=[("Content-Length", "6")], method="POST")
    assert code == 0 and r.body == b"fedcba"


def test_errors_flushed_at_end(run, native):
    def app(environ, start_response):
        environ["wsgi.errors"].write("no newline")
        start_response("200 OK", TEXT)
        return []

    code, _ = run(app)
    assert code == 0
    assert (1, 2, "no newline") in native.logs


def test_serve_never_raises_on_bad_request_tuple(native):
    code = wsgi.serve(lambda e, s: [], ("GET",), 1)
    assert code == 1
    assert native.errors()


# ---------------------------------------------------------------- file_wrapper


def test_file_wrapper_uses_sendfile(run, native, tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(50_000)
    p.write_bytes(data)
    files = []

    def app(environ, start_response):
        f = open(p, "rb")
        f.seek(1000)
        files.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 4096)

    code, r = run(app)
    assert code == 0
    (call,) = r.calls
    assert call.kind == "sendfile"
    assert (call.offset, call.count) == (1000, 49_000)
    assert call.headers is not None
    assert r.header("Content-Length") == "49000"
    assert r.body == data[1000:]
    assert files[0].closed


def test_file_wrapper_sendfile_respects_smaller_content_length(run, tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"0123456789")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "4")])
        return environ["wsgi.file_wrapper"](open(p, "rb"))

    code, r = run(app)
    assert code == 0
    assert (r.calls[0].kind, r.calls[0].offset, r.calls[0].count) == ("sendfile", 0, 4)
    assert r.body == b"0123"


def test_file_wrapper_head_sends_no_file(run, tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"0123456789")

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](open(p, "rb"))

    code, r = run(app, method="HEAD")
    assert code == 0
    assert [c.kind for c in r.calls] == ["write"]
    assert r.body == b"" and r.header("Content-Length") == "10"


def test_file_wrapper_bytesio_iterates(run):
    f = io.BytesIO(b"x" * 10_000)

    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](f, 4096)

    code, r = run(app)
    assert code == 0
    assert [c.kind for c in r.calls] == ["write"] * 3
    assert r.body == b"x" * 10_000
    assert f.closed


def test_file_wrapper_pipe_iterates(run):
    rfd, wfd = os.pipe()
    os.write(wfd, b"from a pipe")
    os.close(wfd)
    f = os.fdopen(rfd, "rb")

    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](f)

    code, r = run(app)
    assert code == 0
    assert all(c.kind == "write" for c in r.calls)
    assert r.body == b"from a pipe"
    assert f.closed


def test_file_wrapper_sendfile_disconnect(run, native, tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    native.disconnect_after = 0
    files = []

    def app(environ, start_response):
        start_response("200 OK", [])
        files.append(open(p, "rb"))
        return environ["wsgi.file_wrapper"](files[0])

    code, _ = run(app)
    assert code == 3
    assert files[0].closed


def test_interim_status_is_refused(run, native):
    code, r = run(simple(status="103 Early Hints"))
    assert code == 1 and r.calls == []
    assert "must be 200-999" in native.errors()[0]


def test_header_and_status_caches_stay_exact(run, native):
    # A header or status that passed once is remembered; one that failed
    # never is, and fails again every time.
    ok = simple(headers=[("X-Same", "v")])
    for i in range(3):
        assert run(ok, handle=100 + i)[0] == 0
    assert ("X-Same", "v") in wsgi.checks._VALID_HEADERS and "200 OK" in wsgi.checks._VALID_STATUS
    for i in range(2):
        code, _ = run(simple(headers=[("Connection", "close")]), handle=110 + i)
        assert code == 1
        code, _ = run(simple(status="20 OK"), handle=120 + i)
        assert code == 1
    assert ("Connection", "close") not in wsgi.checks._VALID_HEADERS and "20 OK" not in wsgi.checks._VALID_STATUS

    # A tuple subclass equal to a remembered header is still checked (and
    # refused): only exact tuples take the remembered answer.
    class Pair(tuple):
        pass

    code, _ = run(simple(headers=[Pair(("X-Same", "v"))]), handle=130)
    assert code == 1

    # The Content-Length of a remembered header still counts.
    code, r = run(simple(headers=[("Content-Length", "2")], body=[b"hello"]), handle=103)
    code, r = run(simple(headers=[("Content-Length", "2")], body=[b"hello"]), handle=104)
    assert code == 0 and r.body == b"he"


def test_header_cache_is_bounded(run):
    for i in range(wsgi.checks._VALID_HEADERS_MAX + 50):
        assert run(simple(headers=[("X-Id", str(i))]), handle=i + 10)[0] == 0
    assert len(wsgi.checks._VALID_HEADERS) <= wsgi.checks._VALID_HEADERS_MAX


def test_close_error_after_whole_response_is_a_clean_500(native):
    from conftest import make_req

    class Body(list):
        def close(self):
            raise RuntimeError("close failed")

    def app(environ, start_response):
        start_response("200 OK", list(TEXT))
        return Body([b"hello"])

    # Nothing went out yet: the failure becomes APP_ERROR (500), not an
    # aborted connection, and the log does not claim headers were sent.
    assert wsgi.serve(app, make_req(), 1) == 1
    assert native.calls == []
    assert "after the response headers were sent" not in native.errors()[0]


def test_write_after_serve_returned_sends_nothing(native):
    from conftest import make_req

    kept = {}

    def app(environ, start_response):
        kept["write"] = start_response("200 OK", list(TEXT))
        return [b"hello"]

    res = wsgi.serve(app, make_req(), 1)
    assert type(res) is tuple and res[3] == b"hello"
    # An app thread writing late must not send the whole response again.
    with pytest.raises(wsgi.WSGIAppError):
        kept["write"](b"late")
    assert native.calls == []


def test_one_large_bytes_is_handed_back_up_to_the_by_reference_limit(native):
    from conftest import make_req

    # One bytes object: handed back whole, the object itself (the C side
    # sends it by reference, no copy), up to WHOLE_BYTES_MAX (256 KiB).
    body = b"z" * (64 * 1024)
    res = wsgi.serve(simple(body=[body]), make_req(), 1)
    assert type(res) is tuple and res[3] is body and ("Content-Length", "65536") in res[2]
    assert native.calls == []
    # Past it, written like any other body.
    big = b"z" * (wsgi.WHOLE_BYTES_MAX + 1)
    res = wsgi.serve(simple(body=[big]), make_req(), 2)
    assert res == 0
    assert [len(c.data) for c in native.calls] == [len(big)]


def test_large_list_body_is_written_in_chunks(run, native):
    big = [b"x" * 20_000, b"y" * 20_000]  # over WHOLE_MAX together
    code, r = run(simple(body=big))
    assert code == 0
    assert [len(c.data) for c in r.calls] == [20_000, 20_000]
    assert r.header("Content-Length") == "40000"


def test_request_timeout_unwinds_quietly(run, native):
    """RequestTimeout (raised by Go's request_timeout watcher) is a
    BaseException that `except Exception` lets by; serve() reports it as an
    app error, without a traceback of its own: Go logs the stack."""
    from caddysnake import RequestTimeout

    assert issubclass(RequestTimeout, BaseException) and not issubclass(RequestTimeout, Exception)

    def app(environ, start_response):
        try:
            raise RequestTimeout()
        except Exception:  # pragma: no cover - must not catch it
            pass

    code, _ = run(app)
    assert code == 1
    assert native.errors() == []

    def streaming(environ, start_response):
        start_response("200 OK", TEXT)
        yield b"partial"
        raise RequestTimeout()

    code, r = run(streaming)
    assert code == 2 and r.body == b"partial"


def test_thread_stack_names_the_function():
    import threading

    stop = threading.Event()

    def stuck_here():
        stop.wait(5)

    t = threading.Thread(target=stuck_here)
    t.start()
    try:
        for _ in range(100):  # bounded: until the thread is in stuck_here
            if "stuck_here" in wsgi._thread_stack(t.ident):
                break
            stop.wait(0.01)
        assert "stuck_here" in wsgi._thread_stack(t.ident)
    finally:
        stop.set()
        t.join()
    assert "no Python frame" in wsgi._thread_stack(1)
