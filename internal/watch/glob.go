// Package watch polls the files an app is made of and says when they
// changed, so that the app can be reloaded (the python handler's `watch`).
// It uses the standard library only: a poll of sizes and mtimes every
// half second costs a few stat calls per file, needs no inotify limits
// and works on every file system, bind mounts and NFS included.
package watch

import (
	"fmt"
	"path/filepath"
	"strings"
)

// pattern is one glob made absolute: root is the part without
// metacharacters (walked), rest the segments matched below it.
type pattern struct {
	glob string // as the user wrote it, for logs
	root string
	rest []string
}

// compile turns a glob into a pattern. A relative glob is taken from base.
// A glob without a slash matches a file's name in any directory below base
// (as uvicorn's --reload-include does: "*.py" is every Python file);
// otherwise it matches the path, "**" standing for any number of
// directories.
func compile(base, glob string) (pattern, error) {
	if glob == "" {
		return pattern{}, fmt.Errorf("watch: an empty glob")
	}
	full := glob
	if !strings.Contains(glob, "/") {
		full = "**/" + glob
	}
	if !filepath.IsAbs(full) {
		full = filepath.Join(base, full)
	}
	full = filepath.Clean(full)
	segs := strings.Split(strings.TrimPrefix(full, "/"), "/")
	root := "/"
	i := 0
	for ; i < len(segs)-1 && !hasMeta(segs[i]); i++ {
		root = filepath.Join(root, segs[i])
	}
	for _, s := range segs[i:] {
		if s == "**" {
			continue
		}
		if _, err := filepath.Match(s, ""); err != nil {
			return pattern{}, fmt.Errorf("watch: glob %q: %v", glob, err)
		}
	}
	return pattern{glob: glob, root: root, rest: segs[i:]}, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// match reports whether rel (a path below p.root, split on "/") matches.
func (p pattern) match(rel []string) bool { return matchSegs(p.rest, rel) }

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			// Any number of directories, then the rest.
			for k := 0; k <= len(name); k++ {
				if matchSegs(pat[1:], name[k:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := filepath.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// mayMatchBelow reports whether some path under the directory dir (split,
// relative to p.root) could match: directories no pattern can reach are
// not walked.
func (p pattern) mayMatchBelow(dir []string) bool {
	pat := p.rest
	for _, d := range dir {
		if len(pat) == 0 {
			return false
		}
		if pat[0] == "**" {
			return true
		}
		if ok, _ := filepath.Match(pat[0], d); !ok {
			return false
		}
		pat = pat[1:]
	}
	return len(pat) > 0
}
