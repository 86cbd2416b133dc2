package tests

import (
	"encoding/json"
	"testing"
)

// The environ is built in C (environ.c) for speed; the pure-Python
// build_environ stays the reference. Inside the real embedded interpreter,
// both must give the same environ for every crafted request: repeated
// headers and cookies, names with "_", Content-Type/Length, lower-case and
// latin-1 names, long names, many headers, and malformed layouts.
func TestEnvironCBuilderMatchesPythonReference(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_environ_c:app"), siteOpts{})
	var got struct {
		Diffs   []string `json:"diffs"`
		Cases   int      `json:"cases"`
		Streams []string `json:"streams"`
	}
	if err := json.Unmarshal(c.get(t, "/", 200), &got); err != nil {
		t.Fatal(err)
	}
	if got.Cases < 10 {
		t.Fatalf("only %d cases ran", got.Cases)
	}
	for _, d := range got.Diffs {
		t.Error(d)
	}
	if len(got.Streams) != 2 || got.Streams[0] != "InputStream" || got.Streams[1] != "ErrorStream" {
		t.Errorf("wsgi.input / wsgi.errors of a served request: %v", got.Streams)
	}
}
