"""Loading WSGI apps and checking virtualenvs, at Caddy configuration time.

Every failure is a ConfigError whose message says what to fix: it ends up in
Caddy's error output when the config is loaded.
"""

import importlib
import os
import site
import sys
import traceback

from . import __version__
from .bridge import ConfigError

_SYNTAX_HINT = 'expected "module:attribute", e.g. "myapp.wsgi:application"'

# Module name -> real path of the working_dir it was loaded for by load_app,
# so that a config reload of the same app finds its own module again.
_origins = {}


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
    sp = os.path.join(venv, "lib", f"python{run}", "site-packages")
    if not os.path.isdir(sp):
        raise ConfigError(
            f'venv "{venv}" has no {sp} directory: recreate it with python{run} -m venv {venv}'
        )
    _check_installed_caddysnake(venv, sp)
    return sp


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
        raise ConfigError(f'cannot read {cfg}: {e}') from None
    try:
        names = os.listdir(os.path.join(venv, "lib"))
    except OSError:
        return None
    found = sorted(n[len("python"):] for n in names if n.startswith("python") and n[6:].replace(".", "").isdigit())
    return found[0] if len(found) == 1 else None


def _check_installed_caddysnake(venv, sp):
    # The binary carries its own copy of this package; a different version
    # pip-installed in the venv means the app was written against other APIs.
    for name in os.listdir(sp):
        lower = name.lower()
        if lower.startswith("caddysnake-") and lower.endswith(".dist-info"):
            installed = name[len("caddysnake-"):-len(".dist-info")]
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


def load_app(target, working_dir, venv):
    """Imports target ("module:attribute") and returns the WSGI callable."""
    module, attrs, factory = parse_target(target)
    if venv:
        _add_venv(check_venv(venv))
    wd = _add_working_dir(working_dir) if working_dir else None
    if wd is not None:
        _check_not_taken(target, module, wd)
    # Files may have appeared since the path finders cached directory lists.
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module(module)
    except BaseException as e:
        tb = "".join(traceback.format_exception(e))
        hint = f" (working_dir {working_dir})" if working_dir else ""
        raise ConfigError(f'cannot load "{target}": importing module {module} failed{hint}:\n{tb}') from None
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
            tb = "".join(traceback.format_exception(e))
            raise ConfigError(f'cannot load "{target}": getting {name} failed:\n{tb}') from None
    attr = ".".join(attrs)
    if factory:
        if not callable(obj):
            raise ConfigError(f'cannot load "{target}": {attr} is not callable (it is a {type(obj).__name__})')
        try:
            obj = obj()
        except BaseException as e:
            tb = "".join(traceback.format_exception(e))
            raise ConfigError(f'cannot load "{target}": calling {attr}() failed:\n{tb}') from None
        attr += "()"
    if not callable(obj):
        raise ConfigError(
            f'cannot load "{target}": {attr} is not callable (it is a {type(obj).__name__}); '
            f"it must be a WSGI application"
        )
    return obj
