package engine

import (
	"reflect"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A traceback is one log entry: its lines are one field, the message one
// line that ends with the exception.
func TestLogPythonTracebackIsOneEntry(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	text := "[2026-01-01] ERROR in app: Exception on / [GET]\n" +
		"Traceback (most recent call last):\n" +
		"  File \"/srv/app.py\", line 3, in index\n" +
		"    return 1 / 0\n" +
		"ZeroDivisionError: division by zero\n"
	logPython(zap.New(core), logWarning, text)
	entries := logs.AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("%d entries, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	if want := "[2026-01-01] ERROR in app: Exception on / [GET]: ZeroDivisionError: division by zero"; e.Message != want {
		t.Errorf("message %q, want %q", e.Message, want)
	}
	want := []string{"Traceback (most recent call last):", "  File \"/srv/app.py\", line 3, in index",
		"    return 1 / 0", "ZeroDivisionError: division by zero"}
	got, ok := e.ContextMap()["traceback"].([]any)
	if !ok || len(got) != len(want) {
		t.Fatalf("traceback field %#v, want %q", e.ContextMap()["traceback"], want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("traceback line %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestSplitTraceback(t *testing.T) {
	for _, tc := range []struct {
		in, msg string
		tb      []string
	}{
		{"plain line", "plain line", nil},
		{"two\nlines", "two\nlines", nil},
		{"WSGI app raised an exception:\nTraceback (most recent call last):\n  File \"a.py\", line 1, in f\nKeyError: 'x'\n",
			"WSGI app raised an exception: KeyError: 'x'",
			[]string{"Traceback (most recent call last):", "  File \"a.py\", line 1, in f", "KeyError: 'x'"}},
		{"Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nValueError\n",
			"ValueError", []string{"Traceback (most recent call last):", "  File \"a.py\", line 1, in f", "ValueError"}},
	} {
		msg, tb := splitTraceback(tc.in)
		if msg != tc.msg || !reflect.DeepEqual(tb, tc.tb) {
			t.Errorf("splitTraceback(%q) = %q, %q; want %q, %q", tc.in, msg, tb, tc.msg, tc.tb)
		}
	}
}
