import functools
import json
import os
import sys
import uuid

import pytest

from caddysnake import prepare


async def asgi3(scope, receive, send):
    pass


def wsgi(environ, start_response):
    return []


class ASGIObject:
    async def __call__(self, scope, receive, send):
        pass


class WSGIObject:
    def __call__(self, environ, start_response):
        return []


class ASGI2:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        pass


class WSGIClass:
    def __init__(self, environ, start_response):
        pass

    def __iter__(self):
        return iter([])


def sync_returning_coroutine(scope, receive, send):
    return asgi3(scope, receive, send)


def wsgi_with_default(environ, start_response, extra=None):
    return []


@pytest.mark.parametrize(
    "obj, want",
    [
        (asgi3, "asgi"),
        (functools.partial(asgi3), "asgi"),
        (ASGIObject(), "asgi"),
        (ASGI2, "asgi"),
        (sync_returning_coroutine, "asgi"),
        (wsgi, "wsgi"),
        (WSGIObject(), "wsgi"),
        (WSGIClass, "wsgi"),
        (wsgi_with_default, "wsgi"),
        (print, "wsgi"),  # no signature to read: WSGI, the default
    ],
)
def test_interface_of(obj, want):
    assert prepare.interface_of(obj) == want


def test_set_environ_reaches_os_environ():
    name = f"CADDYSNAKE_TEST_{uuid.uuid4().hex[:8].upper()}"
    try:
        assert prepare.set_environ(json.dumps({name: "a b=c"})) == ""
        assert os.environ[name] == "a b=c"
    finally:
        os.environ.pop(name, None)


def test_detect_interface_imports_the_app(tmp_path):
    name = f"detect_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("async def app(scope, receive, send):\n    pass\n")
    path = list(sys.path)
    try:
        args = {"target": f"{name}:app", "working_dir": str(tmp_path), "venv": ""}
        assert prepare.detect_interface(json.dumps(args)) == "asgi"
    finally:
        sys.path[:] = path
        sys.modules.pop(name, None)
