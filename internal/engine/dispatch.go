package engine

// #include <stdint.h>
import "C"

import "os"

// dispatchNews is the loop of a dispatcher goroutine, for the WSGI lanes
// and the ASGI queues alike: C writes the eventfd f once per batch of
// requests with news; take fills out with up to max of their handles, and
// wake is called for each. It returns once f is closed, after a last take
// of what is left.
func dispatchNews(f *os.File, take func(out *C.uintptr_t, max C.int) C.int, wake func(h uintptr)) {
	var buf [8]byte
	var handles [64]C.uintptr_t
	for {
		_, err := f.Read(buf[:])
		for {
			n := int(take(&handles[0], C.int(len(handles))))
			for _, h := range handles[:n] {
				wake(uintptr(h))
			}
			if n < len(handles) {
				break
			}
		}
		if err != nil {
			return
		}
	}
}

// nudge sends on ch without blocking: when ch is full, the wake-ups (or
// credits) it holds already cover this one.
func nudge(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
