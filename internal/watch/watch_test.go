package watch

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGlobs(t *testing.T) {
	base := t.TempDir()
	for _, f := range []string{"app.py", "pkg/mod.py", "pkg/deep/x.py", "templates/a.html", "templates/sub/b.html",
		".venv/lib/site.py", "venv/lib/v.py", "__pycache__/c.py", "node_modules/n.py", ".git/hook.py", "env/lib/e.py",
		"notes.txt"} {
		write(t, filepath.Join(base, f), "x")
	}
	cases := []struct {
		globs []string
		skip  []string
		want  []string
	}{
		{[]string{"*.py"}, []string{filepath.Join(base, "env")}, []string{"app.py", "pkg/deep/x.py", "pkg/mod.py"}},
		{[]string{"templates/*.html"}, nil, []string{"templates/a.html"}},
		{[]string{"templates/**/*.html"}, nil, []string{"templates/a.html", "templates/sub/b.html"}},
		{[]string{"pkg/**"}, nil, []string{"pkg/deep/x.py", "pkg/mod.py"}},
		{[]string{"app.py", "*.txt"}, nil, []string{"app.py", "notes.txt"}},
		{[]string{filepath.Join(base, "pkg", "*.py")}, nil, []string{"pkg/mod.py"}},
	}
	for _, c := range cases {
		w, err := New(Options{Base: base, Globs: c.globs, Skip: c.skip})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for p := range w.scan() {
			rel, _ := filepath.Rel(base, p)
			got = append(got, rel)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("globs %q: watched %q, want %q", c.globs, got, c.want)
		}
	}
	if _, err := New(Options{Base: base, Globs: []string{"[bad"}}); err == nil {
		t.Error("a malformed glob was accepted")
	}
}

func TestCapWarnsOnce(t *testing.T) {
	base := t.TempDir()
	for i := range 5 {
		write(t, filepath.Join(base, strings.Repeat("a", i+1)+".py"), "x")
	}
	var warned []int
	w, err := New(Options{Base: base, Globs: []string{"*.py"}, MaxFiles: 3, Warn: func(_ string, n int) { warned = append(warned, n) }})
	if err != nil {
		t.Fatal(err)
	}
	w.scan()
	if n := len(w.scan()); n != 3 {
		t.Errorf("watched %d files, want the cap 3", n)
	}
	if len(warned) != 1 {
		t.Errorf("warned %d times, want once", len(warned))
	}
}

// A burst of saves is one call; a change to a file no glob matches is
// none; Stop ends the goroutine.
func TestDebounceAndStop(t *testing.T) {
	base := t.TempDir()
	write(t, filepath.Join(base, "app.py"), "v1")
	write(t, filepath.Join(base, "data.txt"), "v1")
	before := runtime.NumGoroutine()
	w, err := New(Options{Base: base, Globs: []string{"*.py"}, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan []string, 10)
	if n := w.Start(func(c []string) { calls <- c }); n != 1 {
		t.Fatalf("watching %d files, want 1", n)
	}
	write(t, filepath.Join(base, "data.txt"), "v2 longer")
	select {
	case c := <-calls:
		t.Fatalf("a change to a non-matching file reloaded: %q", c)
	case <-time.After(300 * time.Millisecond):
	}
	for i := range 5 {
		write(t, filepath.Join(base, "app.py"), strings.Repeat("v", i+2))
		time.Sleep(20 * time.Millisecond)
	}
	write(t, filepath.Join(base, "new.py"), "n")
	select {
	case c := <-calls:
		if len(c) != 2 {
			t.Errorf("changed %q, want app.py and new.py", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no call within 2s of the changes")
	}
	select {
	case c := <-calls:
		t.Errorf("a second call for one burst: %q", c)
	case <-time.After(300 * time.Millisecond):
	}
	if err := os.Remove(filepath.Join(base, "new.py")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-calls:
		if len(c) != 1 || filepath.Base(c[0]) != "new.py" {
			t.Errorf("after a removal: %q", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a removed file did not count as a change")
	}
	w.Stop()
	w.Wait()
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Stop, %d before Start", n, before)
	}
}
