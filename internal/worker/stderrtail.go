package worker

import (
	"bytes"
	"io"
	"os"
	"sync"
	"time"
)

// A worker's stderr is a pipe Caddy copies to its own stderr, keeping the
// last stderrKeep bytes: when the worker dies by a fatal signal, the
// Python stacks faulthandler wrote there join the log line that reports
// the death (a `log` block writing to a file would not have them
// otherwise). The pipe is Caddy's own, not exec's: cmd.Wait would wait for
// every process holding it, the app's children too.
const (
	stderrKeep   = 64 << 10
	stacksMax    = 16 << 10
	stderrSettle = time.Second // for the last bytes once the worker exited
)

type stderrTail struct {
	mu   sync.Mutex
	buf  []byte
	done chan struct{} // EOF: every writer closed the pipe
}

// newStderrTail copies r to out until EOF, then closes r.
func newStderrTail(r *os.File, out io.Writer) *stderrTail {
	t := &stderrTail{done: make(chan struct{})}
	go func() {
		defer close(t.done)
		defer r.Close()
		b := make([]byte, 32<<10)
		for {
			n, err := r.Read(b)
			if n > 0 {
				_, _ = out.Write(b[:n])
				t.keep(b[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	return t
}

func (t *stderrTail) keep(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - stderrKeep; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

// settle waits until the worker's last writes were read: EOF, or a bound
// (a process the app started may hold the pipe open).
func (t *stderrTail) settle() {
	select {
	case <-t.done:
	case <-time.After(stderrSettle):
	}
}

// text returns what was kept.
func (t *stderrTail) text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// faultReport returns what faulthandler wrote last ("Fatal Python error:"
// and the stacks that follow), at most stacksMax bytes; "" if none.
func (t *stderrTail) faultReport() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := bytes.LastIndex(t.buf, []byte("Fatal Python error: "))
	if i < 0 {
		return ""
	}
	r := bytes.TrimSpace(t.buf[i:])
	if len(r) > stacksMax {
		r = append(r[:stacksMax:stacksMax], " [cut]"...)
	}
	return string(r)
}
