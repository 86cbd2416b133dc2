// faultchain: CPython's faulthandler for crashes in Python and its C
// extensions, without taking the fault signals away from Go (faultchain.c).
#ifndef CADDYSNAKE_FAULTCHAIN_H
#define CADDYSNAKE_FAULTCHAIN_H

// Call right before faulthandler.enable(): remembers Go's handlers.
void cs_faultchain_save_go(void);

// Call before cs_faultchain_install, in a worker process only: a fatal
// signal faulthandler reports (SIGSEGV, SIGBUS, SIGFPE outside this
// executable's code; SIGILL, SIGABRT) then ends the process by that signal
// instead of going on to Go's dump, which exits with status 2.
int cs_faultchain_die_by_signal(void); // returns 1 (a void function trips cgo's -Wextra)

// Call right after it: puts a handler in front of both that sends each
// SIGSEGV, SIGBUS and SIGFPE to Go when it happened in this executable's
// code (Go's, or the bridge's), else to faulthandler.
void cs_faultchain_install(void);

#endif
