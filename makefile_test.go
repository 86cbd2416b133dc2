package caddysnake

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeDryRun runs `make -n build` with PYTHON=python and PATH=path
// (plus make's own folder), PYENV_ROOT=pyenv; it returns make's output.
func makeDryRun(t *testing.T, python, path, pyenv string) string {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed")
	}
	cmd := exec.Command(mk, "-n", "PYTHON="+python, "build")
	cmd.Env = []string{"PATH=" + path + ":" + filepath.Dir(mk) + ":/bin", "PYENV_ROOT=" + pyenv, "HOME=" + t.TempDir()}
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// fakePython writes an executable script named name into dir.
func fakePython(t *testing.T, dir, name, script string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// make PYTHON=python3.X with that interpreter only in pyenv points to it,
// not to python3-dev; python3-dev is for an interpreter that runs but
// lacks python3.X-config.
func TestMakefilePythonHints(t *testing.T) {
	t.Run("in pyenv only", func(t *testing.T) {
		pyenv := t.TempDir()
		exe := fakePython(t, filepath.Join(pyenv, "versions", "3.99.1", "bin"), "python3.99", "echo runs\n")
		out := makeDryRun(t, "python3.99", t.TempDir(), pyenv)
		want := "python3.99 not found on PATH; pyenv has it at " + exe + ": make PYTHON=" + exe + " build"
		if !strings.Contains(out, want) {
			t.Errorf("make says:\n%s\nwant it to say %q", out, want)
		}
		if strings.Contains(out, "-dev") {
			t.Errorf("make suggests a -dev package for an interpreter that is not on PATH:\n%s", out)
		}
	})
	t.Run("nowhere", func(t *testing.T) {
		out := makeDryRun(t, "python3.99", t.TempDir(), t.TempDir())
		if want := "python3.99 not found on PATH: install it"; !strings.Contains(out, want) {
			t.Errorf("make says:\n%s\nwant it to say %q", out, want)
		}
	})
	t.Run("runs without python-config", func(t *testing.T) {
		bin := t.TempDir()
		// Answers the Makefile's probes: it runs; its config is missing.
		fakePython(t, bin, "python3.99", `case "$2" in *-config*) echo /nonexistent/bin/python3.99-config;; *) echo runs;; esac`+"\n")
		out := makeDryRun(t, "python3.99", bin, t.TempDir())
		want := "PYTHON=python3.99 runs, but has no python3.99-config (looked for /nonexistent/bin/python3.99-config): " +
			"install its development files, e.g. apt-get install python3.99-dev"
		if !strings.Contains(out, want) {
			t.Errorf("make says:\n%s\nwant it to say %q", out, want)
		}
	})
}
