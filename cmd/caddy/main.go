// Command caddy is Caddy with its standard modules plus caddysnake, so the
// module can be tried without xcaddy: `make build` produces ./caddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddysnake/caddysnake"
)

func main() {
	caddycmd.Main()
}
