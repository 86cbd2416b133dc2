package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// threadPolicies reads the scheduling policy of every thread of pid from
// /proc (field 41 of stat: 0 SCHED_OTHER, 3 SCHED_BATCH), counted by policy.
func threadPolicies(t *testing.T, pid int) map[string]int {
	t.Helper()
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no threads of %d in /proc: %v", pid, err)
	}
	out := map[string]int{}
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // the thread ended meanwhile
		}
		s := string(b)
		// The name may hold anything; the fields after it start past the last ')'.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		out[f[38]]++ // field 41 overall: the 39th after pid and comm
	}
	return out
}

// Once Python serves, all of Caddy's threads run under SCHED_BATCH (sched.go
// says why), threads made after start-up included; CADDYSNAKE_SCHED=normal
// keeps the default policy, and the log says which applies.
func TestThreadsRunUnderSchedBatch(t *testing.T) {
	skipInProcessMode(t, "Python runs in the workers: Caddy's own threads keep the default policy")
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_alpha:app"), siteOpts{})
		c.get(t, "/", 200)
		if c.waitLog(time.Second, "SCHED_BATCH refused") {
			t.Skip("this kernel or sandbox refuses SCHED_BATCH; the log says so and Caddy runs on")
		}
		if !c.waitLog(5*time.Second, `"scheduling":"batch"`) {
			t.Fatalf(`no "scheduling":"batch" in the log:\n%s`, c.Log())
		}
		p := threadPolicies(t, c.cmd.Process.Pid)
		if p["3"] == 0 || len(p) != 1 {
			t.Fatalf("thread policies %v, want every thread under SCHED_BATCH (3)", p)
		}
	})
	t.Run("opt out", func(t *testing.T) {
		t.Parallel()
		c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_alpha:app"),
			siteOpts{env: []string{"CADDYSNAKE_SCHED=normal"}})
		c.get(t, "/", 200)
		if !c.waitLog(5*time.Second, `"scheduling":"normal (CADDYSNAKE_SCHED=normal)"`) {
			t.Fatalf("no opt-out in the log:\n%s", c.Log())
		}
		if p := threadPolicies(t, c.cmd.Process.Pid); p["0"] == 0 {
			t.Fatalf("thread policies %v, want Caddy's threads left under SCHED_OTHER (0)", p)
		}
	})
}
