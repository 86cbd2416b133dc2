package engine

import (
	"errors"
	"net/http"
)

// Error is an answer the engine gives instead of the app's: a status code
// (503 stopped, 400 bad body, 504 timed out, 499 client gone, ...) and why.
// The server that embeds the engine turns it into its own error response.
type Error struct {
	Status int
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return http.StatusText(e.Status)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// statusError is an *Error for status and err.
func statusError(status int, err error) error {
	return &Error{Status: status, Err: err}
}

// ErrAbort says the response must be aborted, not finished: its headers
// went out and it cannot be completed (the app failed mid-response, a
// timeout, a file that ended early), so the client must see a broken
// response rather than a truncated one that looks whole. Over net/http
// that is panic(http.ErrAbortHandler).
var ErrAbort = errors.New("response aborted")
