package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The environ (environ.c) and scope (scope.c) builders are fuzzed against
// their pure-Python references: testdata/builders_app.py runs both on the
// request parts a fuzz input decodes to and answers their differences.
// The input is one string per fixed field, then the header names and
// values separated by NULs (an odd count is a malformed request, which
// both must refuse alike). `make fuzz` runs each target;
// plain `go test` runs the seeds in testdata/fuzz/.

// builderServer serves builders_app.py's two apps over loopback, loaded
// once per process (a fuzz worker runs many inputs).
var builderServer struct {
	once sync.Once
	url  string
	err  error
}

func builderURL(t *testing.T) string {
	t.Helper()
	s := &builderServer
	s.once.Do(func() {
		testdata, _ := filepath.Abs("testdata")
		wsgiApp, _, err := Load(Config{WSGI: &WSGIOptions{Target: "builders_app:environ_app", WorkingDir: testdata,
			Threads: 2, MaxWait: 10 * time.Second}}, zap.NewNop())
		if err != nil {
			s.err = err
			return
		}
		asgiApp, _, err := Load(Config{ASGI: &ASGIOptions{Target: "builders_app:scope_app", WorkingDir: testdata,
			Lifespan: "off", Loop: "asyncio"}}, zap.NewNop())
		if err != nil {
			wsgiApp.Close()
			s.err = err
			return
		}
		serve := func(app App) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if err := app.Serve(testRequest(r), testWriter{w}); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				}
			}
		}
		mux := http.NewServeMux()
		mux.Handle("/environ", serve(wsgiApp))
		mux.Handle("/scope", serve(asgiApp))
		// Never closed: it serves every input of this process.
		s.url = httptest.NewServer(mux).URL
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.url
}

// builderParts is the parts tuple of a fuzz input: its fields, then the
// NUL-separated header names and values.
func builderParts(fields []string, headers string) []string {
	if headers != "" {
		fields = append(fields, strings.Split(headers, "\x00")...)
	}
	return fields
}

// builderDiffs posts parts to the app at path and returns the differences
// it found between the C builder and the reference.
func builderDiffs(t *testing.T, path string, parts []string) []string {
	t.Helper()
	var body bytes.Buffer
	for _, p := range parts {
		_ = binary.Write(&body, binary.LittleEndian, uint32(len(p)))
		body.WriteString(p)
	}
	resp, err := http.Post(builderURL(t)+path, "application/octet-stream", &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s (%v)", resp.StatusCode, got, err)
	}
	var diffs []string
	if err := json.Unmarshal(got, &diffs); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	return diffs
}

func checkBuilder(t *testing.T, path string, parts []string) {
	for _, d := range builderDiffs(t, path, parts) {
		t.Errorf("%q: %s", parts, d)
	}
}

// The seeds are in testdata/fuzz/FuzzEnvironBuilder: the cases of
// tests/apps/wsgi_environ_c.py, and inputs fuzzing found.
func FuzzEnvironBuilder(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, scriptName, pathInfo, query, protocol, scheme, serverName, serverPort,
		remoteAddr, remotePort, headers string) {
		checkBuilder(t, "/environ", builderParts([]string{method, scriptName, pathInfo, query, protocol, scheme,
			serverName, serverPort, remoteAddr, remotePort}, headers))
	})
}

// The seeds are in testdata/fuzz/FuzzScopeBuilder: the cases of
// tests/apps/asgi_scope_c.py, and inputs fuzzing found.
func FuzzScopeBuilder(f *testing.F) {
	f.Fuzz(func(t *testing.T, httpVersion, method, scheme, path, rawPath, query, rootPath, clientHost, clientPort,
		serverHost, serverPort, hasBody, headers string) {
		checkBuilder(t, "/scope", builderParts([]string{httpVersion, method, scheme, path, rawPath, query, rootPath,
			clientHost, clientPort, serverHost, serverPort, hasBody}, headers))
	})
}
