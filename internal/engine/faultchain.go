package engine

// #include "faultchain.h"
import "C"

// DieByFatalSignals is for a worker process, before the first Load: a
// fatal signal in Python or C code (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGABRT) then ends the process by that signal once faulthandler wrote
// the Python stacks, so its parent sees the signal rather than Go's exit
// status 2. Faults in Go code stay Go's (faultchain.c).
func DieByFatalSignals() { _ = C.cs_faultchain_die_by_signal() }
