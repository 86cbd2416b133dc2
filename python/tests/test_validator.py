"""Apps wrapped in wsgiref.validate (the stdlib's PEP 3333 checker): any
protocol slip on our side becomes an exception (warnings are errors here)."""

import warnings
from wsgiref.validate import validator

import pytest

TEXT = [("Content-Type", "text/plain")]


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def hello(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"Hello, world!"]


def streaming(environ, start_response):
    start_response("200 OK", TEXT)

    def gen():
        for i in range(3):
            yield b"chunk %d\n" % i

    return gen()


def writer(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"written ")
    return [b"returned"]


def reader(environ, start_response):
    stream = environ["wsgi.input"]
    first = stream.readline()
    rest = stream.read(int(environ["CONTENT_LENGTH"]) - len(first))
    environ["wsgi.errors"].write("read the body\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", TEXT)
    return [rest + first]


def make_file_app(path):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 3)

    return app


@pytest.mark.parametrize(
    "app, expected",
    [
        (hello, b"Hello, world!"),
        (streaming, b"chunk 0\nchunk 1\nchunk 2\n"),
        (writer, b"written returned"),
    ],
)
def test_validated_apps(run, native, app, expected):
    code, r = run(validator(app))
    assert code == 0, native.logs
    assert r.status == 200
    assert r.body == expected


def test_validated_reader(run, native):
    code, r = run(
        validator(reader),
        method="POST",
        body=b"line one\nrest",
        headers=[("Content-Type", "text/plain"), ("Content-Length", "13")],
    )
    assert code == 0, native.logs
    assert r.body == b"restline one\n"


def test_validated_file_wrapper(run, native, tmp_path):
    p = tmp_path / "data"
    p.write_bytes(b"file contents")
    code, r = run(validator(make_file_app(p)))
    assert code == 0, native.logs
    assert r.body == b"file contents"


def test_validator_catches_a_broken_app(run, native):
    # Proves the harness would notice: a str body fails validation.
    def bad(environ, start_response):
        start_response("200 OK", TEXT)
        return ["not bytes"]

    code, _ = run(validator(bad))
    assert code in (1, 2)
    assert native.errors()
