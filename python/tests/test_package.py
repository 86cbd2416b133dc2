import os
import re
import subprocess
import sys

import pytest

import caddysnake
from caddysnake import bridge

tomllib = pytest.importorskip("tomllib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_line_matches_go_regex():
    with open(os.path.join(ROOT, "caddysnake", "__init__.py")) as f:
        found = re.findall(r'__version__ = "([^"]+)"', f.read())
    assert found == [caddysnake.__version__]


def test_exports():
    assert caddysnake.ClientDisconnected is bridge.ClientDisconnected
    assert caddysnake.RequestBodyError is bridge.RequestBodyError
    assert issubclass(caddysnake.ConfigError, Exception)
    # Without the native module (as here) the stand-ins are OSErrors.
    assert bridge.native is None
    assert issubclass(caddysnake.ClientDisconnected, OSError)
    assert issubclass(caddysnake.RequestBodyError, OSError)


def test_init_is_light():
    code = "import sys, caddysnake; print(' '.join(sorted(m for m in sys.modules if m.startswith('caddysnake'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    # bridge takes the log levels from codes, a module of literals.
    assert out.stdout.split() == ["caddysnake", "caddysnake.bridge", "caddysnake.codes"]


def test_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)
    assert cfg["build-system"]["build-backend"] == "setuptools.build_meta"
    assert cfg["project"]["name"] == "caddysnake"
    assert cfg["project"]["dynamic"] == ["version"]
    assert cfg["project"]["requires-python"] == ">=3.10"
    assert cfg["project"]["optional-dependencies"]["test"] == ["pytest"]
    assert cfg["tool"]["setuptools"]["packages"]["find"] == {"include": ["caddysnake", "caddysnake.*"]}
    assert cfg["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "caddysnake.__version__"}


def test_pyproject_finds_every_subpackage():
    # A pip-installed copy must carry what the binary embeds: every folder
    # of the package with an __init__.py.
    setuptools = pytest.importorskip("setuptools")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
    on_disk = {
        os.path.relpath(d, ROOT).replace(os.sep, ".")
        for d, _, files in os.walk(os.path.join(ROOT, "caddysnake"))
        if "__init__.py" in files
    }
    assert {"caddysnake", "caddysnake.asgi", "caddysnake.wsgi"} <= on_disk
    assert set(setuptools.find_packages(ROOT, include=include)) == on_disk


def test_description_says_what_the_package_is():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        description = tomllib.load(f)["project"]["description"]
    for words in ("WSGI", "ASGI", "scope", "start_response", "receive/send", "carries its own copy", "Nothing to run"):
        assert words in description


def test_readme_names_what_installing_gives_and_it_exists():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "## What installing it gives you" in readme
    assert "caddy python-server" in readme and "../README.md" in readme
    # Every name the README offers a user is there to import.
    import caddysnake.asgi
    import caddysnake.interface
    import caddysnake.wsgi

    offered = {
        "caddysnake.ClientDisconnected": caddysnake.ClientDisconnected,
        "caddysnake.RequestBodyError": caddysnake.RequestBodyError,
        "caddysnake.RequestTimeout": caddysnake.RequestTimeout,
        "caddysnake.interface.detect(app)": caddysnake.interface.detect,
        "caddysnake.wsgi.build_environ": caddysnake.wsgi.build_environ,
        "caddysnake.asgi.build_scope": caddysnake.asgi.build_scope,
        "build_websocket_scope": caddysnake.asgi.build_websocket_scope,
        "caddysnake.asgi.as_asgi3": caddysnake.asgi.as_asgi3,
    }
    for name, obj in offered.items():
        assert f"`{name}`" in readme, name
        assert callable(obj), name
