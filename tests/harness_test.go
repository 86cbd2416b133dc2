// Package tests is caddysnake's integration suite: every test runs the real
// caddy binary ($CADDYSNAKE_BIN) against the small WSGI apps in ./apps and
// talks to it over loopback only.
//
//	CADDYSNAKE_BIN=/path/to/caddy CADDYSNAKE_VENV=/path/to/.venv go test ./tests/
package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	caddyBin string // $CADDYSNAKE_BIN, absolute
	appsDir  string // absolute path of tests/apps
	venvDir  string // $CADDYSNAKE_VENV (or ../.venv), "" if none
)

func TestMain(m *testing.M) {
	bin := os.Getenv("CADDYSNAKE_BIN")
	if bin == "" {
		fmt.Fprintln(os.Stderr, "tests: CADDYSNAKE_BIN is not set; it must name the caddy binary with the python module "+
			"(run `make test-integration`, or CADDYSNAKE_BIN=$PWD/caddy go test ./tests/ after `make build`)")
		os.Exit(2)
	}
	abs, err := filepath.Abs(bin)
	if err == nil {
		bin = abs
	}
	st, err := os.Stat(bin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: CADDYSNAKE_BIN=%s: %v (run `make build` first)\n", bin, err)
		os.Exit(2)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		fmt.Fprintf(os.Stderr, "tests: CADDYSNAKE_BIN=%s is not an executable file\n", bin)
		os.Exit(2)
	}
	caddyBin = bin
	appsDir, err = filepath.Abs("apps")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(2)
	}
	venvDir = os.Getenv("CADDYSNAKE_VENV")
	if venvDir == "" {
		if _, err := os.Stat("../.venv/pyvenv.cfg"); err == nil {
			venvDir, _ = filepath.Abs("../.venv")
		}
	} else if abs, err := filepath.Abs(venvDir); err == nil {
		venvDir = abs
	}
	os.Exit(m.Run())
}

// requireVenv returns the venv holding Flask and Django, or skips.
func requireVenv(t *testing.T) string {
	t.Helper()
	if venvDir == "" {
		t.Skip("CADDYSNAKE_VENV is not set and ../.venv does not exist (run `make venv`)")
	}
	if _, err := os.Stat(filepath.Join(venvDir, "pyvenv.cfg")); err != nil {
		t.Fatalf("CADDYSNAKE_VENV=%s is not a venv: %v", venvDir, err)
	}
	return venvDir
}

// syncBuffer collects the process's stdout and stderr; written by exec's
// copying goroutines, read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePorts asks the kernel for n distinct free loopback ports: every
// listener stays open until all are chosen, since a port closed at once can
// be handed out again by the next request (seen in CI: a site port equal to
// https_port, which Caddy refuses).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// siteOpts are the knobs of the global options block.
type siteOpts struct {
	// tls: the site is https with `tls internal` (auto_https keeps managing
	// its certificate, without HTTP->HTTPS redirects). Otherwise auto_https
	// is off.
	tls bool
	// globals: extra lines for the global options block.
	globals string
	// env: extra NAME=value variables for the caddy process.
	env []string
	// dir: run caddy from this folder instead of its temp dir, so relative
	// paths in the sites resolve against it (examples_test.go).
	dir string
}

// caddy is one running `caddy run` process.
type caddy struct {
	t         *testing.T
	dir       string
	cmd       *exec.Cmd
	log       *syncBuffer
	done      chan struct{} // closed when the process has exited
	waitErr   error
	adminPort int
	Port      int // {{PORT}}
	Port2     int // {{PORT2}}
	httpPort  int
	httpsPort int
	opts      siteOpts
	reloads   int
	Client    *http.Client
}

// expand fills the placeholders a test's site blocks may use.
func (c *caddy) expand(sites string) string {
	r := strings.NewReplacer(
		"{{PORT}}", strconv.Itoa(c.Port),
		"{{PORT2}}", strconv.Itoa(c.Port2),
		"{{APPS}}", appsDir,
		"{{VENV}}", venvDir,
	)
	return r.Replace(sites)
}

// caddyfile is the whole Caddyfile: the global options, then sites.
func (c *caddy) caddyfile(sites string) string {
	autoHTTPS := "auto_https off"
	if c.opts.tls {
		autoHTTPS = "auto_https disable_redirects\n\tskip_install_trust"
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	%s
	persist_config off
%s
}

%s
`, c.adminPort, c.httpPort, c.httpsPort, autoHTTPS, c.opts.globals, withProcesses(c.expand(sites), processesMode))
}

// processesMode is $CADDYSNAKE_PROCESSES: when > 0, every python block the
// harness writes serves through that many worker processes, so the same
// suite checks process mode (make test-integration-processes).
var processesMode = func() int {
	n, err := strconv.Atoi(os.Getenv("CADDYSNAKE_PROCESSES"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}()

// skipInProcessMode skips a test that cannot hold when the apps run in
// worker processes, saying why.
func skipInProcessMode(t *testing.T, why string) {
	t.Helper()
	if processesMode > 0 {
		t.Skipf("CADDYSNAKE_PROCESSES=%d: %s", processesMode, why)
	}
}

// inOneProcess is a python subdirective for a test whose requests read
// state that earlier requests left in the app (counters, logs) or count on
// the app's own capacity (threads 1): in process mode it keeps the app in
// one worker, so the test still crosses the hop but does not see state or
// threads split between workers. "" otherwise.
func inOneProcess() string {
	if processesMode > 0 {
		return "processes 1"
	}
	return ""
}

// pythonBlockOpen is a line opening a python block: `python {` or
// `python "module:app" {`.
var pythonBlockOpen = regexp.MustCompile(`^\s*python(\s+\S+)?\s*\{\s*$`)

// withProcesses adds `processes n` to every python block in sites when n
// > 0, except to blocks that already say how many.
func withProcesses(sites string, n int) string {
	if n == 0 {
		return sites
	}
	lines := strings.Split(sites, "\n")
	out := make([]string, 0, len(lines)+8)
	for i, line := range lines {
		out = append(out, line)
		if !pythonBlockOpen.MatchString(line) || blockSetsProcesses(lines[i+1:]) {
			continue
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		out = append(out, fmt.Sprintf("%s\tprocesses %d", indent, n))
	}
	return strings.Join(out, "\n")
}

// blockSetsProcesses reports whether the block whose body starts at
// lines[0] has its own processes subdirective.
func blockSetsProcesses(lines []string) bool {
	depth := 1
	for _, l := range lines {
		f := strings.Fields(l)
		if depth == 1 && len(f) > 0 && f[0] == "processes" {
			return true
		}
		depth += strings.Count(l, "{") - strings.Count(l, "}")
		if depth <= 0 {
			return false
		}
	}
	return false
}

// childEnv keeps Caddy's storage and config autosave inside the test's
// temp dir.
func childEnv(dir string) []string {
	return append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
}

// startCaddy writes a Caddyfile made of the global options and the given
// site blocks (with {{PORT}}, {{PORT2}}, {{APPS}}, {{VENV}} filled in), runs
// caddy and waits until {{PORT}} accepts connections.
func startCaddy(t *testing.T, sites string, opts ...siteOpts) *caddy {
	t.Helper()
	ports := freePorts(t, 5)
	c := &caddy{
		t:         t,
		dir:       t.TempDir(),
		log:       &syncBuffer{},
		done:      make(chan struct{}),
		adminPort: ports[0],
		Port:      ports[1],
		Port2:     ports[2],
		httpPort:  ports[3],
		httpsPort: ports[4],
	}
	if len(opts) > 0 {
		c.opts = opts[0]
	}
	tr := &http.Transport{
		MaxIdleConns:        200,
		MaxIdleConnsPerHost: 200,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	c.Client = &http.Client{Transport: tr, Timeout: 60 * time.Second}

	cfg := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(c.caddyfile(sites)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(caddyBin, "run", "--config", cfg, "--adapter", "caddyfile")
	c.cmd.Dir = c.dir
	if c.opts.dir != "" {
		c.cmd.Dir = c.opts.dir
	}
	c.cmd.Env = append(childEnv(c.dir), c.opts.env...)
	c.cmd.Stdout = c.log
	c.cmd.Stderr = c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", caddyBin, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stop()
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("caddy log (pid %d):\n%s", c.cmd.Process.Pid, c.log.String())
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", c.Port)
	for {
		select {
		case <-c.done:
			t.Fatalf("caddy exited before serving (%v); its log follows. Caddyfile:\n%s",
				c.waitErr, c.caddyfile(sites))
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not answer on %s within 20s; its log follows", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// stop sends SIGTERM and kills the process if it has not exited after 10s.
func (c *caddy) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Errorf("caddy (pid %d) did not exit within 10s of SIGTERM; killing it", c.cmd.Process.Pid)
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// alive fails the test if the process has exited.
func (c *caddy) alive(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
		t.Fatalf("caddy exited unexpectedly: %v", c.waitErr)
	default:
	}
}

// Log is everything caddy printed so far.
func (c *caddy) Log() string { return c.log.String() }

// waitLog waits up to timeout for the log to contain every one of subs.
func (c *caddy) waitLog(timeout time.Duration, subs ...string) bool {
	deadline := time.Now().Add(timeout)
	for {
		log := c.Log()
		all := true
		for _, s := range subs {
			if !strings.Contains(log, s) {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is http://127.0.0.1:{{PORT}} + path.
func (c *caddy) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", c.Port, path)
}

// Addr is 127.0.0.1:{{PORT}}.
func (c *caddy) Addr() string { return fmt.Sprintf("127.0.0.1:%d", c.Port) }

// do sends a request and reads the whole body.
func (c *caddy) do(t *testing.T, method, url string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// get is GET c.URL(path), asserting the status.
func (c *caddy) get(t *testing.T, path string, wantStatus int) []byte {
	t.Helper()
	resp, b := c.do(t, "GET", c.URL(path), nil)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: status %d, want %d; body: %.500s", path, resp.StatusCode, wantStatus, b)
	}
	return b
}

// reload replaces the config through `caddy reload` (the admin API).
func (c *caddy) reload(t *testing.T, sites string) {
	t.Helper()
	c.reloads++
	cfg := filepath.Join(c.dir, fmt.Sprintf("Caddyfile.reload%d", c.reloads))
	if err := os.WriteFile(cfg, []byte(c.caddyfile(sites)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "reload", "--config", cfg, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", c.adminPort))
	cmd.Dir = c.dir
	cmd.Env = childEnv(c.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy reload #%d: %v\n%s", c.reloads, err, out)
	}
	c.alive(t)
}

// procStatus reads one "Key:   value" field of /proc/<pid>/status.
func (c *caddy) procStatus(t *testing.T, key string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", c.cmd.Process.Pid, key)
	return ""
}

// rss is the process's resident set size in bytes.
func (c *caddy) rss(t *testing.T) int64 {
	t.Helper()
	v := strings.TrimSuffix(c.procStatus(t, "VmRSS"), " kB")
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		t.Fatalf("VmRSS %q: %v", v, err)
	}
	return n * 1024
}

// threads is the process's OS thread count.
func (c *caddy) threads(t *testing.T) int {
	t.Helper()
	v := c.procStatus(t, "Threads")
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("Threads %q: %v", v, err)
	}
	return n
}

// validate runs `caddy validate` on a Caddyfile made of sites (placeholders
// filled in as for startCaddy, with auto_https off) and returns its output.
func validate(t *testing.T, sites string) (string, error) {
	t.Helper()
	ports := freePorts(t, 5)
	c := &caddy{
		dir:       t.TempDir(),
		adminPort: ports[0],
		Port:      ports[1],
		Port2:     ports[2],
		httpPort:  ports[3],
		httpsPort: ports[4],
	}
	cfg := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(c.caddyfile(sites)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "validate", "--config", cfg, "--adapter", "caddyfile")
	cmd.Dir = c.dir
	cmd.Env = childEnv(c.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rawExchange opens a TCP connection, writes req, optionally half-closes,
// and reads until EOF or timeout. It returns what was read and the read
// error (nil for a clean EOF).
func rawExchange(t *testing.T, addr string, req string, halfClose bool, timeout time.Duration) (string, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("write request: %v", err)
	}
	if halfClose {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(conn)
	return string(b), err
}

// statusOf is the status code of a raw HTTP/1.x response, 0 if none.
func statusOf(resp string) int {
	line, _, _ := strings.Cut(resp, "\r\n")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// pySite is a site block serving module:attr with the given extra python
// subdirectives.
func pySite(addr, target string, extra ...string) string {
	return fmt.Sprintf(`%s {
	python {
		module_wsgi %q
		working_dir {{APPS}}
		%s
	}
}
`, addr, target, strings.Join(extra, "\n\t\t"))
}

// fetch is do without t: safe from any goroutine.
func (c *caddy) fetch(method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.URL(path), r)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// dial opens a raw TCP connection.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return conn
}

// readUntil reads from conn into got until it holds want, failing with what
// arrived if the read deadline (set by the caller) passes first.
func readUntil(t *testing.T, conn net.Conn, got []byte, want string) []byte {
	t.Helper()
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v; read so far: %q", want, err, got)
		}
		got = append(got, buf[:n]...)
	}
	return got
}

// getOnceCertReady GETs url, retrying while a `tls internal` site's
// certificate is still being issued just after start (up to 10 s).
func getOnceCertReady(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var resp *http.Response
		if resp, err = client.Get(url); err == nil {
			return resp
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, err)
	return nil
}
