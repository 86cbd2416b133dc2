import os
import re
import subprocess
import sys
import pytest

tomllib = pytest.importorskip("tomllib")

import caddysnake
from caddysnake import bridge

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
    assert out.stdout.split() == ["caddysnake", "caddysnake.bridge"]


def test_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)
    assert cfg["build-system"]["build-backend"] == "setuptools.build_meta"
    assert cfg["project"]["name"] == "caddysnake"
    assert cfg["project"]["dynamic"] == ["version"]
    assert cfg["project"]["requires-python"] == ">=3.10"
    assert cfg["project"]["optional-dependencies"]["test"] == ["pytest"]
    assert cfg["tool"]["setuptools"]["packages"] == ["caddysnake"]
    assert cfg["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "caddysnake.__version__"}
