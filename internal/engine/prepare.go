package engine

// #include "caddysnake.h"
// #include <stdlib.h>
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// callPrepare runs caddysnake.prepare.<fn>(arg) in this interpreter.
func (it *interpreter) callPrepare(fn, arg string) (string, error) {
	var out string
	var callErr error
	it.do(func() {
		cf, ca := C.CString(fn), C.CString(arg)
		defer freeAll(cf, ca)
		var cerr *C.char
		res := C.caddysnake_call_prepare(it.ci, cf, ca, &cerr)
		if res == nil {
			callErr = errors.New(C.GoString(cerr))
			C.free(unsafe.Pointer(cerr))
			return
		}
		out = C.GoString(res)
		C.free(unsafe.Pointer(res))
	})
	return out, callErr
}

// setEnviron puts env ("NAME=value" each) into os.environ of this
// interpreter, hence (putenv) into the process environment, before the app
// is imported. A sub-interpreter builds its os.environ from the process
// environment when it starts, so each interpreter is set on its own.
func (it *interpreter) setEnviron(env []string) error {
	if len(env) == 0 {
		return nil
	}
	pairs := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		pairs[k] = v
	}
	b, err := json.Marshal(pairs)
	if err != nil {
		return err
	}
	// One at a time, as imports are: putenv is not safe against other
	// interpreters' threads changing the environment in parallel.
	importMu.Lock()
	defer importMu.Unlock()
	if _, err := it.callPrepare("set_environ", string(b)); err != nil {
		return fmt.Errorf("setting the app's environment: %v", err)
	}
	return nil
}

// DetectInterface imports target from workingDir and venv (with env set
// first) into the main interpreter and says whether it is an "asgi" or a
// "wsgi" app (caddysnake/prepare.py). It leaves the app imported: meant for
// a short-lived process (caddy python-server's check), not for Caddy's own.
func DetectInterface(target, workingDir, venv string, env []string) (string, error) {
	it, err := mainInterpreter()
	if err != nil {
		return "", err
	}
	if err := it.setEnviron(env); err != nil {
		return "", err
	}
	b, err := json.Marshal(map[string]string{"target": target, "working_dir": workingDir, "venv": venv})
	if err != nil {
		return "", err
	}
	importMu.Lock()
	defer importMu.Unlock()
	return it.callPrepare("detect_interface", string(b))
}
