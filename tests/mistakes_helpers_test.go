package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers of the tests of common mistakes: what `caddy validate` says.

// unescapeLog undoes the JSON string escaping of Caddy's log lines.
func unescapeLog(s string) string {
	return strings.NewReplacer(`\"`, `"`, `\n`, "\n", `\t`, "\t").Replace(s)
}

// provisionError is the error `caddy validate` ended with (in process
// mode the workers log theirs too, before it), unescaped.
func provisionError(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "provision http.handlers.python: ") {
			return unescapeLog(line[strings.Index(line, "provision http.handlers.python: "):])
		}
	}
	return ""
}

// validateIn runs `caddy validate` with dir as its working folder.
func validateIn(t *testing.T, dir, sites string) (string, error) {
	t.Helper()
	ports := freePorts(t, 5)
	c := &caddy{dir: t.TempDir(), adminPort: ports[0], Port: ports[1], Port2: ports[2], httpPort: ports[3], httpsPort: ports[4]}
	cfg := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(c.caddyfile(sites)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "validate", "--config", cfg, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = childEnv(c.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readyLine is the fields of the "python app ready" log line in out.
func readyLine(t *testing.T, out string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"msg":"python app ready"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("the ready line is not JSON: %v\n%s", err, line)
		}
		return m
	}
	t.Fatalf("no \"python app ready\" line in:\n%s", out)
	return nil
}
