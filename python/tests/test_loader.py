import importlib
import os
import sys
import textwrap
import uuid

import pytest

from caddysnake import ConfigError, __version__, loader

RUN = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHER = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"


@pytest.fixture(autouse=True)
def clean_imports():
    path = list(sys.path)
    modules = set(sys.modules)
    origins = dict(loader._origins)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    loader._origins.clear()
    loader._origins.update(origins)
    importlib.invalidate_caches()


def unique(prefix="app"):
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write_module(directory, name, source):
    path = os.path.join(directory, *name.split(".")) + ".py"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for d in range(1, len(name.split("."))):
        init = os.path.join(directory, *name.split(".")[:d], "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    with open(path, "w") as f:
        f.write(textwrap.dedent(source))
    return path


APP_SRC = """
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]

class Wrapper:
    def wsgi_app(self, environ, start_response):
        return application(environ, start_response)

app = Wrapper()
not_callable = 42

def create_app():
    return application

def broken_factory():
    raise RuntimeError("factory failed")
"""


def test_good_target(tmp_path):
    name = unique()
    write_module(tmp_path, name, APP_SRC)
    app = loader.load_app(f"{name}:application", str(tmp_path), "")
    assert app.__name__ == "application"
    assert sys.path[0] == str(tmp_path)


def test_dotted_module_and_attribute(tmp_path):
    pkg = unique("pkg")
    write_module(tmp_path, f"{pkg}.wsgi", APP_SRC)
    app = loader.load_app(f"{pkg}.wsgi:app.wsgi_app", str(tmp_path), "")
    assert app.__name__ == "wsgi_app"
    assert callable(app)


def test_factory(tmp_path):
    name = unique()
    write_module(tmp_path, name, APP_SRC)
    app = loader.load_app(f"{name}:create_app()", str(tmp_path), "")
    assert app.__name__ == "application"
    with pytest.raises(ConfigError, match="factory failed"):
        loader.load_app(f"{name}:broken_factory()", str(tmp_path), "")


def test_reload_same_target_same_dir(tmp_path):
    name = unique()
    write_module(tmp_path, name, APP_SRC)
    a = loader.load_app(f"{name}:application", str(tmp_path), "")
    b = loader.load_app(f"{name}:application", str(tmp_path), "")
    assert a is b
    assert sys.path.count(str(tmp_path)) == 1


@pytest.mark.parametrize(
    "target",
    ["myapp", "myapp:", ":app", "a:b:c", "my app:app", "myapp:app()()", "my-app:app", "myapp:app.", "myapp:1app"],
)
def test_bad_syntax(target):
    with pytest.raises(ConfigError) as e:
        loader.load_app(target, "", "")
    assert str(e.value) == (f'cannot load "{target}": expected "module:attribute", e.g. "myapp.wsgi:application"')


def test_missing_module(tmp_path):
    name = unique("missing")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:app", str(tmp_path), "")
    # The app's own module missing: the cause is working_dir, said once,
    # with no traceback through the import machinery.
    assert str(e.value) == (
        f'cannot load "{name}:app": no module named "{name}" in working_dir {tmp_path} (or sys.path): '
        f"set working_dir to the folder that holds {name}.py (or the {name}/ package)"
    )


def test_missing_module_without_working_dir_names_the_default_folder(tmp_path):
    name = unique("missing")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}.wsgi:app", "", "", default_dir=str(tmp_path))
    msg = str(e.value)
    assert f"in Caddy's working folder {tmp_path}, the default working_dir (or sys.path)" in msg
    assert f"holds {name}.py" in msg


def test_default_dir_resolves_the_module_and_says_where(tmp_path):
    name = unique()
    write_module(tmp_path, f"{name}.wsgi", APP_SRC)
    app = loader.load_app(f"{name}.wsgi:application", "", "", default_dir=str(tmp_path))
    assert app.__name__ == "application"
    assert loader.module_origin(f"{name}.wsgi") == str(tmp_path)
    assert loader.module_origin("sys") == ""


def test_missing_dependency_keeps_its_traceback_without_importlib_frames(tmp_path):
    name = unique()
    write_module(tmp_path, name, "x = 1\nimport no_such_dependency_4242\n")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:app", str(tmp_path), "")
    msg = str(e.value)
    assert msg.startswith(f'cannot load "{name}:app": importing module {name} failed (working_dir ')
    assert msg.count("cannot load") == 1
    assert f'{name}.py", line 2, in <module>' in msg
    assert "No module named 'no_such_dependency_4242'" in msg
    assert "<frozen importlib" not in msg and "importlib/__init__.py" not in msg
    assert "caddysnake/loader.py" not in msg


def test_module_raising_on_import(tmp_path):
    name = unique()
    write_module(tmp_path, name, "import sys\nx = 1\nraise ImportError('needs libfoo')\n")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:app", str(tmp_path), "")
    msg = str(e.value)
    assert name in msg and "needs libfoo" in msg and "line 3" in msg
    assert name not in sys.modules


def test_module_calling_sys_exit(tmp_path):
    name = unique()
    write_module(tmp_path, name, "import sys\nsys.exit(2)\n")
    with pytest.raises(ConfigError, match="SystemExit"):
        loader.load_app(f"{name}:app", str(tmp_path), "")


def test_missing_attribute(tmp_path):
    name = unique()
    write_module(tmp_path, name, APP_SRC)
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:app2", str(tmp_path), "")
    assert str(e.value) == f'cannot load "{name}:app2": module {name} has no attribute app2'
    with pytest.raises(ConfigError, match="has no attribute app.nope"):
        loader.load_app(f"{name}:app.nope", str(tmp_path), "")


def test_not_callable(tmp_path):
    name = unique()
    write_module(tmp_path, name, APP_SRC)
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:not_callable", str(tmp_path), "")
    assert "not_callable is not callable" in str(e.value) and "int" in str(e.value)


def test_working_dir_missing(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError) as e:
        loader.load_app("myapp:app", missing, "")
    assert missing in str(e.value) and "working_dir" in str(e.value)


def test_same_module_name_in_two_dirs(tmp_path):
    name = unique("main")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = write_module(a, name, APP_SRC)
    write_module(b, name, APP_SRC)
    loader.load_app(f"{name}:application", str(a), "")
    with pytest.raises(ConfigError) as e:
        loader.load_app(f"{name}:application", str(b), "")
    msg = str(e.value)
    assert f'module "{name}" is already loaded from {first}' in msg
    assert "share sys.modules" in msg and "rename the module" in msg


def test_stdlib_name_collision(tmp_path):
    write_module(tmp_path, "json", APP_SRC)
    import json  # noqa: F401

    with pytest.raises(ConfigError, match='module "json" is already loaded'):
        loader.load_app("json:application", str(tmp_path), "")


# ---------------------------------------------------------------- venvs


def make_venv(root, version=RUN, cfg_key="version", site=True, cfg=True):
    root.mkdir(exist_ok=True)
    if cfg:
        (root / "pyvenv.cfg").write_text(
            f"home = /usr/bin\ninclude-system-site-packages = false\n{cfg_key} = {version}.1\n"
        )
    sp = root / "lib" / f"python{version}" / "site-packages"
    if site:
        sp.mkdir(parents=True)
    return sp


def test_check_venv_ok(tmp_path):
    sp = make_venv(tmp_path / "venv")
    assert loader.check_venv(str(tmp_path / "venv")) == str(sp)


def test_check_venv_uv_style_version_info(tmp_path):
    sp = make_venv(tmp_path / "venv", cfg_key="version_info")
    assert loader.check_venv(str(tmp_path / "venv")) == str(sp)


def test_check_venv_missing_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        loader.check_venv(str(tmp_path / "nope"))


def test_check_venv_not_a_venv(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError) as e:
        loader.check_venv(str(tmp_path / "plain"))
    assert "pyvenv.cfg" in str(e.value)
    assert f"python{RUN} -m venv {tmp_path / 'plain'}" in str(e.value)


def test_check_venv_wrong_version(tmp_path):
    make_venv(tmp_path / "venv", version=OTHER)
    with pytest.raises(ConfigError) as e:
        loader.check_venv(str(tmp_path / "venv"))
    msg = str(e.value)
    assert OTHER in msg and RUN in msg
    assert "linked against" in msg
    assert f"python{RUN} -m venv" in msg and f"make PYTHON=python{OTHER}" in msg


def test_check_venv_version_from_lib_dir(tmp_path):
    root = tmp_path / "venv"
    root.mkdir()
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "lib" / f"python{OTHER}" / "site-packages").mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"is for Python {OTHER}"):
        loader.check_venv(str(root))


def test_check_venv_no_site_packages(tmp_path):
    make_venv(tmp_path / "venv", site=False)
    with pytest.raises(ConfigError, match="site-packages"):
        loader.check_venv(str(tmp_path / "venv"))


def test_check_venv_other_caddysnake_installed(tmp_path):
    sp = make_venv(tmp_path / "venv")
    (sp / "caddysnake-0.0.1.dist-info").mkdir()
    with pytest.raises(ConfigError) as e:
        loader.check_venv(str(tmp_path / "venv"))
    msg = str(e.value)
    assert "0.0.1" in msg and __version__ in msg
    assert f"pip install caddysnake=={__version__}" in msg and "uninstall" in msg


def test_check_venv_same_caddysnake_installed(tmp_path):
    sp = make_venv(tmp_path / "venv")
    (sp / f"caddysnake-{__version__}.dist-info").mkdir()
    assert loader.check_venv(str(tmp_path / "venv")) == str(sp)


def test_load_app_from_venv_with_pth(tmp_path):
    sp = make_venv(tmp_path / "venv")
    extra = tmp_path / "extra"
    extra.mkdir()
    name = unique("venvapp")
    write_module(extra, name, APP_SRC)
    (sp / "extra.pth").write_text(str(extra) + "\n")
    app = loader.load_app(f"{name}:application", "", str(tmp_path / "venv"))
    assert callable(app)
    assert str(sp) in sys.path and str(extra) in sys.path
    own = [p for p in sys.path if p in set(__import__("site").getsitepackages())]
    if own:
        assert sys.path.index(str(sp)) < sys.path.index(own[0])
        assert sys.path.index(str(extra)) < sys.path.index(own[0])


def test_load_app_bad_venv_fails_before_import(tmp_path):
    make_venv(tmp_path / "venv", version=OTHER)
    with pytest.raises(ConfigError, match="linked against"):
        loader.load_app("whatever:app", "", str(tmp_path / "venv"))
