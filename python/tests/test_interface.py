"""The wrong directive (module_wsgi for an ASGI app, or the reverse) is
refused at load, naming the right one; anything unsure is served."""

import functools
import importlib
import sys

import pytest

from caddysnake import ConfigError, interface, loader
from caddysnake.asgi.asgi2 import as_asgi3


def wsgi_function(environ, start_response):
    start_response("200 OK", [])
    return [b""]


async def asgi_function(scope, receive, send):
    pass


class AsgiObject:
    async def __call__(self, scope, receive, send):
        pass


class WsgiObject:
    def __call__(self, environ, start_response):
        return wsgi_function(environ, start_response)


class Asgi2:  # ASGI 2: the class is called with the scope
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        pass


def asgi3_wrapper(scope, receive, send):  # a plain function returning an awaitable
    return asgi_function(scope, receive, send)


def anything(*args, **kwargs):
    pass


def maybe(environ, start_response=None):
    pass


@pytest.mark.parametrize(
    "app, want",
    [
        (wsgi_function, interface.WSGI),
        (WsgiObject(), interface.WSGI),
        (asgi_function, interface.ASGI),
        (AsgiObject(), interface.ASGI),
        (asgi3_wrapper, interface.ASGI),
        (functools.partial(asgi_function), interface.ASGI),
        (Asgi2, None),
        (anything, None),
        (maybe, None),
        (print, None),
    ],
)
def test_detect(app, want):
    assert interface.detect(app) == want


def test_asgi_under_module_wsgi_names_module_asgi():
    with pytest.raises(ConfigError) as e:
        interface.check("app:app", AsgiObject(), "wsgi")
    assert str(e.value) == (
        '"app:app" is an ASGI application (an async callable taking scope, receive, send): '
        "serve it with module_asgi, not module_wsgi"
    )


def test_wsgi_under_module_asgi_names_module_wsgi():
    with pytest.raises(ConfigError) as e:
        interface.check("app:app", wsgi_function, "asgi")
    assert "serve it with module_wsgi, not module_asgi" in str(e.value)


def test_the_right_directive_and_unsure_apps_pass():
    interface.check("a:b", wsgi_function, "wsgi")
    interface.check("a:b", AsgiObject(), "asgi")
    interface.check("a:b", Asgi2, "asgi")
    interface.check("a:b", anything, "wsgi")
    interface.check("a:b", anything, "asgi")
    interface.check("a:b", AsgiObject(), "")  # not told: no check


def test_asgi2_apps_detected_as_unsure_still_serve_as_asgi3():
    # What the check lets through under module_asgi, as_asgi3 must accept.
    assert as_asgi3(Asgi2) is not Asgi2


def test_asgiref_marked_sync_callable_is_asgi():
    asgiref_sync = pytest.importorskip("asgiref.sync")

    def handler(scope, receive, send, extra=None):
        return asgi_function(scope, receive, send)

    asgiref_sync.markcoroutinefunction(handler)
    assert interface.detect(handler) == interface.ASGI


FRAMEWORKS = [
    ("flask", "import flask\napp = flask.Flask(__name__)\n", interface.WSGI),
    (
        "django",
        "from django.conf import settings\nsettings.configure()\n"
        "from django.core.handlers.wsgi import WSGIHandler\nfrom django.core.handlers.asgi import ASGIHandler\n"
        "wsgi = WSGIHandler()\nasgi = ASGIHandler()\n",
        None,
    ),
    ("starlette", "from starlette.applications import Starlette\napp = Starlette()\n", interface.ASGI),
    ("fastapi", "from fastapi import FastAPI\napp = FastAPI()\n", interface.ASGI),
    ("socketio", "import socketio\napp = socketio.ASGIApp(socketio.AsyncServer(async_mode='asgi'))\n", interface.ASGI),
]


@pytest.mark.parametrize("framework, source, want", FRAMEWORKS, ids=[f[0] for f in FRAMEWORKS])
def test_frameworks(framework, source, want):
    pytest.importorskip(framework)
    ns = {"__name__": "fw_test"}
    exec(compile(source, "<fw>", "exec"), ns)
    if framework == "django":
        assert interface.detect(ns["wsgi"]) == interface.WSGI
        assert interface.detect(ns["asgi"]) == interface.ASGI
        return
    assert interface.detect(ns["app"]) == want


def test_load_app_refuses_the_wrong_directive(tmp_path):
    name = "iface_" + str(abs(hash(str(tmp_path))))[:10]
    (tmp_path / f"{name}.py").write_text("async def app(scope, receive, send):\n    pass\n")
    path, modules = list(sys.path), set(sys.modules)
    try:
        with pytest.raises(ConfigError, match="serve it with module_asgi, not module_wsgi"):
            loader.load_app(f"{name}:app", str(tmp_path), "", interface="wsgi")
        assert loader.load_app(f"{name}:app", str(tmp_path), "", interface="asgi") is not None
    finally:
        sys.path[:] = path
        for m in set(sys.modules) - modules:
            del sys.modules[m]
        loader._origins.pop(name, None)
        importlib.invalidate_caches()
