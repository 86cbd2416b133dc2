package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// An app's traceback is one log entry, its lines in a "traceback" field:
// one logged through wsgi.errors as a framework logs it (Flask's handler
// writes the record, traceback included, in one write), and one the
// server logs for an exception the app raised.
func TestTracebackIsOneLogEntry(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_logged_error:app"))
	for _, path := range []string{"/logged", "/raise"} {
		c.get(t, path, 500)
	}
	if !c.waitLog(5*time.Second, "ERROR in app: Exception on /logged [GET]", "WSGI app raised an exception") {
		t.Fatalf("the errors were not logged:\n%s", c.Log())
	}
	for _, path := range []string{"/logged", "/raise"} {
		var entries []map[string]any
		for _, line := range strings.Split(c.Log(), "\n") {
			if !strings.Contains(line, "logged-error-marker-7731") && !strings.Contains(line, "ZeroDivisionError") {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("a line about the error is not a log entry (%v): %s", err, line)
			}
			if m["uri"] == path {
				entries = append(entries, m)
			}
		}
		if len(entries) != 1 {
			t.Fatalf("%s: %d log entries about the error, want 1:\n%s", path, len(entries), c.Log())
		}
		e := entries[0]
		if msg, _ := e["msg"].(string); !strings.HasSuffix(msg, ": ZeroDivisionError: division by zero") {
			t.Errorf("%s: message %q does not end with the exception", path, msg)
		}
		tb, _ := e["traceback"].([]any)
		lines := make([]string, len(tb))
		for i, l := range tb {
			lines[i], _ = l.(string)
		}
		if len(lines) < 3 || lines[0] != "Traceback (most recent call last):" ||
			!strings.Contains(strings.Join(lines, "\n"), "logged-error-marker-7731") {
			t.Errorf("%s: traceback field %q", path, lines)
		}
	}
}
