package worker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Files the app hands to the server (ASGI pathsend, wsgi.file_wrapper) go
// to Caddy as open file descriptors, so that Caddy sends them with
// sendfile as in process. The worker opens the file (it has the app's
// privileges, perhaps another user's: Caddy never opens a path for it)
// and passes the descriptor with SCM_RIGHTS on the frame that names it,
// one sendmsg for both, so the descriptors arrive in the frames' order.
//
// Worker to Caddy:
const (
	// FrameFile: payload u64 size, u32 sequence; the descriptor rides on
	// the same sendmsg. Caddy sends size bytes from the file's offset,
	// then answers FrameFileDone. The bytes are not counted against the
	// window: the worker waits for FrameFileDone instead.
	FrameFile = 28
	// FrameFileCut: the worker gave up waiting for FrameFileDone (its
	// write deadline passed): Caddy cuts the send, as the deadline cuts
	// the write in process.
	FrameFileCut = 29
)

// Caddy to worker:
const (
	// FrameFileDone: payload u32 sequence, u64 bytes sent, u32 result
	// (fileSent, fileFailed, fileClientGone), then why it failed.
	FrameFileDone = 8
)

// FrameFileDone results.
const (
	fileSent       = 0 // all of it, or short if the file ended early
	fileFailed     = 1 // the file could not be read or sent
	fileClientGone = 2 // the client left (or the stream was over)
)

// maxQueuedFiles bounds the descriptors received and not yet claimed by
// a FrameFile: a worker that sends more breaks the protocol (and would
// fill Caddy's descriptor table).
const maxQueuedFiles = 64

var (
	errNoFile       = errors.New("worker wire: FrameFile without a file descriptor")
	errTooManyFiles = errors.New("worker wire: too many file descriptors passed ahead of their frames")
)

// fdSource is the io.Reader under a Reader that takes passed descriptors:
// each read is a recvmsg, and the descriptors that come with it are
// queued in arrival order (a plain read would discard them).
type fdSource struct {
	c   *net.UnixConn
	oob []byte

	mu     sync.Mutex
	queue  []*os.File
	closed bool
	err    error // too many queued: the connection is broken
}

func (s *fdSource) Read(p []byte) (int, error) {
	n, oobn, _, _, err := s.c.ReadMsgUnix(p, s.oob)
	n = max(n, 0) // -1 with some errors
	if oobn > 0 {
		if qerr := s.take(s.oob[:oobn]); qerr != nil {
			return 0, qerr
		}
	}
	if errors.Is(err, io.EOF) {
		err = io.EOF // unwrapped, as Read's callers (io.ReadFull) expect it
	}
	return n, err
}

// take queues the descriptors of the control messages in oob; every one
// of them is closed or queued.
func (s *fdSource) take(oob []byte) error {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("worker wire: control message: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			// MSG_CMSG_CLOEXEC (Go's ReadMsgUnix): no child inherits it.
			f := os.NewFile(uintptr(fd), "passed by a worker")
			if s.closed || len(s.queue) >= maxQueuedFiles {
				f.Close()
				if !s.closed {
					s.err = errTooManyFiles
				}
				continue
			}
			s.queue = append(s.queue, f)
		}
	}
	return s.err
}

// next takes the oldest queued descriptor, nil if none came.
func (s *fdSource) next() *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil
	}
	f := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	return f
}

// close closes what is queued; descriptors that come later are closed
// as they arrive.
func (s *fdSource) close() {
	s.mu.Lock()
	q := s.queue
	s.queue, s.closed = nil, true
	s.mu.Unlock()
	for _, f := range q {
		f.Close()
	}
}

// NewFileReader is NewReader for a connection whose peer passes files
// (Caddy's end): a FrameFile's Frame.File is the descriptor that came
// with it. Close closes the descriptors not claimed.
func NewFileReader(c *net.UnixConn) *Reader {
	// Room for a few descriptors: Linux hands out one sendmsg's worth per
	// recvmsg, and the worker passes one per sendmsg.
	src := &fdSource{c: c, oob: make([]byte, syscall.CmsgSpace(8*4))}
	rd := NewReader(src)
	rd.fds = src
	return rd
}

// Close closes the passed descriptors no frame claimed.
func (rd *Reader) Close() {
	if rd.fds != nil {
		rd.fds.close()
	}
}

// claimFile sets f.File for a FrameFile (the caller owns it then).
func (rd *Reader) claimFile(f *Frame) error {
	if rd.fds == nil {
		return errNoFile
	}
	if f.File = rd.fds.next(); f.File == nil {
		return errNoFile
	}
	return nil
}

// canPassFiles says whether WriteFile works on this Writer.
func (wr *Writer) canPassFiles() bool { return wr.uc != nil }

// WriteFile sends a FrameFile for stream with f's descriptor: what is
// queued goes first, then the frame and the descriptor in one sendmsg.
// f stays the caller's (the kernel holds its own reference in flight).
func (wr *Writer) WriteFile(stream, seq uint32, f *os.File, size int64) error {
	if wr.uc == nil {
		return errNoFile
	}
	var b [headerLen + 12]byte
	binary.LittleEndian.PutUint32(b[0:], 12)
	b[4] = FrameFile
	binary.LittleEndian.PutUint32(b[8:], stream)
	binary.LittleEndian.PutUint64(b[headerLen:], uint64(size))
	binary.LittleEndian.PutUint32(b[headerLen+8:], seq)
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if wr.err != nil {
		return wr.err
	}
	if err := wr.w.Flush(); err != nil {
		wr.err = err
		return err
	}
	var n int
	var serr error
	// Control keeps f's descriptor open while sendmsg takes it.
	if err := rc.Control(func(fd uintptr) {
		n, _, serr = wr.uc.WriteMsgUnix(b[:], syscall.UnixRights(int(fd)), nil)
	}); err != nil {
		return err // f was closed: nothing went out
	}
	if serr == nil && n < len(b) {
		// A short sendmsg on a stream socket: the descriptor went with
		// the first byte, the rest follows as plain bytes.
		_, serr = wr.uc.Write(b[n:])
	}
	if serr != nil {
		wr.err = serr
	}
	return serr
}
