package worker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// memory_limit: a hard cap on a worker's address space (RLIMIT_AS), set
// by the worker itself before Python starts and the app is imported (its
// privileges were dropped at exec already). A worker has about 1.4 GiB of
// address space before Python starts, 1.1 GiB of it Go's page-allocator
// reservations that are never touched, so the cap is that base, measured
// then, plus the limit: memory_limit is what Python, the app and its
// threads may map. cgroup v2's memory.max would cap RSS instead; this
// host, like many, has cgroup v1 only.

// MemoryLimitEnv carries memory_limit in bytes from Caddy to the worker.
const MemoryLimitEnv = "CADDYSNAKE_WORKER_MEMORY_LIMIT"

// bareWorkerNeed estimates the address space a worker maps beyond its
// base to start with threads worker threads and a small app: CPython, the
// bootstrap and the app's imports, and 8 MiB of stack a thread. Measured
// with Flask (tests/apps/flask_site.py), CPython 3.11, MALLOC_ARENA_MAX=2:
// 40 MiB with threads 1, 83 MiB with threads 8 (memory_limit_used).
func bareWorkerNeed(threads int) int64 {
	return memNeedBase + int64(max(threads, 1))*memNeedThread
}

const (
	memNeedBase   = 32 << 20
	memNeedThread = 8 << 20
)

// ApplyMemoryLimit, in the worker before the app loads, caps the address
// space as MemoryLimitEnv says; it returns the fields for the ready line.
func ApplyMemoryLimit() ([]zap.Field, error) {
	v := os.Getenv(MemoryLimitEnv)
	_ = os.Unsetenv(MemoryLimitEnv)
	if v == "" {
		return nil, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return nil, fmt.Errorf("python worker: %s=%q is not a size in bytes", MemoryLimitEnv, v)
	}
	base, ok := vmSize()
	if !ok {
		return nil, errors.New("python worker: memory_limit: cannot read VmSize from /proc/self/status")
	}
	capAS := uint64(base + limit)
	var prev unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_AS, &prev) == nil && prev.Max < capAS {
		capAS = prev.Max // a tighter ulimit -v stays (only root may raise it)
	}
	if err := unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: capAS, Max: capAS}); err != nil {
		return nil, fmt.Errorf("python worker: memory_limit: setrlimit(RLIMIT_AS, %d): %w", capAS, err)
	}
	memBase = base
	return []zap.Field{zap.Int64("address_space_base", base), zap.Int64("rlimit_as", int64(capAS))}, nil
}

var memBase int64 // ApplyMemoryLimit's base; 0: no limit

// memoryUsedField says how much of memory_limit the worker uses once the
// app loaded, for the ready line: what to size memory_limit from.
func memoryUsedField() []zap.Field {
	if memBase == 0 {
		return nil
	}
	if vm, ok := vmSize(); ok {
		return []zap.Field{zap.Int64("memory_limit_used", vm-memBase)}
	}
	return nil
}

// vmSize reads this process's address space size in bytes.
func vmSize() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("VmSize:")); ok {
			f := strings.Fields(string(v))
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err == nil
			}
		}
	}
	return 0, false
}

// memorySigns are what running out of address space at start looks like:
// Python's MemoryError or its allocator's message, Go's fatal error, a
// thread that could not get its stack.
var memorySigns = []string{"MemoryError", "memory allocation failed", "out of memory", "Cannot allocate memory",
	"pthread_create failed", "cannot allocate", "failed to allocate"}

// explainStartFailure turns a start failure under memory_limit that looks
// like a lack of address space into a sentence saying so.
func (p *Pool) explainStartFailure(pr *proc, err error) error {
	limit := p.opts.MemoryLimit
	if limit <= 0 || err == nil {
		return err
	}
	need := bareWorkerNeed(p.threads)
	text := err.Error()
	if pr != nil {
		text += "\n" + pr.stderr.text()
	}
	sign := false
	for _, s := range memorySigns {
		if strings.Contains(text, s) {
			sign = true
			break
		}
	}
	if limit >= need && !sign {
		return err
	}
	return fmt.Errorf("python: memory_limit %s is too small to start the worker of %q (it needs about %d MiB of address space "+
		"with threads %d, plus what the app's imports map): raise memory_limit; the worker failed with: %w",
		mib(limit), p.name, (need+(1<<20)-1)>>20, max(p.threads, 1), err)
}

func mib(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%dGiB", n>>30)
	}
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
