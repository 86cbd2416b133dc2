package engine

// #cgo CFLAGS: -O2 -Wall -Wextra
// #include "caddysnake.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	pyfiles "github.com/caddysnake/caddysnake/python"
)

// The caddysnake Python package, carried inside the binary so that an app's
// venv does not need it installed (see bootstrapSource).
var embeddedPackage = pyfiles.Files

// PackageVersion is the version of the embedded caddysnake Python package,
// read from its __init__.py so there is one source of truth.
var PackageVersion = func() string {
	src, err := embeddedPackage.ReadFile("caddysnake/__init__.py")
	if err != nil {
		panic(err)
	}
	m := regexp.MustCompile(`(?m)^__version__ = "([^"]+)"`).FindSubmatch(src)
	if m == nil {
		panic("caddysnake/__init__.py has no __version__ line")
	}
	return string(m[1])
}()

// bootstrapSource runs once in every fresh interpreter (ISOLATED is true in
// a sub-interpreter). It installs a finder
// for the embedded package at the END of sys.meta_path, so that a copy
// pip-installed on sys.path wins; either way the version imported must be the
// one this binary was built with, because the C bridge and the package speak
// a private protocol.
const bootstrapSource = `
import sys
import importlib.abc
import importlib.util


class EmbeddedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, files):
        # files: path ("caddysnake/asgi/http.py") -> source. A package is
        # its __init__.py, as on disk.
        self.modules = {}  # module name -> (path, is_pkg)
        for path in files:
            name, is_pkg = path[:-3].replace("/", "."), False
            if name.endswith(".__init__"):
                name, is_pkg = name[: -len(".__init__")], True
            self.modules[name] = (path, is_pkg)
        self.files = files

    def find_spec(self, name, path=None, target=None):
        found = self.modules.get(name)
        if found is None:
            return None
        origin = "<caddy binary>/" + found[0]
        return importlib.util.spec_from_loader(name, self, origin=origin, is_package=found[1])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        spec = module.__spec__
        path = self.modules[spec.name][0]
        exec(compile(self.files[path], spec.origin, "exec"), module.__dict__)


sys.meta_path.append(EmbeddedFinder(EMBEDDED_FILES))

if ISOLATED and sys.version_info[:2] == (3, 12):
    # CPython 3.12 runs an extension's init function in the importing
    # sub-interpreter before refusing a single-phase one, corrupting state
    # the whole process shares: run it in the main interpreter first, as
    # 3.13 does (mainfirst.c). Installed before anything else is imported.
    import _imp
    import _caddysnake

    def _create_dynamic(spec, *file, _create=_imp.create_dynamic, _init=_caddysnake.init_in_main):
        _init(spec.name, spec.origin)
        return _create(spec, *file)

    _imp.create_dynamic = _create_dynamic

import caddysnake

if caddysnake.__version__ != BINARY_VERSION:
    raise RuntimeError(
        "the caddysnake package imported from %s is version %s, but this caddy binary "
        "carries %s: run 'pip install caddysnake==%s' there, or uninstall it"
        % (getattr(caddysnake, "__file__", "?"), caddysnake.__version__, BINARY_VERSION, BINARY_VERSION)
    )

from caddysnake import asgi, bridge, faults, loader, wsgi

faults.install()

serve_wsgi = wsgi.serve


def load_app(target, working_dir, venv, isolated, interface, default_dir):
    app = loader.load_app(target, working_dir, venv, isolated, interface, default_dir)
    return app, loader.module_origin(target.split(":")[0])

run_asgi_loop = asgi.run_loop
gil_status = loader.gil_status
init_extension_in_main = loader.init_extension_in_main


def describe_error(exc):
    if isinstance(exc, bridge.ConfigError):
        return str(exc)
    import traceback
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
`

// pythonMain runs closures on the Python main thread: the OS thread that
// started CPython. Configuration-time work runs there because some libraries
// (signal handlers, some C extensions) must be imported on the main thread.
var pythonMain struct {
	once    sync.Once
	err     error
	version string
	calls   chan func()
	interp  *interpreter // the main interpreter, owned by this thread
}

// ErrPythonStart wraps a failure to start the embedded interpreter; CPython
// cannot be started twice in one process, so it is permanent.
var ErrPythonStart = errors.New("python: the embedded interpreter failed to start (restart caddy after fixing the cause)")

// startPython starts CPython once per process; later calls return the
// first call's result. CPython is never finalized: it lives as long as the
// process, across config reloads.
func startPython() error {
	pythonMain.once.Do(func() {
		ready := make(chan error)
		pythonMain.calls = make(chan func())
		go func() {
			// This goroutine never unlocks: its OS thread holds the main
			// interpreter's main thread state for the life of the process.
			runtime.LockOSThread()
			if err := initPython(); err != nil {
				ready <- err
				return
			}
			ready <- nil
			for f := range pythonMain.calls {
				f()
			}
		}()
		if err := <-ready; err != nil {
			pythonMain.err = fmt.Errorf("%w: %v", ErrPythonStart, err)
			return
		}
		schedulingPolicy = batchThreads() // sched.go says why

	})
	return pythonMain.err
}

func initPython() error {
	files, err := embeddedFiles()
	if err != nil {
		return err
	}
	cboot := C.CString(bootstrapSource)
	defer C.free(unsafe.Pointer(cboot))
	cfiles := C.CBytes(files)
	defer C.free(cfiles)
	cver := C.CString(PackageVersion)
	defer C.free(unsafe.Pointer(cver))
	var ci *C.cs_interp
	if cerr := C.caddysnake_init(cboot, (*C.char)(cfiles), C.size_t(len(files)), cver, &ci); cerr != nil {
		defer C.free(unsafe.Pointer(cerr))
		return errors.New(C.GoString(cerr))
	}
	pythonMain.interp = &interpreter{ci: ci, calls: pythonMain.calls, isMain: true}
	v := C.GoString(C.caddysnake_python_version())
	pythonMain.version, _, _ = strings.Cut(v, " ")
	return nil
}

// embeddedFiles lays out the package, subpackages included, as
// NUL-separated "path", "source" pairs (path as "caddysnake/asgi/http.py"),
// the form caddysnake_init reads; the bootstrap's finder names the modules.
func embeddedFiles() ([]byte, error) {
	var out []byte
	err := fs.WalkDir(embeddedPackage, "caddysnake", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(name) != ".py" {
			return err
		}
		src, err := embeddedPackage.ReadFile(name)
		if err != nil {
			return err
		}
		out = append(out, name...)
		out = append(out, 0)
		out = append(out, src...)
		out = append(out, 0)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PythonVersion is the "X.Y.Z" version of the linked CPython, once started.
func PythonVersion() string { return pythonMain.version }
