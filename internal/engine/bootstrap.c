// bootstrap.c: runs the bootstrap (python.go) in each new interpreter and
// keeps the functions the bridge calls (contracts in bootstrap.h).
#include "bootstrap.h"
#include "args.h"
#include "mainfirst.h"

#include <stdlib.h>
#include <string.h>

// The bootstrap and package sources, kept for the sub-interpreters made
// after start-up (each runs the bootstrap on its own).
static struct {
	char *source;
	char *files;
	size_t files_len;
	char *version;
} boot;

int cs_bootstrap_keep(const char *bootstrap, const char *files, size_t files_len, const char *version) {
	boot.source = strdup(bootstrap);
	boot.files = malloc(files_len);
	boot.version = strdup(version);
	if (boot.source == NULL || boot.files == NULL || boot.version == NULL) {
		return -1;
	}
	memcpy(boot.files, files, files_len);
	boot.files_len = files_len;
	return 0;
}

char *cs_status_error(PyStatus status) {
	char buf[512];
	snprintf(buf, sizeof(buf), "starting CPython failed: %s%s%s",
	         status.func ? status.func : "", status.func ? ": " : "",
	         status.err_msg ? status.err_msg : "unknown error");
	return strdup(buf);
}

// Builds {module name: source} from the NUL-separated blob.
static PyObject *files_dict(const char *files, size_t len) {
	PyObject *d = PyDict_New();
	if (d == NULL) {
		return NULL;
	}
	const char *p = files, *end = files + len;
	while (p < end) {
		const char *name = p;
		p += strlen(p) + 1;
		if (p >= end) {
			break;
		}
		const char *src = p;
		p += strlen(p) + 1;
		PyObject *s = PyUnicode_FromString(src);
		if (s == NULL || PyDict_SetItemString(d, name, s) < 0) {
			Py_XDECREF(s);
			Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(s);
	}
	return d;
}

static PyObject *take_global(PyObject *ns, const char *name) {
	PyObject *o = PyDict_GetItemString(ns, name); // borrowed
	if (o == NULL) {
		PyErr_Format(PyExc_RuntimeError, "bootstrap did not define %s", name);
		return NULL;
	}
	Py_INCREF(o);
	return o;
}

// Runs the bootstrap in ci's interpreter (current, GIL held) and keeps the
// functions it defines.
char *cs_run_bootstrap(cs_interp *ci) {
	PyObject *ns = NULL, *code = NULL, *res = NULL, *fd = NULL, *ver = NULL;
	char *err = NULL;
	ns = PyDict_New();
	fd = files_dict(boot.files, boot.files_len);
	ver = PyUnicode_FromString(boot.version);
	if (ns == NULL || fd == NULL || ver == NULL ||
	    PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) < 0 ||
	    PyDict_SetItemString(ns, "EMBEDDED_FILES", fd) < 0 ||
	    PyDict_SetItemString(ns, "BINARY_VERSION", ver) < 0 ||
	    PyDict_SetItemString(ns, "ISOLATED", ci->is_main ? Py_False : Py_True) < 0) {
		goto fail;
	}
	code = Py_CompileString(boot.source, "<caddysnake bootstrap>", Py_file_input);
	if (code == NULL) {
		goto fail;
	}
	res = PyEval_EvalCode(code, ns, ns);
	if (res == NULL) {
		goto fail;
	}
	if ((ci->describe_err = take_global(ns, "describe_error")) == NULL ||
	    (ci->serve_wsgi = take_global(ns, "serve_wsgi")) == NULL ||
	    (ci->load_app = take_global(ns, "load_app")) == NULL ||
	    (ci->run_asgi = take_global(ns, "run_asgi_loop")) == NULL ||
	    (ci->gil_status = take_global(ns, "gil_status")) == NULL) {
		goto fail;
	}
	if (ci->is_main) {
		PyObject *fn = PyDict_GetItemString(ns, "init_extension_in_main"); // borrowed
		if (fn == NULL) {
			PyErr_SetString(PyExc_RuntimeError, "bootstrap did not define init_extension_in_main");
			goto fail;
		}
		cs_mainfirst_set(fn);
	}
	PyObject *wsgi_module = PyDict_GetItemString(ns, "wsgi"); // borrowed
	if (wsgi_module == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "bootstrap did not import wsgi");
		goto fail;
	}
	PyObject *asgi_module = PyDict_GetItemString(ns, "asgi"); // borrowed
	if (asgi_module == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "bootstrap did not import asgi");
		goto fail;
	}
	if (cs_environ_parts_init(&ci->env, wsgi_module) < 0 || cs_scope_parts_init(&ci->scope, asgi_module) < 0) {
		goto fail;
	}
	goto done;
fail:
	err = cs_take_error(ci);
done:
	Py_XDECREF(res);
	Py_XDECREF(code);
	Py_XDECREF(ver);
	Py_XDECREF(fd);
	Py_XDECREF(ns);
	return err;
}

void cs_drop_functions(cs_interp *ci) {
	Py_CLEAR(ci->serve_wsgi);
	Py_CLEAR(ci->load_app);
	Py_CLEAR(ci->describe_err);
	Py_CLEAR(ci->run_asgi);
	Py_CLEAR(ci->gil_status);
	cs_environ_parts_clear(&ci->env);
	cs_scope_parts_clear(&ci->scope);
}
