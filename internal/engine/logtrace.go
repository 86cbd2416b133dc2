package engine

import (
	"strings"

	"go.uber.org/zap"
)

// tracebackStart opens every traceback Python formats.
const tracebackStart = "Traceback (most recent call last):"

// splitTraceback parts a message from Python into a one-line message and
// the lines of the traceback it carries, if any: the traceback becomes one
// field of one log entry, and the message ends with the exception it ended
// in ("WSGI app raised an exception: ZeroDivisionError: division by zero"),
// so a log viewer that shows only messages still says what failed.
func splitTraceback(text string) (string, []string) {
	i := strings.Index(text, tracebackStart)
	if i < 0 {
		return text, nil
	}
	head := strings.TrimRight(text[:i], " :\n")
	lines := strings.Split(strings.TrimRight(text[i:], "\n"), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	switch {
	case head == "":
		head = last
	case last != "" && !strings.HasPrefix(last, "File "):
		head += ": " + last
	}
	return head, lines
}

// logPython logs a message from Python at level (codes.h: CS_LOG_*), its
// traceback, if it has one, as the field "traceback".
func logPython(logger *zap.Logger, level int, text string) {
	msg, tb := splitTraceback(text)
	var fields []zap.Field
	if tb != nil {
		fields = []zap.Field{zap.Strings("traceback", tb)}
	}
	switch level {
	case logDebug:
		logger.Debug(msg, fields...)
	case logInfo:
		logger.Info(msg, fields...)
	case logWarning:
		logger.Warn(msg, fields...)
	default:
		logger.Error(msg, fields...)
	}
}
