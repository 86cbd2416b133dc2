package worker

import (
	"errors"
	"strings"
	"testing"
)

func TestExplainStartFailure(t *testing.T) {
	p := &Pool{name: "app:app", threads: 1}
	plain := errors.New("python: cannot load \"app:app\": ModuleNotFoundError")
	oom := errors.New("python: cannot load \"app:app\": MemoryError")

	if got := p.explainStartFailure(nil, oom); got != oom {
		t.Errorf("without memory_limit: %v", got)
	}
	p.opts.MemoryLimit = 1 << 30
	if got := p.explainStartFailure(nil, plain); got != plain {
		t.Errorf("memory_limit 1GiB, an import error: %v", got)
	}
	for _, tc := range []struct {
		limit int64
		err   error
		want  string
	}{
		{1 << 30, oom, "memory_limit 1GiB is too small to start the worker"},
		{8 << 20, plain, "memory_limit 8MiB is too small to start the worker"},
	} {
		p.opts.MemoryLimit = tc.limit
		got := p.explainStartFailure(nil, tc.err)
		if !strings.Contains(got.Error(), tc.want) || !strings.Contains(got.Error(), "it needs about 40 MiB of address space with threads 1") ||
			!errors.Is(got, tc.err) {
			t.Errorf("memory_limit %d, %v: got %v", tc.limit, tc.err, got)
		}
	}
}

func TestVMSize(t *testing.T) {
	if n, ok := vmSize(); !ok || n < 1<<20 {
		t.Fatalf("vmSize: %d %v", n, ok)
	}
}
