package tests

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// With trusted_proxies, REMOTE_ADDR is the client IP Caddy derives from
// X-Forwarded-For, and REMOTE_PORT (the proxy's port) is left out. Only the
// header carries the address: no traffic goes to it.
func TestEnvironRemoteAddrHonoursTrustedProxies(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_environ:app"), siteOpts{globals: `	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Forwarded-For
	}`})
	resp, b := c.do(t, "GET", c.URL("/"), nil, "X-Forwarded-For", "203.0.113.7")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	d := decodeEnviron(t, b)
	wantEnv(t, d, "REMOTE_ADDR", "203.0.113.7")
	if v, ok := d.Env["REMOTE_PORT"]; ok {
		t.Errorf("REMOTE_PORT = %v, want it absent (the port is the proxy's, not the client's)", v)
	}

	// Without the header, the direct peer and its port.
	d = decodeEnviron(t, c.get(t, "/", 200))
	wantEnv(t, d, "REMOTE_ADDR", "127.0.0.1")
	if _, ok := d.Env["REMOTE_PORT"]; !ok {
		t.Error("REMOTE_PORT missing for a direct client")
	}
}

func TestEnvironHTTP3(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	python {
		module_wsgi "wsgi_environ:app"
		working_dir {{APPS}}
	}
}
`, siteOpts{tls: true})
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "https://" + c.Addr() + "/h3?k=v"
	resp := getOnceCertReady(t, client, url)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		t.Fatalf("status %d over %s, want 200 over HTTP/3: %s", resp.StatusCode, resp.Proto, b)
	}
	d := decodeEnviron(t, b)
	wantEnv(t, d, "SERVER_PROTOCOL", "HTTP/3")
	wantEnv(t, d, "wsgi.url_scheme", "https")
	wantEnv(t, d, "PATH_INFO", "/h3")
	wantEnv(t, d, "QUERY_STRING", "k=v")
}
