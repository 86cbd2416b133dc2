package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// Files an app hands to the server to send (ASGI http.response.pathsend,
// wsgi.file_wrapper's sendfile) must be regular files: a directory has no
// bytes to send (its "size" is the file system's block), and a FIFO or a
// device has no size and may never end. Such a file, or one that cannot be
// opened or read, gets 500 while the headers are still held, else an abort:
// never a response that looks whole.

// openRegular opens path for reading and checks that it is a regular file,
// returning its size. O_NONBLOCK: opening a FIFO would otherwise wait for a
// writer (regular files ignore the flag).
func openRegular(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err == nil {
		err = notRegular(path, st.Mode())
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// notRegular is nil for a regular file, else an error naming path and what
// it is instead.
func notRegular(path string, mode fs.FileMode) error {
	if mode.IsRegular() {
		return nil
	}
	kind := "not a regular file"
	switch {
	case mode.IsDir():
		kind = "a directory"
	case mode&fs.ModeNamedPipe != 0:
		kind = "a FIFO"
	case mode&fs.ModeSocket != 0:
		kind = "a socket"
	case mode&fs.ModeDevice != 0:
		kind = "a device"
	}
	return fmt.Errorf("%s is %s, not a regular file", path, kind)
}

// ClientGone says whether a failed copy to the client failed on the
// client's side (it left), as opposed to the file's. (The worker pool
// tells a worker which it was, for the same answer as in process.)
func ClientGone(err error) bool {
	var ne *net.OpError
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// fdPath names the file behind a descriptor for a log line.
func fdPath(fd int) string {
	if p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
		return p
	}
	return fmt.Sprintf("file descriptor %d", fd)
}
