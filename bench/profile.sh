#!/usr/bin/env bash
# Where the time of one request goes: runs Caddy's `respond` and this module
# (WSGI hello) in turn, each pinned to CPU 0 with wrk on CPU 1, samples the
# server with perf for 5 s, and prints microseconds of CPU per request by
# component (Go, kernel, libpython, ...). Needs perf (Debian: linux-perf)
# and wrk; loopback only. Usage: bench/profile.sh [./caddy] [module:app]
set -euo pipefail
cd "$(dirname "$0")/.."
CADDY=$(realpath "${1:-./caddy}")
TARGET=${2:-bench_wsgi:hello}
KIND=${KIND:-wsgi} # or asgi
APPS=$(realpath bench/apps)
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT

site() { # name port body
	cat >"$TMP/$1.caddyfile" <<CF
{
	admin off
	auto_https off
	log default {
		level ERROR
	}
}
http://127.0.0.1:$2 {
$3
}
CF
}
site respond 18701 '	header Content-Type text/plain
	respond "Hello, world!" 200'
site module 18702 "	python {
		module_$KIND $TARGET
		working_dir $APPS
		venv ${VENV:-$(realpath bench/.venv)}
	}"

profile() { # name port
	taskset -c 0 "$CADDY" run --config "$TMP/$1.caddyfile" --adapter caddyfile >"$TMP/$1.log" 2>&1 &
	local pid=$!
	for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$2/" >/dev/null 2>&1 && break; sleep 0.1; done
	taskset -c 1 wrk -t1 -c64 -d9s "http://127.0.0.1:$2/" >"$TMP/$1.wrk" &
	sleep 2
	perf record -q -e cpu-clock -F 4000 -g -p "$pid" -o "$TMP/$1.perf" -- sleep 5 2>/dev/null
	wait %2 2>/dev/null || true
	kill "$pid"; wait "$pid" 2>/dev/null || true
	local rps
	rps=$(awk '/Requests\/sec/{print $2}' "$TMP/$1.wrk")
	echo "== $1: $rps req/s under perf ($(awk -v r="$rps" 'BEGIN{printf "%.1f", 1e6/r}') us of CPU 0 per request)"
	perf report -i "$TMP/$1.perf" --no-children -g none --sort dso --stdio 2>/dev/null |
		awk -v r="$rps" '/^ +[0-9.]+%/{p=$1; sub("%","",p); printf "  %-28s %5.1f%%  %5.1f us\n", $2, p, p/100*1e6/r}' | head -6 || true
	echo "  top symbols:"
	perf report -i "$TMP/$1.perf" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
		awk -v r="$rps" '/^ +[0-9.]+%/{p=$1; sub("%","",p); printf "    %5.2f us  %-22s %s\n", p/100*1e6/r, $2, $4}' | head -"${TOP:-15}" || true
}
profile respond 18701
profile module 18702
