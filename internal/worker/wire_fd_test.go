package worker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
)

// Files passed among buffered frames arrive with their own frames, in
// order, and each at the offset the sender left it.
func TestFilesPassInFrameOrder(t *testing.T) {
	a, b := socketPair(t)
	defer a.Close()
	defer b.Close()
	wr := NewCoalescingWriter(a)
	defer wr.Stop()
	rd := NewFileReader(b.(*net.UnixConn))
	defer rd.Close()
	dir := t.TempDir()
	go func() {
		for i := range 20 {
			_ = wr.WriteFrame(FrameData, 0, 1, false, []byte("data"+strconv.Itoa(i)))
			p := filepath.Join(dir, strconv.Itoa(i))
			_ = os.WriteFile(p, []byte("xx file "+strconv.Itoa(i)), 0o600)
			f, err := os.Open(p)
			if err != nil {
				return
			}
			_, _ = f.Seek(3, io.SeekStart)
			_ = wr.WriteFile(1, uint32(i), f, 100)
			f.Close() // the one in flight is the kernel's
		}
		_ = wr.Flush()
	}()
	for i := range 20 {
		f, err := rd.ReadFrame()
		if err != nil || f.Type != FrameData || string(f.Payload) != "data"+strconv.Itoa(i) {
			t.Fatalf("frame %d: %v type %d %q", i, err, f.Type, f.Payload)
		}
		f, err = rd.ReadFrame()
		if err != nil || f.Type != FrameFile || f.File == nil {
			t.Fatalf("file frame %d: %v type %d", i, err, f.Type)
		}
		got, _ := io.ReadAll(f.File)
		f.File.Close()
		if string(got) != "file "+strconv.Itoa(i) {
			t.Fatalf("file %d reads %q", i, got)
		}
	}
}

// A plain Reader takes no files: a FrameFile there is a broken peer.
func TestPlainReaderRefusesFrameFile(t *testing.T) {
	var buf bytes.Buffer
	_ = NewWriter(&buf).WriteFrame(FrameFile, 0, 1, true, make([]byte, 12))
	if _, err := NewReader(&buf).ReadFrame(); !errors.Is(err, errNoFile) {
		t.Fatalf("FrameFile on a plain reader: %v, want errNoFile", err)
	}
}

// Descriptors that came ahead of a frame cut short are closed by Close.
func TestReaderCloseClosesUnclaimedFiles(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	a, b := socketPair(t)
	defer b.Close()
	rd := NewFileReader(b.(*net.UnixConn))
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	// Half a header and the descriptor, then the peer goes.
	if _, _, err := a.(*net.UnixConn).WriteMsgUnix([]byte{1, 2, 3}, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a.Close()
	if _, err := rd.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut frame: %v", err)
	}
	rd.Close()
	if after := openFDs(t); after != before-2 { // f and a closed, nothing received left
		t.Fatalf("%d descriptors after Close, %d before (f and the socket's end closed since)", after, before)
	}
}
