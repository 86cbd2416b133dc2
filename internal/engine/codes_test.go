package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// codesH reads codes.h's `#define CS_NAME value` lines: name (without CS_)
// to value.
func codesH(t *testing.T) map[string]int {
	t.Helper()
	src, err := os.ReadFile("codes.h")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^#define CS_([A-Z0-9_]+)\s+\(?(-?\d+)\)?`)
	codes := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		v, err := strconv.Atoi(m[2])
		if err != nil {
			t.Fatal(err)
		}
		codes[m[1]] = v
	}
	if len(codes) < 30 {
		t.Fatalf("codes.h: only %d codes parsed", len(codes))
	}
	return codes
}

// The Python side of the wire codes: what _caddysnake exports (made from
// codes.h in module.c), and caddysnake.codes (literals), must both hold
// every code of codes.h with its value, and codes.py nothing else. The
// modules that define a code of their own, or import it (asgi, wsgi...),
// must agree too.
func TestWireCodesAgree(t *testing.T) {
	want := codesH(t)
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	quoted, _ := json.Marshal(names)
	expr := fmt.Sprintf(`__import__("json").dumps({
		"native": {n: getattr(__import__("_caddysnake"), n, None) for n in %s},
		"codes": {k: v for k, v in vars(__import__("caddysnake.codes").codes).items() if k.isupper()},
		"modules": {m: {k: getattr(__import__(m, fromlist=["_"]), k) for k in %s
		                if isinstance(getattr(__import__(m, fromlist=["_"]), k, None), int)}
		            for m in ("caddysnake.asgi", "caddysnake.asgi.exchange", "caddysnake.asgi.server", "caddysnake.asgi.lifespan",
		                      "caddysnake.wsgi", "caddysnake.wsgi.response", "caddysnake.wsgi.server", "caddysnake.bridge", "caddysnake.faults")
		            if __import__("importlib.util").util.find_spec(m) is not None},
	})`, quoted, quoted)
	out, err := pythonEval(strings.ReplaceAll(expr, "\n", " "))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Native  map[string]*int
		Codes   map[string]int
		Modules map[string]map[string]int
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	for _, n := range names {
		if v := got.Native[n]; v == nil || *v != want[n] {
			t.Errorf("_caddysnake.%s = %v, codes.h says %d", n, deref(v), want[n])
		}
		if v, ok := got.Codes[n]; !ok || v != want[n] {
			t.Errorf("caddysnake.codes.%s = %v (defined: %v), codes.h says %d", n, v, ok, want[n])
		}
		for m, vals := range got.Modules {
			if v, ok := vals[n]; ok && v != want[n] {
				t.Errorf("%s.%s = %d, codes.h says %d", m, n, v, want[n])
			}
		}
	}
	for n := range got.Codes {
		if _, ok := want[n]; !ok {
			t.Errorf("caddysnake.codes.%s is not in codes.h", n)
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return "missing"
	}
	return *p
}

// Go's names are bound to the right C names (codes.go).
func TestGoCodesMatchCodesH(t *testing.T) {
	want := codesH(t)
	for n, v := range map[string]int{
		"EV_REQUEST":              evRequest,
		"EV_BODY":                 evBody,
		"EV_DISCONNECT":           evDisconnect,
		"EV_SENT":                 evSendDone,
		"EV_SHUTDOWN":             evShutdown,
		"EV_ABANDON":              evAbandon,
		"EV_WS_CONNECT":           evWSConnect,
		"EV_WS_MESSAGE":           evWSMessage,
		"EV_WS_CLOSE":             evWSClose,
		"CMD_START":               cmdStart,
		"CMD_BODY":                cmdBody,
		"CMD_RECEIVE":             cmdReceive,
		"CMD_PATHSEND":            cmdPathsend,
		"CMD_EARLY_HINT":          cmdEarlyHint,
		"CMD_TRAILERS":            cmdTrailers,
		"CMD_FINISH":              cmdFinish,
		"CMD_WS_ACCEPT":           cmdWSAccept,
		"CMD_WS_SEND":             cmdWSSend,
		"CMD_WS_CLOSE":            cmdWSClose,
		"CMD_WS_CREDIT":           cmdWSCredit,
		"OK":                      asgiComplete,
		"APP_ERROR":               asgiFailedBeforeSend,
		"APP_ERROR_AFTER_START":   asgiFailedAfterSend,
		"CLIENT_GONE":             asgiClientGone,
		"STOPPED":                 asgiStopped,
		"TIMED_OUT":               asgiTimedOut,
		"BRIDGE_ERROR":            wsgiBridgeError,
		"APP_ERROR_AFTER_HEADERS": wsgiErrorAfterSend,
		"WRITE_CLIENT_GONE":       goClientGone,
		"WRITE_INVALID":           goInvalid,
		"LOG_DEBUG":               logDebug,
		"LOG_INFO":                logInfo,
		"LOG_WARNING":             logWarning,
		"LOG_ERROR":               logError,
	} {
		if w, ok := want[n]; !ok || w != v {
			t.Errorf("Go's constant for CS_%s is %d, codes.h says %d (defined: %v)", n, v, w, ok)
		}
	}
	if wholeResponseBytes != want["WHOLE_MAX"] {
		t.Errorf("wholeResponseBytes (the job's whole-response buffer) is %d, codes.h's CS_WHOLE_MAX %d",
			wholeResponseBytes, want["WHOLE_MAX"])
	}
	if wsgiOK != want["OK"] || wsgiErrorBeforeSend != want["APP_ERROR"] || wsgiClientGone != want["CLIENT_GONE"] {
		t.Errorf("wsgi codes: %d %d %d", wsgiOK, wsgiErrorBeforeSend, wsgiClientGone)
	}
}
