package tests

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// The behaviours that depend on the transport, over HTTP/2: streamed
// responses flushed chunk by chunk, 10 MiB uploads through flow control, and
// reading while writing (HTTP/2 is full duplex by nature).
func TestHTTP2StreamingAndBodies(t *testing.T) {
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	handle_path /wsgi/* {
		python {
			module_wsgi "wsgi_stream:app"
			working_dir {{APPS}}
		}
	}
	handle_path /asgi/* {
		python {
			module_asgi "asgi_raw:app"
			working_dir {{APPS}}
		}
	}
}
`, siteOpts{tls: true})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	base := "https://" + c.Addr()
	getOnceCertReady(t, client, base+"/asgi/hello").Body.Close()

	firstChunk := func(t *testing.T, url string) (time.Duration, time.Duration) {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("served over %s, want HTTP/2", resp.Proto)
		}
		buf := make([]byte, 16)
		if _, err := io.ReadAtLeast(resp.Body, buf, 1); err != nil {
			t.Fatal(err)
		}
		first := time.Since(start)
		io.Copy(io.Discard, resp.Body)
		return first, time.Since(start)
	}
	for _, path := range []string{"/wsgi/stream", "/asgi/stream"} {
		t.Run("streaming "+path, func(t *testing.T) {
			first, total := firstChunk(t, base+path)
			if first > time.Second || total < 1200*time.Millisecond {
				t.Fatalf("first chunk after %v, all after %v: want the first well before the end", first, total)
			}
		})
	}

	t.Run("10MiB upload to ASGI", func(t *testing.T) {
		body := bytes.Repeat([]byte("h2-body-"), 10*1024*1024/8)
		sum := sha256.Sum256(body)
		resp, err := client.Post(base+"/asgi/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Len    int    `json:"len"`
			Sha256 string `json:"sha256"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Len != len(body) || got.Sha256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("echo %+v (%v), want len %d", got, err, len(body))
		}
	})

	t.Run("full duplex ASGI echo", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", base+"/asgi/duplex", pr)
		done := make(chan *http.Response, 1)
		go func() {
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				close(done)
				return
			}
			done <- resp
		}()
		pw.Write([]byte("first"))
		var resp *http.Response
		select {
		case resp = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("no response headers while the upload was open")
		}
		if resp == nil {
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64)
		n, err := resp.Body.Read(buf)
		if err != nil || string(buf[:n]) != "echo: first" {
			t.Fatalf("first echo %q, %v", buf[:n], err)
		}
		pw.Write([]byte("second"))
		pw.Close()
		rest, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(rest, []byte("echo: second")) {
			t.Fatalf("rest %q", rest)
		}
	})
}
