package engine

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Once Python serves in this process, Caddy's threads run under
// SCHED_BATCH instead of the default SCHED_OTHER (Linux, sched(7)).
//
// Why: every request crosses between Go's threads and a Python thread (an
// ASGI event loop, a WSGI pool thread) that share the CPUs, and under
// SCHED_OTHER each thread that wakes up (Go's netpoller, its sysmon)
// preempts the one running, in the middle of its batch. Under SCHED_BATCH a
// thread that wakes up waits for the running one's turn to end; it is
// otherwise scheduled as usual (same fairness, same nice value). The
// measurements: bench/README.md, "Measurements behind the design".
//
// The cost: Caddy's threads do not preempt other processes' threads on
// wake-up either, so on a CPU shared with other busy processes a request can
// wait for their turn (a few ms at most). CADDYSNAKE_SCHED=normal keeps the
// default policy.
const schedEnv = "CADDYSNAKE_SCHED"

// schedulingPolicy is what startPython applied: "batch", or why not.
var schedulingPolicy string

// batchThreads moves every thread of the process that has the default
// policy to SCHED_BATCH. Threads made later inherit the policy of the
// thread that makes them, and Go's and Python's threads are all made by
// threads of this process. Two passes, for a thread made during the first.
func batchThreads() string {
	if v := os.Getenv(schedEnv); v == "normal" {
		return "normal (" + schedEnv + "=normal)"
	} else if v != "" && v != "batch" {
		return fmt.Sprintf("normal (%s=%q is neither batch nor normal)", schedEnv, v)
	}
	moved, failed := 0, error(nil)
	for pass := 0; pass < 2; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Sprintf("normal (listing threads: %v)", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			attr, err := unix.SchedGetAttr(tid, 0)
			if err != nil || attr.Policy != unix.SCHED_NORMAL {
				continue // gone meanwhile, or a policy someone chose on purpose
			}
			attr.Policy = unix.SCHED_BATCH // nice value and the rest unchanged
			if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
				failed = err
				continue
			}
			moved++
		}
	}
	if moved == 0 && failed != nil {
		return fmt.Sprintf("normal (SCHED_BATCH refused: %v)", failed)
	}
	return "batch"
}
