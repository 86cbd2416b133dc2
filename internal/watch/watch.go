package watch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults: how often the files are polled, how many are watched at most,
// and how many directory entries one poll may visit (a glob rooted at /
// must not turn into a walk of the whole disk twice a second).
const (
	DefaultInterval = 500 * time.Millisecond
	DefaultMaxFiles = 5000
	maxVisited      = 50000
	// maxDelay bounds the debounce: files that keep changing (a log
	// matched by a glob) still reload after this long.
	maxDelay = 3 * time.Second
)

// skipDirs are never walked: virtual environments, caches, dependencies.
// Hidden directories (.git, .venv, .mypy_cache ...) are skipped too.
var skipDirs = map[string]bool{"venv": true, "__pycache__": true, "node_modules": true, "site-packages": true}

// Options says what a Watcher polls.
type Options struct {
	Base     string        // relative globs are taken from here (absolute)
	Globs    []string      // at least one
	Skip     []string      // absolute directories never walked (the app's venv)
	Interval time.Duration // default DefaultInterval
	MaxFiles int           // default DefaultMaxFiles
	// Warn is told, once per occurrence, that the globs match too much.
	Warn func(msg string, files int)
}

// Watcher polls the files its globs match and calls its onChange once a
// burst of changes is over.
type Watcher struct {
	opts     Options
	patterns []pattern
	roots    []string
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	capped   bool // the last scan hit a bound (warned once)
	files    int  // files the last scan watched
}

type fileState struct {
	size  int64
	mtime int64
	ino   uint64
}

// New compiles the globs; Start begins polling.
func New(opts Options) (*Watcher, error) {
	if len(opts.Globs) == 0 {
		return nil, errors.New("watch: no glob")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	w := &Watcher{opts: opts, stop: make(chan struct{})}
	for _, g := range opts.Globs {
		p, err := compile(opts.Base, g)
		if err != nil {
			return nil, err
		}
		w.patterns = append(w.patterns, p)
		if !slices.Contains(w.roots, p.root) {
			w.roots = append(w.roots, p.root)
		}
	}
	return w, nil
}

// Start takes the first snapshot (so that what changes from now on
// counts), then polls in a goroutine until Stop. onChange gets the paths
// that changed, were added or removed, once no poll saw a further change
// (or maxDelay passed); polling pauses while it runs, and changes made
// meanwhile are seen by the next poll. It returns how many files are
// watched.
func (w *Watcher) Start(onChange func(changed []string)) int {
	prev := w.scan()
	w.done = make(chan struct{})
	go w.loop(prev, onChange)
	return len(prev)
}

// Stop ends the polling; Wait waits for the goroutine (and an onChange
// in progress) to return.
func (w *Watcher) Stop() { w.stopOnce.Do(func() { close(w.stop) }) }

// Wait returns once the polling goroutine has ended (after Stop), at
// once if Start never ran.
func (w *Watcher) Wait() {
	if w.done != nil {
		<-w.done
	}
}

func (w *Watcher) loop(prev map[string]fileState, onChange func([]string)) {
	defer close(w.done)
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	var changed []string
	var since time.Time
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		cur := w.scan()
		d := diff(prev, cur)
		prev = cur
		for _, p := range d {
			if !slices.Contains(changed, p) {
				changed = append(changed, p)
			}
		}
		if len(changed) == 0 {
			continue
		}
		if len(d) > 0 && since.IsZero() {
			since = time.Now()
		}
		if len(d) > 0 && time.Since(since) < maxDelay {
			continue // still changing: wait for a quiet poll
		}
		select {
		case <-w.stop:
			return
		default:
		}
		onChange(changed)
		changed, since = nil, time.Time{}
	}
}

// diff lists the paths whose state differs between a and b.
func diff(a, b map[string]fileState) []string {
	var out []string
	for p, s := range b {
		if o, ok := a[p]; !ok || o != s {
			out = append(out, p)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// scan walks the roots and stats every file a pattern matches, within the
// bounds.
func (w *Watcher) scan() map[string]fileState {
	files := map[string]fileState{}
	visited := 0
	capped := false
	for _, root := range w.roots {
		if capped {
			break
		}
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // vanished or unreadable: not watched
			}
			visited++
			if visited > maxVisited || len(files) >= w.opts.MaxFiles {
				capped = true
				return filepath.SkipAll
			}
			rel := relSegs(root, path)
			if d.IsDir() {
				if path != root && w.skipDir(path, d.Name(), root, rel) {
					return filepath.SkipDir
				}
				return nil
			}
			if !w.matches(root, rel) {
				return nil
			}
			st, err := os.Stat(path) // follows a symlinked file to what it names
			if err != nil || st.IsDir() {
				return nil
			}
			fsd := fileState{size: st.Size(), mtime: st.ModTime().UnixNano()}
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				fsd.ino = sys.Ino // an editor that saves by rename
			}
			files[path] = fsd
			return nil
		})
	}
	if capped && !w.capped && w.opts.Warn != nil {
		w.opts.Warn("watch: the globs match too many files (or too large a tree); only part is watched: narrow the globs", len(files))
	}
	w.capped, w.files = capped, len(files)
	return files
}

func (w *Watcher) skipDir(path, name, root string, rel []string) bool {
	if strings.HasPrefix(name, ".") || skipDirs[name] || slices.Contains(w.opts.Skip, path) {
		return true
	}
	for _, p := range w.patterns {
		if p.root == root && p.mayMatchBelow(rel) {
			return false
		}
	}
	return true
}

func (w *Watcher) matches(root string, rel []string) bool {
	for _, p := range w.patterns {
		if p.root == root && p.match(rel) {
			return true
		}
	}
	return false
}

func relSegs(root, path string) []string {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." {
		return nil
	}
	return strings.Split(rel, string(filepath.Separator))
}
