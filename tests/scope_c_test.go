package tests

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

// The ASGI scope is built in C (scope.c) for speed; the pure-Python
// build_scope stays the reference. Inside the real embedded interpreter,
// both must give the same scope for every crafted request (decoding of
// path and root_path, absent client or server, ports, repeated, empty and
// latin-1 headers, many headers) and refuse the same malformed layouts;
// and the scope a served request gets must have every key of the
// reference, state included.
func TestScopeCBuilderMatchesPythonReference(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, asgiSite(t, "asgi_scope_c:app"), siteOpts{})
	resp, body := c.do(t, "GET", c.URL("/caf%C3%A9?q=1"), nil, "X-Probe", "yes")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		Diffs  []string `json:"diffs"`
		Cases  int      `json:"cases"`
		Served struct {
			Keys        []string    `json:"keys"`
			StateIsDict bool        `json:"state_is_dict"`
			Path        string      `json:"path"`
			QueryString string      `json:"query_string"`
			Headers     [][2]string `json:"headers"`
		} `json:"served"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Cases < 15 {
		t.Fatalf("only %d cases ran", got.Cases)
	}
	for _, d := range got.Diffs {
		t.Error(d)
	}
	s := got.Served
	want := []string{"asgi", "client", "extensions", "headers", "http_version", "method", "path", "query_string",
		"raw_path", "root_path", "scheme", "server", "state", "type"}
	if !reflect.DeepEqual(s.Keys, want) || !s.StateIsDict {
		t.Errorf("served scope keys %v (state a dict: %v), want %v", s.Keys, s.StateIsDict, want)
	}
	if s.Path != "/café" || s.QueryString != "q=1" || !reflect.DeepEqual(s.Headers, [][2]string{{"x-probe", "yes"}}) {
		t.Errorf("served scope: path %q, query %q, x-probe headers %v", s.Path, s.QueryString, s.Headers)
	}
}
