"""The sub-interpreter extension guard, warning replay and gil_status in
caddysnake.loader, and the uvloop message in caddysnake.asgi.

Extensions are simulated at the lowest level only: a stub file with an
extension suffix makes the ordinary path finder pick ExtensionFileLoader,
and `_imp.create_dynamic` / `_imp.exec_dynamic` (what that loader calls)
are replaced for the stub names, so the patched loader methods run for real.
"""

import _imp
import asyncio
import importlib
import importlib.machinery
import os
import sys
import sysconfig
import types
import uuid
import warnings

import pytest

from caddysnake import ConfigError, asgi, loader

EXT = importlib.machinery.EXTENSION_SUFFIXES[0]
Loader = importlib.machinery.ExtensionFileLoader
ORIGINAL_CREATE = Loader.create_module
ORIGINAL_EXEC = Loader.exec_module

CPYTHON = "module {} does not support loading in subinterpreters"
PYO3 = "PyO3 modules do not yet support subinterpreters, see https://github.com/PyO3/pyo3/issues/576"
CYTHON = "Interpreter change detected - this module can only be loaded into one interpreter per process."
NUMPY = "cannot load module more than once per process"

FIX = 'serve this app from the main interpreter: remove "interpreters" from its python block (or set interpreters 0)'


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    path = list(sys.path)
    modules = set(sys.modules)
    monkeypatch.setattr(loader, "_origins", dict(loader._origins))
    monkeypatch.setattr(loader, "_gil_culprit", None)
    yield
    loader._unguard_extensions()
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    importlib.invalidate_caches()
    assert Loader.create_module is ORIGINAL_CREATE and Loader.exec_module is ORIGINAL_EXEC


def unique(prefix="m"):
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write(directory, name, text=""):
    """Writes module `name` (a .py, or an extension stub if text is None),
    with __init__.py files for its packages; returns its path."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        pkg = os.path.join(directory, *parts[:i])
        os.makedirs(pkg, exist_ok=True)
        init = os.path.join(pkg, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    path = os.path.join(directory, *parts) + (EXT if text is None else ".py")
    with open(path, "w") as f:
        f.write("not a shared object\n" if text is None else text)
    return path


@pytest.fixture
def ext(monkeypatch, tmp_path):
    """ext(name, refuse=message, at="create"|"exec", then=callable) -> path:
    an extension module stub in tmp_path (on sys.path). Without refuse it
    loads as an empty module; `then` runs inside create_module first."""
    rules = {}
    real_create, real_exec = _imp.create_dynamic, _imp.exec_dynamic

    def create_dynamic(spec, *args):
        rule = rules.get(spec.name)
        if rule is None:
            return real_create(spec, *args)
        if rule["then"]:
            rule["then"]()
        if rule["refuse"] and rule["at"] == "create":
            raise ImportError(rule["refuse"])
        return types.ModuleType(spec.name)

    def exec_dynamic(module):
        rule = rules.get(module.__name__)
        if rule is None:
            return real_exec(module)
        if rule["refuse"] and rule["at"] == "exec":
            raise ImportError(rule["refuse"])
        return 0

    monkeypatch.setattr(_imp, "create_dynamic", create_dynamic)
    monkeypatch.setattr(_imp, "exec_dynamic", exec_dynamic)
    monkeypatch.syspath_prepend(str(tmp_path))

    def _ext(name, refuse=None, at="create", then=None):
        rules[name] = {"refuse": refuse, "at": at, "then": then}
        path = write(tmp_path, name, None)
        importlib.invalidate_caches()
        return path

    return _ext


def import_error(name):
    importlib.invalidate_caches()
    with pytest.raises(ImportError) as e:
        importlib.import_module(name)
    return e.value


# ---------------------------------------------------------------- the guard


@pytest.mark.parametrize("refusal", [CPYTHON, PYO3, CYTHON, NUMPY, "Sub-Interpreters are not supported"])
@pytest.mark.parametrize("at", ["create", "exec"])
def test_refusal_is_rewritten(ext, refusal, at):
    name = unique("pkg") + "._core"
    original = refusal.format(name)
    path = ext(name, refuse=original, at=at)
    loader.guard_extensions()
    e = import_error(name)
    assert type(e) is loader.SubinterpreterImportError
    assert isinstance(e, ImportError)
    assert str(e) == (f'the C extension module "{name}" cannot be loaded in a sub-interpreter ({original}); {FIX}')
    assert e.name == name and e.path == path
    assert type(e.__cause__) is ImportError and str(e.__cause__) == original


def test_without_the_guard_the_refusal_is_anonymous(ext):
    name = unique()
    ext(name, refuse=PYO3)
    e = import_error(name)
    assert type(e) is ImportError and str(e) == PYO3


def test_other_import_errors_pass_through(ext):
    name = unique()
    ext(name, refuse="libfoo.so.1: cannot open shared object file: No such file or directory")
    loader.guard_extensions()
    e = import_error(name)
    assert type(e) is ImportError
    assert str(e) == "libfoo.so.1: cannot open shared object file: No such file or directory"


def test_real_load_failure_is_unchanged(tmp_path, monkeypatch):
    # No simulation: the stub is handed to the dynamic loader, which rejects it.
    name = unique()
    write(tmp_path, name, None)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = import_error(name)
    loader.guard_extensions()
    after = import_error(name)
    assert type(before) is type(after) is ImportError
    assert str(after) == str(before) and str(after)  # the dynamic loader's own words


def test_guard_is_idempotent_and_undone(ext):
    loader.guard_extensions()
    create, exec_ = Loader.create_module, Loader.exec_module
    assert create is not ORIGINAL_CREATE and exec_ is not ORIGINAL_EXEC
    loader.guard_extensions()
    loader.guard_extensions()
    assert Loader.create_module is create and Loader.exec_module is exec_
    name = unique()
    ext(name, refuse=CYTHON)
    e = import_error(name)
    assert type(e) is loader.SubinterpreterImportError
    assert type(e.__cause__) is ImportError  # wrapped once, not once per call
    assert str(e).count("cannot be loaded in a sub-interpreter") == 1
    loader._unguard_extensions()
    assert Loader.create_module is ORIGINAL_CREATE and Loader.exec_module is ORIGINAL_EXEC
    assert type(import_error(name)) is ImportError


def test_innermost_extension_is_named(ext):
    inner, outer = unique("inner"), unique("outer")
    ext(inner, refuse=NUMPY)
    ext(outer, then=lambda: importlib.import_module(inner))
    loader.guard_extensions()
    e = import_error(outer)
    assert type(e) is loader.SubinterpreterImportError
    assert e.name == inner and f'"{inner}"' in str(e) and outer not in str(e)


def test_fallback_on_import_error_keeps_working(ext, tmp_path):
    # markupsafe-style optional speedups: the app still loads, without them.
    pkg = unique("lib")
    ext(f"{pkg}._speedups", refuse=CPYTHON.format(f"{pkg}._speedups"))
    core = """\
try:
    from ._speedups import escape
    SPEEDUPS = True
except ImportError:
    SPEEDUPS = False
"""
    write(tmp_path, f"{pkg}.core", core)
    name = unique("app")
    write(tmp_path, name, f"from {pkg}.core import SPEEDUPS\ndef application(environ, start_response):\n    pass\n")
    app = loader.load_app(f"{name}:application", str(tmp_path), "", isolated=True)
    assert callable(app)
    assert sys.modules[f"{pkg}.core"].SPEEDUPS is False


# ---------------------------------------------------------------- load_app


def refused_app(ext, tmp_path, body):
    """An app module importing a refusing extension in the way body says."""
    core = unique("pydantic_core") + "._pydantic_core"
    ext(core, refuse=PYO3)
    name = unique("app")
    write(tmp_path, name, body.format(core=core) + "\ndef application(environ, start_response):\n    pass\n")
    return name, core


def expected_start(target, core):
    return (
        f'cannot load "{target}": the C extension module "{core}" cannot be loaded in a '
        f"sub-interpreter ({PYO3}); {FIX}\nTraceback"
    )


def test_load_app_names_the_extension(ext, tmp_path):
    name, core = refused_app(ext, tmp_path, "import {core}")
    target = f"{name}:application"
    with pytest.raises(ConfigError) as e:
        loader.load_app(target, str(tmp_path), "", isolated=True)
    msg = str(e.value)
    assert msg.startswith(expected_start(target, core))
    assert "SubinterpreterImportError" in msg and f'File "{tmp_path / name}.py", line 1' in msg


def test_load_app_finds_the_refusal_behind_a_library_error(ext, tmp_path):
    body = (
        "try:\n"
        "    import {core}\n"
        "except ImportError as e:\n"
        "    try:\n"
        "        raise ValueError('cleanup failed')\n"
        "    except ValueError:\n"
        "        raise RuntimeError('the core library is missing') from e\n"
    )
    name, core = refused_app(ext, tmp_path, body)
    target = f"{name}:application"
    with pytest.raises(ConfigError) as e:
        loader.load_app(target, str(tmp_path), "", isolated=True)
    msg = str(e.value)
    assert msg.startswith(expected_start(target, core))
    assert "RuntimeError: the core library is missing" in msg


def test_load_app_names_the_extension_from_a_factory(ext, tmp_path):
    body = "def create_app():\n    import {core}\n"
    name, core = refused_app(ext, tmp_path, body)
    target = f"{name}:create_app()"
    with pytest.raises(ConfigError) as e:
        loader.load_app(target, str(tmp_path), "", isolated=True)
    assert str(e.value).startswith(expected_start(target, core))


def test_load_app_shared_interpreter_is_unguarded(ext, tmp_path):
    name, core = refused_app(ext, tmp_path, "import {core}")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:application", str(tmp_path), "")
    msg = str(e.value)
    assert msg.startswith(f'cannot load "{name}:application": importing module {name} failed')
    assert PYO3 in msg and "cannot be loaded in a sub-interpreter" not in msg
    assert Loader.create_module is ORIGINAL_CREATE


def test_load_app_other_failures_keep_their_message(tmp_path):
    name = unique("app")
    write(tmp_path, name, "raise ImportError('needs libfoo')\n")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:application", str(tmp_path), "", isolated=True)
    msg = str(e.value)
    assert msg.startswith(f'cannot load "{name}:application": importing module {name} failed (working_dir ')
    assert "needs libfoo" in msg
    assert hasattr(Loader.create_module, "__caddysnake_original__")  # isolated installed the guard


def test_subinterpreter_refusal_walks_the_chain():
    refusal = loader.SubinterpreterImportError("no")
    assert loader.subinterpreter_refusal(refusal) is refusal
    assert loader.subinterpreter_refusal(ImportError("no")) is None
    try:
        try:
            raise refusal
        except ImportError:
            raise KeyError("x")  # noqa: B904 - the test wants the implicit __context__
    except KeyError as e:
        outer = e
    assert loader.subinterpreter_refusal(outer) is refusal
    cyclic = ValueError("a")
    cyclic.__context__ = ValueError("b")
    cyclic.__context__.__context__ = cyclic
    assert loader.subinterpreter_refusal(cyclic) is None


# ---------------------------------------------------------------- the GIL


@pytest.fixture
def free_threaded(monkeypatch):
    """Pretends to be a free-threaded build; returns a switch for the GIL."""
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda key: 1 if key == "Py_GIL_DISABLED" else real(key))
    gil = {"enabled": False}
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: gil["enabled"], raising=False)
    return gil


def test_gil_status_with_a_gil(monkeypatch):
    real = sysconfig.get_config_var
    for value in (0, None):
        monkeypatch.setattr(
            sysconfig, "get_config_var", lambda key, value=value: value if key == "Py_GIL_DISABLED" else real(key)
        )
        monkeypatch.setattr(loader, "_gil_culprit", "fastext")
        assert loader.gil_status() == ""


def test_gil_status_free_threaded(free_threaded):
    assert loader.gil_status() == "disabled"
    free_threaded["enabled"] = True
    assert loader.gil_status() == "enabled"


def test_gil_culprit_is_the_extension_that_turned_it_on(free_threaded, ext, tmp_path):
    # The GIL goes on while fastext._impl loads (as CPython does for an
    # extension without Py_mod_gil); the app's own warning filters do not matter.
    fine = unique("fine")
    ext(fine)
    ext("fastext._impl", then=lambda: free_threaded.update(enabled=True))
    ext("later")
    name = unique("app")
    write(tmp_path, name, f"import {fine}\nimport fastext._impl\nimport later\ndef application(e, s):\n    pass\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader.load_app(f"{name}:application", str(tmp_path), "")
    assert loader.gil_status() == "enabled by module fastext._impl"
    free_threaded["enabled"] = False  # e.g. PYTHON_GIL=0 after all
    assert loader.gil_status() == "disabled"


def test_gil_culprit_is_found_in_a_factory(free_threaded, ext, tmp_path):
    ext("lazyext", then=lambda: free_threaded.update(enabled=True))
    name = unique("app")
    write(tmp_path, name, "def create_app():\n    import lazyext\n    return print\n")
    loader.load_app(f"{name}:create_app()", str(tmp_path), "")
    assert loader.gil_status() == "enabled by module lazyext"


def test_gil_already_on_names_nobody(free_threaded, ext, tmp_path):
    free_threaded["enabled"] = True  # PYTHON_GIL=1
    ext("innocent")
    name = unique("app")
    write(tmp_path, name, "import innocent\ndef application(e, s):\n    pass\n")
    loader.load_app(f"{name}:application", str(tmp_path), "")
    assert loader.gil_status() == "enabled"


def test_app_warning_hooks_survive_load(tmp_path):
    # An app that installs its own showwarning or filters at import keeps them.
    name = unique("app")
    write(
        tmp_path,
        name,
        (
            "import warnings\n"
            "def hook(*a, **k):\n    pass\n"
            "warnings.showwarning = hook\n"
            "warnings.filterwarnings('ignore', message='app-specific')\n"
            "def application(e, s):\n    pass\n"
        ),
    )
    with warnings.catch_warnings():
        loader.load_app(f"{name}:application", str(tmp_path), "")
        assert warnings.showwarning.__name__ == "hook"
        assert any(f[1] is not None and f[1].pattern == "app-specific" for f in warnings.filters)


def test_free_threaded_main_interpreter_does_not_rewrite_refusals(free_threaded, ext, tmp_path):
    name = unique("pkg") + "._core"
    ext(name, refuse=CPYTHON.format(name))
    app = unique("app")
    write(tmp_path, app, f"import {name}\n")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{app}:application", str(tmp_path), "")
    assert "cannot be loaded in a sub-interpreter" not in str(e.value)


# ---------------------------------------------------------------- uvloop


@pytest.fixture
def fake_uvloop(ext, tmp_path, monkeypatch):
    """A uvloop package whose Cython core refuses this interpreter."""
    for name in [n for n in sys.modules if n == "uvloop" or n.startswith("uvloop.")]:
        monkeypatch.delitem(sys.modules, name)

    def _fake(init="from .loop import Loop\n"):
        ext("uvloop.loop", refuse=CYTHON)  # also makes the package directory
        with open(os.path.join(tmp_path, "uvloop", "__init__.py"), "w") as f:
            f.write(init)
        importlib.invalidate_caches()

    return _fake


def uvloop_error(kind):
    with pytest.raises(asgi.server._StartupError) as e:
        asgi.server._new_loop(kind)
    return str(e.value)


@pytest.mark.parametrize(
    "init",
    [
        "from .loop import Loop\n",
        "try:\n    from .loop import Loop\n"
        "except ImportError as e:\n    raise ImportError('uvloop is broken') from e\n",
    ],
)
def test_uvloop_in_a_subinterpreter(fake_uvloop, init):
    fake_uvloop(init)
    loader.guard_extensions()
    msg = uvloop_error("uvloop")
    assert msg == (
        "loop uvloop: uvloop cannot run in a sub-interpreter; set loop asyncio "
        '(or remove "interpreters" from the python block to serve the app from the main interpreter)'
    )
    loop = asgi.server._new_loop("auto")
    try:
        assert isinstance(loop, asyncio.BaseEventLoop) and type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_uvloop_broken_otherwise_says_install(fake_uvloop):
    fake_uvloop("raise ImportError('libuv.so.1: cannot open shared object file')\n")
    loader.guard_extensions()
    assert "uvloop is not installed" in uvloop_error("uvloop")


def test_uvloop_subinterpreter_failure_at_startup(fake_uvloop, start):
    fake_uvloop()
    loader.guard_extensions()

    async def app(scope, receive, send):
        pass

    r = start(app, loop="uvloop", lifespan="off")
    ok, message = r.wait_ready()
    r.join()
    assert ok is False and "uvloop cannot run in a sub-interpreter" in message and "loop asyncio" in message


def test_missing_c_api_is_a_refusal(ext):
    # CPython 3.12: _datetime refuses sub-interpreters, datetime falls back
    # to _pydatetime, and _zoneinfo's PyCapsule_Import("datetime.datetime_CAPI")
    # raises AttributeError, which zoneinfo's "except ImportError" misses.
    def no_capi():
        raise AttributeError("module 'datetime' has no attribute 'datetime_CAPI'")

    name = unique("_zone")
    ext(name, then=no_capi)
    loader.guard_extensions()
    e = import_error(name)
    assert type(e) is loader.SubinterpreterImportError
    assert f'the C extension module "{name}" cannot be loaded in a sub-interpreter' in str(e)
    assert type(e.__cause__) is AttributeError


def test_uvloop_missing_names_the_venv_and_the_fix(fake_uvloop):
    fake_uvloop("raise ImportError('No module named uvloop.loop')\n")
    with pytest.raises(asgi.server._StartupError) as e:
        asgi.server._new_loop("uvloop", "/srv/app/.venv")
    assert str(e.value) == (
        "loop uvloop: uvloop is not installed in /srv/app/.venv: pip install uvloop, or use loop asyncio (or auto)"
    )
    assert f"in {sys.prefix} (no venv is set)" in uvloop_error("uvloop")
