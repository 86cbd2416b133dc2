package worker

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// Caddy's side of FrameFile (wire_fd.go): the descriptor the worker passed
// goes to the response writer's SendFile on Serve's goroutine (the read
// loop only queues it), as the engine's own does in process, so net/http
// sends it with sendfile. Every descriptor received is closed once: here
// after the send, or by dropFiles when the stream ends without it.

// sendFile serves one FrameFile event and answers FrameFileDone; skip:
// the response is broken or the client gone, nothing is sent. It returns
// whether the send failed on the client's side (gone) or otherwise left
// the response short (short): either way the response must not look
// complete.
func (s *stream) sendFile(w engine.ResponseWriter, ev event, skip bool) (gone, short bool) {
	f := ev.file
	defer f.Close()
	result, why := uint32(fileSent), ""
	var seq uint32
	var size, sent int64
	if len(ev.p) != 12 {
		result, why = fileFailed, "malformed FrameFile"
	} else {
		size = int64(binary.LittleEndian.Uint64(ev.p))
		seq = binary.LittleEndian.Uint32(ev.p[8:])
	}
	switch {
	case result != fileSent:
	case skip:
		result = fileClientGone
	case size < 0:
		result, why = fileFailed, "negative size"
	default:
		// An honest worker passes regular files only (the engine checked);
		// anything else, a FIFO say, might never end.
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			result, why = fileFailed, fmt.Sprintf("not a regular file (%v)", err)
			break
		}
		if !s.beginSend(w) {
			result = fileClientGone // cut before it began
			break
		}
		var err error
		sent, err = w.SendFile(f, size)
		s.endSend()
		switch {
		case err != nil && engine.ClientGone(err):
			result, why = fileClientGone, err.Error()
		case err != nil:
			result, why = fileFailed, err.Error()
		}
	}
	if result == fileFailed {
		s.pr.pool.logger.Error("python: a file the worker passed could not be sent; aborting the response",
			zap.String("app", s.pr.pool.name), zap.Int("pid", s.pr.pid), zap.String("why", why))
	}
	var e Encoder
	e.U32(seq)
	e.B = binary.LittleEndian.AppendUint64(e.B, uint64(sent))
	e.U32(result)
	e.Str(why)
	_ = s.pr.send(FrameFileDone, 0, s.id, e.B)
	return result == fileClientGone, result != fileSent || sent < size
}

// beginSend records w as the writer a FrameFileCut (or the worker's death)
// cuts; false if a cut came already.
func (s *stream) beginSend(w engine.ResponseWriter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return false
	}
	s.sending = w
	return true
}

func (s *stream) endSend() {
	s.mu.Lock()
	s.sending = nil
	s.mu.Unlock()
}

// cutSend makes the send in progress, if any, fail, and any later one
// skip: the worker gave up waiting for it (its write deadline), or died.
// Under s.mu: once endSend returned, the writer, and the connection under
// it, which may serve the next request, are not touched.
func (s *stream) cutSend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = true
	if s.sending != nil {
		_ = s.sending.SetWriteDeadline(time.Now())
	}
}

// dropFiles closes the descriptors of events no one will serve: the
// stream ended (closed), and any that arrive later are closed on arrival.
func (s *stream) dropFiles() {
	s.mu.Lock()
	s.closed = true
	evs := s.events
	s.events = nil
	s.mu.Unlock()
	closeFiles(evs)
}

// closeFiles closes the descriptors evs still hold.
func closeFiles(evs []event) {
	for i := range evs {
		if evs[i].file != nil {
			evs[i].file.Close()
			evs[i].file = nil
		}
	}
}
