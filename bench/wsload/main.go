// Command wsload is the WebSocket load of bench/run.py's asgi-ws-echo
// configuration: -c connections, each sending -n text messages of -size
// bytes one at a time and waiting for each echo. It prints one JSON object:
// messages/s over the whole run, round-trip percentiles (ms), and errors.
//
//	go build -o bench/tmp/wsload ./bench/wsload
//	bench/tmp/wsload -url ws://127.0.0.1:8080/ -c 64 -n 1000 -size 16 -deflate
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	url := flag.String("url", "", "ws:// URL of the echo app (loopback)")
	conns := flag.Int("c", 64, "connections")
	n := flag.Int("n", 1000, "messages per connection")
	size := flag.Int("size", 16, "bytes per message")
	deflate := flag.Bool("deflate", true, "offer permessage-deflate")
	timeout := flag.Duration("timeout", 120*time.Second, "give up after")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	mode := websocket.CompressionDisabled
	if *deflate {
		mode = websocket.CompressionContextTakeover
	}
	msg := bytes.Repeat([]byte("x"), *size)

	// Every connection is open before the clock starts: the handshakes are
	// not what is measured.
	cs := make([]*websocket.Conn, *conns)
	negotiated := 0
	for i := range cs {
		c, resp, err := websocket.Dial(ctx, *url, &websocket.DialOptions{CompressionMode: mode})
		if err != nil {
			fail("dial: %v", err)
		}
		if resp.Header.Get("Sec-WebSocket-Extensions") != "" {
			negotiated++
		}
		cs[i] = c
	}
	lat := make([][]time.Duration, *conns)
	errs := make([]error, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i] = make([]time.Duration, 0, *n)
			for j := 0; j < *n; j++ {
				t := time.Now()
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					errs[i] = err
					return
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				if !bytes.Equal(got, msg) {
					errs[i] = fmt.Errorf("echo differs: %q", got)
					return
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	nerr := 0
	var firstErr string
	for i, c := range cs {
		all = append(all, lat[i]...)
		if errs[i] != nil {
			nerr++
			if firstErr == "" {
				firstErr = errs[i].Error()
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))]) / float64(time.Millisecond)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"rps":        float64(len(all)) / elapsed.Seconds(),
		"requests":   len(all),
		"elapsed_ms": float64(elapsed) / float64(time.Millisecond),
		"latency_ms": map[string]float64{"p50": pct(0.50), "p75": pct(0.75), "p90": pct(0.90), "p99": pct(0.99),
			"max": pct(1)},
		"negotiated":   negotiated,
		"failed_conns": nerr,
		"first_error":  firstErr,
	})
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wsload: "+format+"\n", args...)
	os.Exit(1)
}
