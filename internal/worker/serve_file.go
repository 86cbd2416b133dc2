package worker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// The worker's side of FrameFile (wire_fd.go): SendFile passes the open
// file to Caddy, which sends it with sendfile, and waits for its
// FrameFileDone, so that the engine sees what it sees in process: the
// bytes sent, a short file, a client that left.

// fileAck is a FrameFileDone.
type fileAck struct {
	seq  uint32
	sent int64
	err  error
}

// errFileClientGone wraps net.ErrClosed so that the engine takes it for
// a client that left (engine.ClientGone), as a failed write in process.
var errFileClientGone = fmt.Errorf("python worker: the client went away during a file's send: %w", net.ErrClosed)

// decodeFileAck reads a FrameFileDone's payload.
func decodeFileAck(p []byte) (fileAck, bool) {
	if len(p) < 16 {
		return fileAck{}, false
	}
	a := fileAck{seq: binary.LittleEndian.Uint32(p), sent: int64(binary.LittleEndian.Uint64(p[4:]))}
	d := &Decoder{B: p[12:]}
	result, why := d.U32(), d.Str()
	if d.Err != nil {
		return fileAck{}, false
	}
	switch result {
	case fileSent:
	case fileClientGone:
		a.err = errFileClientGone
	default:
		a.err = errors.New("python worker: Caddy could not send the file: " + why)
	}
	return a, true
}

// fileDone hands a FrameFileDone to the SendFile that waits for it (read
// loop: never blocks; an older one still queued is dropped).
func (st *reqStream) fileDone(p []byte) {
	a, ok := decodeFileAck(p)
	if !ok {
		return
	}
	for {
		select {
		case st.fileAcks <- a:
			return
		default:
		}
		select {
		case <-st.fileAcks:
		default:
		}
	}
}

// SendFile passes f to Caddy, which sends n bytes of it from its offset,
// and waits for the outcome. (Over a connection that cannot pass files,
// the bytes go as FrameData.)
func (st *reqStream) SendFile(f *os.File, n int64) (int64, error) {
	if !st.s.wr.canPassFiles() {
		return st.copyFile(f, n)
	}
	if !st.wroteHeader {
		st.WriteHeader(200)
	}
	if st.held {
		// The head goes first; a file the size of nothing is no frame.
		if err := st.release(); err != nil {
			return 0, err
		}
	}
	if n <= 0 {
		return 0, nil
	}
	st.fileSeq++
	seq := st.fileSeq
	if err := st.s.wr.WriteFile(st.id, seq, f, n); err != nil {
		return 0, err
	}
	for {
		select {
		case a := <-st.fileAcks:
			if a.seq == seq {
				return a.sent, a.err
			}
		case <-st.done:
			return 0, errFileClientGone
		case <-st.writeDL.wait():
			// As the deadline cuts the write in process: Caddy stops.
			_ = st.s.wr.WriteFrame(FrameFileCut, 0, st.id, true)
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// copyFile reads the file and sends it as data.
func (st *reqStream) copyFile(f *os.File, n int64) (int64, error) {
	buf := make([]byte, min(n, dataFrameMax))
	var sent int64
	for sent < n {
		k, err := f.Read(buf[:min(int64(len(buf)), n-sent)])
		if k > 0 {
			w, werr := st.Write(buf[:k])
			sent += int64(w)
			if werr != nil {
				return sent, werr
			}
		}
		if err == io.EOF {
			return sent, nil // the engine sees the file ended early
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}
