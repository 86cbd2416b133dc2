package engine

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

const dieTestEnv = "CADDYSNAKE_DIE_TEST"

// A worker's mode (DieByFatalSignals), in a child process of the test
// binary: a segfault or abort() in Python's C code ends the process by
// that signal once faulthandler wrote its report (Go's dump would exit
// with status 2); a nil dereference in Go code stays Go's: a recoverable
// panic, and unrecovered, Go's trace and exit status 2.
func TestDieByFatalSignals(t *testing.T) {
	if mode := os.Getenv(dieTestEnv); mode != "" {
		dieChild(mode)
		return
	}
	// No core file from the children.
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode   string
		sig    syscall.Signal
		status int
		want   []string
	}{
		{"segv", syscall.SIGSEGV, 0, []string{"Fatal Python error: Segmentation fault", `fault_app.py", line 8 in <module>`}},
		{"abort", syscall.SIGABRT, 0, []string{"Fatal Python error: Aborted", `fault_app.py", line 10 in <module>`}},
		{"gonil", 0, 2, []string{"recovered", "panic: runtime error: invalid memory address or nil pointer dereference", "goroutine "}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDieByFatalSignals$", "-test.count=1")
			cmd.Env = append(os.Environ(), dieTestEnv+"="+tc.mode)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("child: %v, want it to die\n%s", err, out)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			switch {
			case tc.sig != 0 && (!ws.Signaled() || ws.Signal() != tc.sig):
				t.Errorf("child ended with %v, want signal %v", ee, tc.sig)
			case tc.sig == 0 && (ws.Signaled() || ws.ExitStatus() != tc.status):
				t.Errorf("child ended with %v, want exit status %d", ee, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("child's output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func dieChild(mode string) {
	DieByFatalSignals()
	testdata, _ := filepath.Abs("testdata")
	target := "fault_app:app"
	_, _, err := Load(Config{WSGI: &WSGIOptions{Target: target, WorkingDir: testdata, Threads: 1, MaxWait: time.Second}}, zap.NewNop())
	if err != nil {
		fmt.Println("load:", err)
		os.Exit(3)
	}
	if mode == "gonil" {
		func() {
			defer func() {
				if recover() != nil {
					fmt.Println("recovered")
				}
			}()
			var p *int
			_ = *p
		}()
		var p *int
		*p = 1
	}
	os.Exit(4)
}
