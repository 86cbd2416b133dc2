package tests

import (
	"fmt"
	"testing"
	"time"
)

func TestReloadSwitchesAppsWithoutLeakingThreads(t *testing.T) {
	t.Parallel()
	siteFor := func(mod string) string {
		return pySite("http://127.0.0.1:{{PORT}}", mod+":app", "threads 8")
	}
	c := startCaddy(t, siteFor("wsgi_alpha"))

	check := func(t *testing.T, want string, round int) {
		t.Helper()
		for i := 0; i < 5; i++ {
			path := fmt.Sprintf("/r%d/%d", round, i)
			status, b, err := c.fetch("GET", path, nil)
			if err != nil || status != 200 || string(b) != want+":"+path {
				t.Fatalf("after reload %d: GET %s = %d %q %v, want 200 %q", round, path, status, b, err, want+":"+path)
			}
		}
	}
	check(t, "A", 0)

	c.reload(t, siteFor("wsgi_beta"))
	check(t, "B", 1)
	time.Sleep(500 * time.Millisecond)
	first := c.threads(t)
	rss0 := c.rss(t)

	for i := 2; i <= 11; i++ {
		mod, want := "wsgi_alpha", "A"
		if i%2 == 1 {
			mod, want = "wsgi_beta", "B"
		}
		c.reload(t, siteFor(mod))
		check(t, want, i)
	}

	// Old apps' threads are stopped after their last request: give them a
	// moment. An app's worker threads go back to Go's pool of idle threads,
	// which Go keeps and reuses; while a reload overlaps the old app with
	// the new one both have theirs, so one app's worth (threads 8) of slack
	// is not a leak. A leak grows with every reload (10 here).
	const slack = 8 + 5
	var last int
	deadline := time.Now().Add(5 * time.Second)
	for {
		last = c.threads(t)
		if last <= first+slack || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("threads after first reload %d, after 11 reloads %d; RSS %d -> %d KiB", first, last, rss0>>10, c.rss(t)>>10)
	if last > first+slack {
		t.Errorf("thread count grew from %d after the first reload to %d after 11 (threads of old apps are not stopped)", first, last)
	}
}
