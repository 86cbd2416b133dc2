import random

from conftest import make_req

from caddysnake import __version__, wsgi
from caddysnake.wsgi import ErrorStream, FileWrapper, InputStream, build_environ


def test_every_environ_key():
    env = build_environ(
        make_req(
            method="POST",
            script_name="/app",
            path="/x/y",
            query="a=1&b=2",
            protocol="HTTP/2.0",
            scheme="https",
            server_name="example.org",
            server_port="443",
            remote_addr="192.0.2.1",
            remote_port="4444",
            headers=[("Host", "example.org"), ("Content-Type", "text/plain"), ("Content-Length", "5")],
        ),
        7,
    )
    expected = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/x/y",
        "QUERY_STRING": "a=1&b=2",
        "SERVER_PROTOCOL": "HTTP/2.0",
        "SERVER_NAME": "example.org",
        "SERVER_PORT": "443",
        "REMOTE_ADDR": "192.0.2.1",
        "REMOTE_PORT": "4444",
        "SERVER_SOFTWARE": "caddysnake/" + __version__,
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "5",
        "HTTP_HOST": "example.org",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }
    for key, value in expected.items():
        assert env[key] == value, key
    assert isinstance(env["wsgi.input"], InputStream)
    assert isinstance(env["wsgi.errors"], ErrorStream)
    assert set(env) == set(expected) | {"wsgi.input", "wsgi.errors"}


def test_empty_remote_port_and_query():
    env = build_environ(make_req(remote_port="", query=""), 1)
    assert "REMOTE_PORT" not in env
    assert env["QUERY_STRING"] == ""
    assert "CONTENT_TYPE" not in env and "CONTENT_LENGTH" not in env


def test_environ_is_a_fresh_copy():
    a = build_environ(make_req(headers=[("X-A", "1")]), 1)
    b = build_environ(make_req(), 2)
    assert "HTTP_X_A" not in b
    assert a["wsgi.input"] is not b["wsgi.input"]
    assert "HTTP_X_A" not in wsgi._TEMPLATE


def test_header_mangling_and_joining():
    env = build_environ(
        make_req(
            headers=[
                ("X-Forwarded-For", "1.1.1.1"),
                ("Accept", "text/html"),
                ("X-Forwarded-For", "2.2.2.2"),
                ("Cookie", "a=1"),
                ("Cookie", "b=2"),
                ("X-Custom-Thing", "v"),
                ("x-lower-case", "w"),
            ]
        ),
        1,
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1, 2.2.2.2"
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_CUSTOM_THING"] == "v"
    assert env["HTTP_X_LOWER_CASE"] == "w"


def test_content_headers_have_no_http_prefix():
    env = build_environ(
        make_req(
            headers=[("Content-Type", "application/json"), ("Content-Length", "12"), ("content-type", "ignored-dup")]
        ),
        1,
    )
    assert env["CONTENT_TYPE"] == "application/json, ignored-dup"
    assert env["CONTENT_LENGTH"] == "12"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_underscore_headers_are_dropped():
    # A client sending "X_Real_IP" must not be able to pose as the proxy's
    # "X-Real-Ip" header: both would become HTTP_X_REAL_IP.
    env = build_environ(
        make_req(headers=[("X_Real_Ip", "6.6.6.6"), ("X-Real-Ip", "1.2.3.4"), ("Content_Type", "evil")]),
        1,
    )
    assert env["HTTP_X_REAL_IP"] == "1.2.3.4"
    assert "CONTENT_TYPE" not in env
    assert not any("evil" in str(v) for v in env.values())


def test_non_ascii_header_name_key_stays_latin1():
    env = build_environ(make_req(headers=[("X-\xff\xdf-a", "v\xe9")]), 1)
    assert env["HTTP_X_\xff\xdf_A"] == "v\xe9"


def test_malformed_request_tuple():
    import pytest

    with pytest.raises(ValueError):
        build_environ(make_req() + ("Dangling-Name",), 1)


# ---------------------------------------------------------------- fuzz

_TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~"


def _rand_str(rng, alphabet, lo, hi):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def test_fuzz_build_environ():
    rng = random.Random(3333)
    latin1 = "".join(chr(c) for c in range(32, 256) if c != 127)
    specials = ["Content-Type", "Content-Length", "Cookie", "content-length", "Host", "X_Under"]
    for _ in range(500):
        headers = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.3:
                name = rng.choice(specials)
            elif rng.random() < 0.1:
                name = _rand_str(rng, latin1.replace("_", ""), 1, 8)
            else:
                name = _rand_str(rng, _TOKEN, 1, 20)
            headers.append((name, _rand_str(rng, latin1, 0, 30)))
        req = make_req(
            method=rng.choice(["GET", "POST", "HEAD", "PUT", "X-WEIRD"]),
            path="/" + _rand_str(rng, latin1, 0, 40),
            query=_rand_str(rng, latin1, 0, 20),
            remote_port=rng.choice(["", "1", "65535"]),
            headers=headers,
        )
        env = build_environ(req, 1)
        for key, value in env.items():
            assert type(key) is str
            key.encode("latin-1")
            if not key.startswith("wsgi."):
                assert type(value) is str, key
                value.encode("latin-1")
        assert "HTTP_CONTENT_TYPE" not in env
        assert "HTTP_CONTENT_LENGTH" not in env
        for name, value in headers:
            if "_" in name:
                continue
            upper = name.upper() if name.isascii() else name.translate(wsgi.environ._ASCII_KEY)
            key = "HTTP_" + upper.replace("-", "_")
            key = {"HTTP_CONTENT_TYPE": "CONTENT_TYPE", "HTTP_CONTENT_LENGTH": "CONTENT_LENGTH"}.get(key, key)
            assert key in env
            assert value in env[key]
        n_headers = sum(1 for k in env if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH"))
        assert n_headers <= len({n for n, _ in headers if "_" not in n})
