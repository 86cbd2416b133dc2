package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// FrameTrailers (worker to Caddy), payload: the header fields that changed
// or appeared since the last FrameHead (EncodeHeader), sent before
// FrameEnd.
const FrameTrailers = 27

// proc is one worker process seen from Caddy: its socket, the streams in
// flight on it, and its life (started, ready, dead).
type proc struct {
	pool   *Pool
	slot   *slot
	cmd    *exec.Cmd
	pid    int
	conn   net.Conn
	w      *Writer
	nextID atomic.Uint32

	mu      sync.Mutex
	streams map[uint32]*stream
	dead    bool // the socket ended: no new stream is admitted
	// inflight counts streams for the least-busy pick.
	inflight atomic.Int64

	// ready gets the outcome of start-up once: nil (FrameReady), or why it
	// failed (FrameLoadFail, or the process died first).
	ready     chan error
	readyOnce sync.Once
	fields    []zap.Field // from FrameReady
	readyAt   time.Time
	isReady   atomic.Bool
	// retired: Caddy itself ended this worker (stop, reload, a failed
	// start): its exit is no crash, and it takes no new stream. Set under
	// opening's write lock (retire); a stream holds its read lock from
	// open until its FrameRequest is queued, so no request can follow
	// FrameShutdown on the socket (the worker would refuse it: 503).
	retired atomic.Bool
	opening sync.RWMutex
	// Recycling (recycle.go): streams opened, the limit (0: none), and
	// whether a replacement is under way.
	served    atomic.Int64
	maxServed int64
	recycling atomic.Bool

	exited  chan struct{} // cmd.Wait returned
	waitErr error
	stderr  *stderrTail
	gone    chan struct{} // the read loop ended and the process was reaped
}

// spawn starts `exe python-worker` with the child end of a new socket pair
// as fd 3 and cfg in its environment.
func spawn(p *Pool, sl *slot) (*proc, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("worker socket pair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "worker-parent")
	child := os.NewFile(uintptr(fds[1]), "worker-child")
	defer child.Close()
	conn, err := net.FileConn(parent) // a dup, polled by the runtime
	parent.Close()
	if err != nil {
		return nil, fmt.Errorf("worker socket: %w", err)
	}
	cmd := exec.Command(p.opts.Exe, p.opts.Args...)
	cmd.Env = append(os.Environ(), ConfigEnv+"="+p.config)
	if p.opts.MemoryLimit > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", MemoryLimitEnv, p.opts.MemoryLimit))
		// glibc gives each thread that allocates an arena reserving 64
		// MiB of address space, up to 8 a core: under RLIMIT_AS that
		// would count against the app. Left to the user if set.
		if os.Getenv("MALLOC_ARENA_MAX") == "" {
			cmd.Env = append(cmd.Env, "MALLOC_ARENA_MAX=2")
		}
	}
	cmd.Env = append(cmd.Env, p.opts.Env...)
	errRd, errWr, err := os.Pipe() // stderrtail.go
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("worker stderr pipe: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, errWr // print() goes where it goes in process
	cmd.ExtraFiles = []*os.File{child}
	// Go sets the parent-death signal after the credential, which would
	// clear it otherwise.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: p.opts.Credential}
	err = startOnSpawner(cmd)
	errWr.Close()
	if err != nil {
		errRd.Close()
		conn.Close()
		return nil, fmt.Errorf("starting worker %s: %w", p.opts.Exe, err)
	}
	pr := &proc{
		pool:    p,
		slot:    sl,
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		conn:    conn,
		w:       NewCoalescingWriter(conn),
		streams: map[uint32]*stream{},
		ready:   make(chan error, 1),
		exited:  make(chan struct{}),
		gone:    make(chan struct{}),
		stderr:  newStderrTail(errRd, os.Stderr),
	}
	pr.maxServed = p.requestLimit()
	go func() {
		pr.waitErr = cmd.Wait()
		close(pr.exited)
		// The read loop sees EOF once it read what the worker wrote last
		// (a FrameLoadFail, a response's last bytes); a grandchild could
		// hold the worker's end open, so it is bounded.
		_ = pr.conn.SetReadDeadline(time.Now().Add(time.Second))
	}()
	go pr.readLoop()
	return pr, nil
}

// The parent-death signal fires when the thread that started the child
// exits, not the process; Go ends threads a goroutine left locked. Every
// worker is therefore started from one thread locked for good.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startOnSpawner(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as Caddy
			for r := range spawnReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, done}
	return <-done
}

// readLoop dispatches the worker's frames to their streams until the
// socket ends; then the process is reaped and its streams failed.
func (pr *proc) readLoop() {
	var rd *Reader
	if uc, ok := pr.conn.(*net.UnixConn); ok {
		rd = NewFileReader(uc) // the worker passes the files it sends (wire_fd.go)
	} else {
		rd = NewReader(pr.conn)
	}
	var err error
	for {
		var f Frame
		f, err = rd.ReadFrame()
		if err != nil {
			break
		}
		if f.Stream == 0 {
			if f.File != nil {
				f.File.Close()
			}
			pr.control(f)
			continue
		}
		pr.mu.Lock()
		s := pr.streams[f.Stream]
		pr.mu.Unlock()
		if s == nil {
			if f.File != nil {
				f.File.Close()
			}
			continue // a stream Caddy gave up on already
		}
		s.fromWorker(f)
	}
	rd.Close()
	pr.mu.Lock()
	pr.dead = true
	pr.isReady.Store(false) // pick passes it over until it is reaped
	streams := pr.streams
	pr.streams = map[uint32]*stream{}
	pr.mu.Unlock()
	pr.w.Stop()
	pr.conn.Close()
	for _, s := range streams {
		s.fail()
	}
	select {
	case <-pr.exited:
	case <-time.After(killGrace):
		// The socket ended but the process stays: it is no worker anymore.
		_ = pr.cmd.Process.Kill()
		<-pr.exited
	}
	if pr.signaled() != 0 || pr.readyAt.IsZero() {
		pr.stderr.settle() // its fault report (exitFields), why it did not start (memlimit.go)
	}
	pr.readyOnce.Do(func() {
		pr.ready <- fmt.Errorf("worker process %d exited before it was ready (%s)", pr.pid, pr.exitText())
	})
	close(pr.gone)
	pr.pool.exited(pr)
}

// killGrace is how long a worker may take to exit once asked to give up,
// or once its socket ended.
const killGrace = 5 * time.Second

// control handles stream 0: start-up's outcome.
func (pr *proc) control(f Frame) {
	switch f.Type {
	case FrameReady:
		var m map[string]any
		_ = json.Unmarshal(f.Payload, &m)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fields := make([]zap.Field, 0, len(keys))
		for _, k := range keys {
			fields = append(fields, zap.Any(k, m[k]))
		}
		pr.readyOnce.Do(func() {
			pr.fields, pr.readyAt = fields, time.Now()
			pr.isReady.Store(true)
			pr.ready <- nil
		})
	case FrameLoadFail:
		msg := string(f.Payload)
		pr.readyOnce.Do(func() { pr.ready <- errors.New(msg) })
	case FrameRecycle:
		pr.pool.recycle(pr, "request_timeout", zap.String("worker_says", string(f.Payload)))
	}
}

// signaled returns the signal that ended the process; 0 if none did.
func (pr *proc) signaled() syscall.Signal {
	var ee *exec.ExitError
	if errors.As(pr.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// exitText says how the process ended: its exit status, or its signal
// by name and description, e.g. "signal SIGSEGV (segmentation fault)".
func (pr *proc) exitText() string {
	var ee *exec.ExitError
	if errors.As(pr.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			s := fmt.Sprintf("signal %s (%s)", unix.SignalName(ws.Signal()), ws.Signal())
			if ws.CoreDump() {
				s += ", core dumped"
			}
			return s
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if pr.waitErr != nil {
		return pr.waitErr.Error()
	}
	return "exit status 0"
}

// exitFields names the process and how it ended, for the log; for a
// fatal signal, with the Python stacks faulthandler wrote (stderrtail.go).
func (pr *proc) exitFields() []zap.Field {
	f := []zap.Field{zap.Int("pid", pr.pid), zap.String("exit", pr.exitText())}
	var ee *exec.ExitError
	if sig := pr.signaled(); sig != 0 {
		f = append(f, zap.Int("signal", int(sig)))
		if r := pr.stderr.faultReport(); r != "" {
			f = append(f, zap.String("python_stacks", r))
		}
	} else if errors.As(pr.waitErr, &ee) {
		f = append(f, zap.Int("exit_status", ee.ExitCode()))
	}
	return f
}

// open registers a new stream, or returns nil if the worker is dead or
// retired. The caller holds pr.opening's read lock until the stream's
// FrameRequest is queued.
func (pr *proc) open() *stream {
	s := newStream(pr)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.dead || pr.retired.Load() {
		return nil
	}
	for {
		s.id = pr.nextID.Add(1)
		if s.id != 0 && pr.streams[s.id] == nil {
			break
		}
	}
	s.opened = time.Now()
	pr.streams[s.id] = s
	pr.inflight.Add(1)
	pr.countStream()
	return s
}

// closeStream forgets s once it ended (FrameEnd, or the worker died).
func (pr *proc) closeStream(s *stream) {
	pr.mu.Lock()
	if pr.streams[s.id] == s {
		delete(pr.streams, s.id)
	}
	pr.mu.Unlock()
	s.dropFiles()
	pr.inflight.Add(-1)
}

// send writes one frame and flushes it.
func (pr *proc) send(typ, flags uint8, id uint32, payload ...[]byte) error {
	return pr.w.WriteFrame(typ, flags, id, true, payload...)
}

// shutdown asks the worker to finish its streams and exit; kill after
// bound if it has not.
func (pr *proc) shutdown(bound time.Duration) {
	pr.retire()
	_ = pr.send(FrameShutdown, 0, 0)
	pr.killAfter(bound)
}

// abandon asks the worker to give up on its streams; kill after killGrace.
func (pr *proc) abandon() {
	pr.retire()
	_ = pr.send(FrameAbandon, 0, 0)
	pr.killAfter(killGrace)
}

// retire admits no new stream; once it returns, every stream opened
// before has its FrameRequest queued ahead of what pr sends next.
func (pr *proc) retire() {
	pr.opening.Lock()
	pr.retired.Store(true)
	pr.opening.Unlock()
}

func (pr *proc) killAfter(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-pr.gone:
	case <-t.C:
		_ = pr.cmd.Process.Kill()
		<-pr.gone
	}
}
