"""Loading WSGI apps and checking virtualenvs, at Caddy configuration time.

Every failure is a ConfigError whose message says what to fix: it ends up in
Caddy's error output when the config is loaded.
"""

import importlib
import importlib.machinery
import os
import site
import sys
import traceback

from . import __version__, faults
from . import interface as _interface
from .bridge import ConfigError

_SYNTAX_HINT = 'expected "module:attribute", e.g. "myapp.wsgi:application"'

# Module name -> real path of the working_dir it was loaded for by load_app,
# so that a config reload of the same app finds its own module again.
_origins = {}

# The first extension module whose loading turned the GIL back on, on a
# free-threaded build (see guard_extensions). Each interpreter has its own
# copy of this module, so this is per interpreter, like the GIL it explains.
_gil_culprit = None

# Whether guard_extensions was asked to name refusing extensions (isolated
# sub-interpreters only).
_rewrite_refusals = False

# What CPython, PyO3, Cython 3 and numpy say when an extension refuses to be
# loaded in an isolated sub-interpreter; matched case-insensitively.
_REFUSALS = (
    "subinterpreter",
    "sub-interpreter",
    "interpreter change detected",
    "more than once per process",
    "one interpreter per process",
)


def _running_version():
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def parse_target(target):
    """Splits "module:attr.path" or "module:factory()" into
    (module, [attr, ...], is_factory); raises ConfigError on bad syntax."""
    bad = ConfigError(f'cannot load "{target}": {_SYNTAX_HINT}')
    if not isinstance(target, str) or target.count(":") != 1:
        raise bad
    module, attr = target.split(":")
    factory = attr.endswith("()")
    if factory:
        attr = attr[:-2]
    parts = attr.split(".")
    if not all(p.isidentifier() for p in module.split(".")) or not all(p.isidentifier() for p in parts):
        raise bad
    return module, parts, factory


def check_venv(venv):
    """Checks that venv is usable by this interpreter; returns its site-packages."""
    run = _running_version()
    if not os.path.isdir(venv):
        raise ConfigError(f'venv "{venv}" does not exist or is not a directory')
    cfg = os.path.join(venv, "pyvenv.cfg")
    if not os.path.isfile(cfg):
        raise ConfigError(
            f'"{venv}" is not a virtualenv (it has no pyvenv.cfg): create it with python{run} -m venv {venv}'
        )
    version = _venv_version(venv, cfg)
    if version is not None and version != run:
        # The Python C API and compiled extensions are tied to one minor
        # version: a venv made for another one cannot work in this process.
        raise ConfigError(
            f'venv "{venv}" is for Python {version}, but this caddy binary is linked against Python {run}: '
            f"recreate the venv with python{run} -m venv {venv}, "
            f"or build caddy with make PYTHON=python{version}"
        )
    sp = _venv_site_packages(venv)
    if not os.path.isdir(sp):
        exe = f"python{run}" + ("t" if _free_threaded_build() else "")
        raise ConfigError(f'venv "{venv}" has no {sp} directory: recreate it with {exe} -m venv {venv}')
    _check_installed_caddysnake(venv, sp)
    return sp


def _venv_site_packages(venv):
    """Where this interpreter's venv layout puts site-packages (a
    free-threaded 3.13t uses lib/python3.13t)."""
    import sysconfig

    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
    return sysconfig.get_path("purelib", scheme, vars={"base": venv, "platbase": venv})


def _venv_version(venv, cfg):
    """The venv's "X.Y", from pyvenv.cfg or its lib/pythonX.Y directory."""
    try:
        with open(cfg, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip().lower() in ("version", "version_info"):
                    nums = value.strip().split(".")
                    if len(nums) >= 2 and nums[0].isdigit() and nums[1].isdigit():
                        return f"{int(nums[0])}.{int(nums[1])}"
    except OSError as e:
        raise ConfigError(f"cannot read {cfg}: {e}") from None
    try:
        names = os.listdir(os.path.join(venv, "lib"))
    except OSError:
        return None
    found = sorted(n[len("python") :] for n in names if n.startswith("python") and n[6:].replace(".", "").isdigit())
    return found[0] if len(found) == 1 else None


def _check_installed_caddysnake(venv, sp):
    # The binary carries its own copy of this package; a different version
    # pip-installed in the venv means the app was written against other APIs.
    for name in os.listdir(sp):
        lower = name.lower()
        if lower.startswith("caddysnake-") and lower.endswith(".dist-info"):
            installed = name[len("caddysnake-") : -len(".dist-info")]
            if installed != __version__:
                raise ConfigError(
                    f'venv "{venv}" has caddysnake {installed} installed, but this caddy binary carries '
                    f"caddysnake {__version__}: run pip install caddysnake=={__version__} in the venv, "
                    f"or pip uninstall caddysnake"
                )


def _add_venv(sp):
    """Adds site-packages (and its .pth files) ahead of the interpreter's own."""
    before = list(sys.path)
    site.addsitedir(sp)
    added = [p for p in sys.path if p not in before]
    if not added:
        return  # already there (a config reload)
    own = set(site.getsitepackages())
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user:
        own.add(user)
    rest = [p for p in sys.path if p not in added]
    for i, p in enumerate(rest):
        if p in own:
            sys.path[:] = rest[:i] + added + rest[i:]
            return


def _add_working_dir(working_dir):
    if not os.path.isdir(working_dir):
        raise ConfigError(f'working_dir "{working_dir}" does not exist or is not a directory')
    wd = os.path.abspath(working_dir)
    if not sys.path or sys.path[0] != wd:
        while wd in sys.path:
            sys.path.remove(wd)
        sys.path.insert(0, wd)
    return os.path.realpath(wd)


def _location(mod):
    f = getattr(mod, "__file__", None)
    if f:
        return f
    path = getattr(mod, "__path__", None)  # namespace packages
    if path:
        for p in path:
            return p
    return None


def _within(path, directory):
    path = os.path.realpath(path)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _check_not_taken(target, module, wd):
    """All apps of one interpreter share sys.modules: a name already imported
    from elsewhere would silently hand this app another app's module."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        mod = sys.modules.get(name)
        if mod is None or _origins.get(name) == wd:
            continue
        loc = _location(mod)
        if loc is not None and _within(loc, wd):
            continue
        where = f"from {loc}" if loc else "(built in)"
        raise ConfigError(
            f'cannot load "{target}": module "{name}" is already loaded {where}; apps in the main '
            f"interpreter share sys.modules: rename the module or move the app"
        )


# ---------------------------------------------------------------- sub-interpreters


class SubinterpreterImportError(ImportError):
    """A C extension refused to load in an isolated sub-interpreter.

    An ImportError, so that libraries which fall back to pure Python when
    their optional speedups cannot be imported keep doing so."""


def _is_refusal(message):
    lower = message.lower()
    return any(r in lower for r in _REFUSALS)


def _is_missing_capi(exc):
    """Whether exc is PyCapsule_Import failing: on CPython 3.12, _datetime
    refuses sub-interpreters and datetime falls back to _pydatetime, which
    has no datetime_CAPI, so _zoneinfo (and any extension using the datetime
    C API) fails with an AttributeError, which zoneinfo's fallback to pure
    Python does not catch. As an ImportError it does."""
    return isinstance(exc, AttributeError) and "_CAPI" in str(exc)


def _refusal(exc, name, path):
    """exc rewritten as a SubinterpreterImportError naming the extension, or None."""
    if _is_missing_capi(exc):
        return SubinterpreterImportError(
            f'the C extension module "{name}" cannot be loaded in a sub-interpreter: it needs the C API '
            f"of a module that cannot ({exc})",
            name=name,
            path=path,
        )
    if isinstance(exc, SubinterpreterImportError) or not _is_refusal(str(exc)):
        return None  # already named (by the innermost extension), or another failure
    return SubinterpreterImportError(
        f'the C extension module "{name}" cannot be loaded in a sub-interpreter ({exc}); '
        f'serve this app from the main interpreter: remove "interpreters" from its python block '
        f"(or set interpreters 0)",
        name=name,
        path=path,
    )


def _gil_enabled():
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_enabled is not None and is_enabled()


def _note_gil(was_enabled, name):
    """Remembers name if loading it just turned the GIL on. CPython says so
    in a RuntimeWarning, but that is shown once and filtered like any
    warning; watching the switch itself needs no help from the filters."""
    global _gil_culprit
    if _gil_culprit is None and not was_enabled and _gil_enabled():
        _gil_culprit = name


def _guarded_create(original):
    def create_module(self, spec):
        gil = _gil_enabled()
        try:
            return original(self, spec)
        except (ImportError, AttributeError) as e:
            better = _refusal(e, spec.name, spec.origin) if _rewrite_refusals else None
            if better is None:
                raise
            raise better from e
        finally:
            _note_gil(gil, spec.name)

    create_module.__caddysnake_original__ = original
    return create_module


def _guarded_exec(original):
    def exec_module(self, module):
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None else getattr(module, "__name__", self.name)
        gil = _gil_enabled()
        try:
            return original(self, module)
        except (ImportError, AttributeError) as e:
            better = _refusal(e, name, spec.origin if spec is not None else self.path) if _rewrite_refusals else None
            if better is None:
                raise
            raise better from e
        finally:
            _note_gil(gil, name)

    exec_module.__caddysnake_original__ = original
    return exec_module


def guard_extensions(name_refusals=True):
    """Watches extension loading: notes the first one that turns the GIL
    back on (free-threaded builds), and with name_refusals, names the one
    that refuses a sub-interpreter.

    CPython strips importlib frames from ImportError tracebacks, so the
    refusal alone ("module X does not support ..." is the lucky case; PyO3
    and Cython do not name themselves) leaves the user guessing which
    dependency is at fault. Patching the class is enough: every interpreter
    has its own importlib. Safe to call again."""
    global _rewrite_refusals
    _rewrite_refusals = _rewrite_refusals or name_refusals
    cls = importlib.machinery.ExtensionFileLoader
    if not hasattr(cls.create_module, "__caddysnake_original__"):
        cls.create_module = _guarded_create(cls.create_module)
    if not hasattr(cls.exec_module, "__caddysnake_original__"):
        cls.exec_module = _guarded_exec(cls.exec_module)


def _unguard_extensions():
    """Undoes guard_extensions (for tests)."""
    global _rewrite_refusals
    _rewrite_refusals = False
    cls = importlib.machinery.ExtensionFileLoader
    for attr in ("create_module", "exec_module"):
        original = getattr(getattr(cls, attr), "__caddysnake_original__", None)
        if original is not None:
            setattr(cls, attr, original)


# (name, origin) of the extensions init_extension_in_main has run; main
# interpreter only.
_initialised_in_main = set()


def init_extension_in_main(name, origin):
    """Runs the init function of the C extension at origin in this, the main
    interpreter, for a sub-interpreter about to import it (CPython 3.12
    only: mainfirst.c says why). Returns None, or why it failed: the
    sub-interpreter then refuses the module rather than run its init itself.

    A single-phase module stays in CPython's extension cache, where the
    sub-interpreter's import finds and refuses it; a multi-phase one is
    created and dropped (never executed)."""
    key = (name, origin)
    if key in _initialised_in_main:
        return None
    import _imp

    try:
        _imp.create_dynamic(importlib.machinery.ModuleSpec(name, None, origin=origin))
    except BaseException as e:
        return f"{type(e).__name__}: {e}"
    _initialised_in_main.add(key)
    return None


def subinterpreter_refusal(exc):
    """The SubinterpreterImportError that exc is, or was caused by, or None.

    Libraries often re-raise import failures as their own ImportError (or
    something else), so the whole __cause__/__context__ chain is searched."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SubinterpreterImportError):
            return e
        todo += [e.__context__, e.__cause__]  # the cause is looked at first
    return None


# ---------------------------------------------------------------- the GIL


def _free_threaded_build():
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_status():
    """The GIL's state, for the free_threaded setting and the logs.

    The empty string on a build with a GIL; else "disabled", "enabled by
    module X", or "enabled" (PYTHON_GIL=1, or a module that re-enabled it was
    loaded before load_app)."""
    if not _free_threaded_build():
        return ""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_enabled is not None and not is_enabled():
        return "disabled"
    if _gil_culprit:
        return f"enabled by module {_gil_culprit}"
    return "enabled"


# ---------------------------------------------------------------- load_app


# Frames of the import machinery and of this loader: every import failure
# goes through them, so they only hide the app's own frames.
_PLUMBING = tuple(
    f'  File "{where}'
    for where in (
        "<frozen importlib.",
        "<caddy binary>/caddysnake/",  # this package, as the binary carries it
        os.path.join(os.path.dirname(globals().get("__file__") or "<caddy binary>/caddysnake/x"), ""),
        os.path.join(os.path.dirname(importlib.__file__), "__init__.py"),
    )
)


def format_failure(exc):
    """exc's traceback without the import machinery's frames; just the
    exception line when no frame of the app's is left."""
    lines = [s for s in traceback.format_exception(exc) if not s.startswith(_PLUMBING)]
    header = "Traceback (most recent call last):\n"
    # A header followed at once by the exception line: nothing to show.
    frames = [s.startswith("  ") for s in lines] + [False]
    return "".join(s for i, s in enumerate(lines) if s != header or frames[i + 1])


def _failed(target, what, exc):
    """The ConfigError for an exception from the app's code, with its traceback."""
    tb = format_failure(exc)
    refusal = subinterpreter_refusal(exc)
    if refusal is not None:
        # Which module to move out of the way matters more than which step failed.
        return ConfigError(f'cannot load "{target}": {refusal}\n{tb}')
    return ConfigError(f'cannot load "{target}": {what}:\n{tb}')


def _not_found_hint(exc, module, where):
    """A hint when exc says the app's own module (or a package above it)
    is missing: the usual cause is working_dir, not the app."""
    if not isinstance(exc, ModuleNotFoundError):
        return ""
    parts = module.split(".")
    if exc.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
        return ""
    top = parts[0]
    return (
        f'no module named "{exc.name}" in {where} (or sys.path): '
        f"set working_dir to the folder that holds {top}.py (or the {top}/ package)"
    )


def module_origin(module):
    """The folder the app's top-level module or package was imported from,
    or "" (built in, or not a file)."""
    mod = sys.modules.get(module.split(".")[0])
    loc = _location(mod) if mod is not None else None
    if not loc:
        return ""
    loc = os.path.dirname(os.path.abspath(loc))
    if getattr(mod, "__path__", None) is not None and getattr(mod, "__file__", None):
        loc = os.path.dirname(loc)  # a package: the folder holding it
    return loc


def load_app(target, working_dir, venv, isolated=False, interface="", default_dir=""):
    """Imports target ("module:attribute") and returns the app callable.

    isolated: loading in a sub-interpreter with its own GIL, where some C
    extensions refuse to load; the error then names the extension.
    interface: "wsgi" or "asgi", the directive the app is served under: an
    app that is surely of the other kind is refused (interface.py).
    default_dir: used as working_dir when none is set (Caddy's working
    folder, as uvicorn and gunicorn use theirs); it is not claimed for the
    module's name as a set working_dir is."""
    if isolated:
        guard_extensions()
    elif _free_threaded_build():
        guard_extensions(name_refusals=False)  # only to see who turns the GIL on
    module, attrs, factory = parse_target(target)
    if venv:
        _add_venv(check_venv(venv))
    wd = _add_working_dir(working_dir) if working_dir else None
    if wd is not None:
        _check_not_taken(target, module, wd)
    elif default_dir and os.path.isdir(default_dir):
        _add_working_dir(default_dir)
    # Files may have appeared since the path finders cached directory lists.
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module(module)
    except BaseException as e:
        if working_dir:
            where = f"working_dir {working_dir}"
        elif default_dir:
            where = f"Caddy's working folder {default_dir}, the default working_dir"
        else:
            where = "any folder"
        hint = _not_found_hint(e, module, where)
        if hint:
            raise ConfigError(f'cannot load "{target}": {hint}') from None
        more = f" (working_dir {working_dir})" if working_dir else ""
        raise _failed(target, f"importing module {module} failed{more}", e) from None
    if wd is not None:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            _origins.setdefault(".".join(parts[:i]), wd)

    obj = mod
    for i, name in enumerate(attrs):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError(
                f'cannot load "{target}": module {module} has no attribute {".".join(attrs[: i + 1])}'
            ) from None
        except BaseException as e:
            raise _failed(target, f"getting {name} failed", e) from None
    attr = ".".join(attrs)
    if factory:
        if not callable(obj):
            raise ConfigError(f'cannot load "{target}": {attr} is not callable (it is a {type(obj).__name__})')
        try:
            obj = obj()
        except BaseException as e:
            raise _failed(target, f"calling {attr}() failed", e) from None
        attr += "()"
    if not callable(obj):
        kind = "an ASGI" if interface == "asgi" else "a WSGI"
        raise ConfigError(
            f'cannot load "{target}": {attr} is not callable (it is a {type(obj).__name__}); '
            f"it must be {kind} application"
        )
    _interface.check(target, obj, interface)
    faults.targets[id(obj)] = target
    return obj
