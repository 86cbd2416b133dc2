// Why a chain: faulthandler.enable() replaces the SIGSEGV, SIGBUS and SIGFPE
// handlers Go installed at start. Go turns a nil dereference in Go code into
// a panic that net/http or fmt recover; with faulthandler in front, the
// fault went to faulthandler, which dumps the Python stacks and raise()s the
// signal again: Go then sees a signal sent by kill, not a fault, and kills
// the process. So each such signal goes where it belongs, by the faulting
// instruction's address: inside this executable (Go's code and the
// bridge's) to Go's handler, with the original siginfo and context (as any
// chained handler does, so Go can still inject its panic); elsewhere (
// libpython, a C extension, libc) to faulthandler, which writes the Python
// stacks and hands the signal back to Go for its dump, as before.
//
// In a worker process (cs_faultchain_die_by_signal) a fault outside Go's
// code, and SIGILL and SIGABRT (abort()) too, end the process by that very
// signal once faulthandler wrote the stacks: Go's dump would exit with
// status 2 instead, and Caddy could not tell a segfault from a Go crash.
// (GOTRACEBACK=crash is no way out: Go then dies by SIGABRT, whatever the
// fault.) A core is written only if RLIMIT_CORE allows it.
#define _GNU_SOURCE
#include "faultchain.h"

#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

// The first NFAULTS are chained always; SIGILL and SIGABRT only in a
// worker (faulthandler keeps them otherwise, then Go's dump follows).
static const int chained[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define NCHAINED (sizeof(chained) / sizeof(chained[0]))
#define NFAULTS 3

static volatile sig_atomic_t die_by_signal;

static struct sigaction go_sa[NCHAINED];
static struct sigaction fh_sa[NCHAINED];
static uintptr_t exe_lo, exe_hi; // the executable's code

static int find_exe(struct dl_phdr_info *info, size_t size, void *data) {
	(void)size;
	(void)data;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
			uintptr_t hi = lo + ph->p_memsz;
			if (exe_lo == 0 || lo < exe_lo) {
				exe_lo = lo;
			}
			if (hi > exe_hi) {
				exe_hi = hi;
			}
		}
	}
	return 1; // the first object is the executable: stop
}

static uintptr_t fault_pc(void *uctx) {
	ucontext_t *uc = uctx;
#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	(void)uc;
	return 0;
#endif
}

static void call(const struct sigaction *sa, int sig, siginfo_t *info, void *uctx) {
	if (sa->sa_flags & SA_SIGINFO) {
		sa->sa_sigaction(sig, info, uctx);
	} else if (sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN) {
		sa->sa_handler(sig);
	}
}

// die ends the process by sig with the default action; sig may be
// pending already (faulthandler raise()d it while it was blocked).
static void die(int sig) {
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	raise(sig);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL); // delivered here: no return
	// Still here (cannot be for these signals): returning re-runs a
	// faulting instruction, which now faults with the default action.
}

static void chain(int sig, siginfo_t *info, void *uctx) {
	for (size_t i = 0; i < NCHAINED; i++) {
		if (chained[i] != sig) {
			continue;
		}
		uintptr_t pc = fault_pc(uctx);
		if (pc >= exe_lo && pc < exe_hi) {
			call(&go_sa[i], sig, info, uctx);
		} else {
			call(&fh_sa[i], sig, info, uctx);
			if (die_by_signal) {
				die(sig);
			}
		}
		return;
	}
}

void cs_faultchain_save_go(void) {
	for (size_t i = 0; i < NCHAINED; i++) {
		sigaction(chained[i], NULL, &go_sa[i]);
	}
}

int cs_faultchain_die_by_signal(void) {
	die_by_signal = 1;
	return 1;
}

void cs_faultchain_install(void) {
#if defined(__x86_64__) || defined(__aarch64__)
	dl_iterate_phdr(find_exe, NULL);
	int known = exe_hi > exe_lo;
#else
	int known = 0;
#endif
	size_t n = die_by_signal ? NCHAINED : NFAULTS;
	for (size_t i = 0; i < n; i++) {
		sigaction(chained[i], NULL, &fh_sa[i]);
		if (memcmp(&fh_sa[i], &go_sa[i], sizeof(struct sigaction)) == 0) {
			continue; // faulthandler did not take it
		}
		// SIGILL and SIGABRT need no address: with none known, all go
		// to faulthandler (chain's range check then never matches).
		if (i < NFAULTS && (!known || !(go_sa[i].sa_flags & SA_SIGINFO))) {
			// No way to tell Go's faults apart here: Go keeps them, and
			// faulthandler reports only SIGABRT and SIGILL.
			sigaction(chained[i], &go_sa[i], NULL);
			continue;
		}
		struct sigaction sa = go_sa[i]; // Go's flags (SA_ONSTACK, SA_RESTART) and mask
		sa.sa_sigaction = chain;
		sa.sa_flags |= SA_SIGINFO;
		sigaction(chained[i], &sa, NULL);
	}
}
