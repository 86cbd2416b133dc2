// Package python carries the caddysnake Python package (python/caddysnake)
// into the binary, so an app's venv does not need it installed. It lives
// beside the package because go:embed reads only from its own folder down.
package python

import "embed"

// Files holds caddysnake/*.py and the modules of its subpackages
// (caddysnake/asgi, caddysnake/wsgi).
//
//go:embed caddysnake/*.py caddysnake/*/*.py
var Files embed.FS
