package engine

import "sync"

// Handles name Go objects to C and Python without handing out Go pointers.
// A handle is tag<<56 | generation<<24 | slot: the tag tells which table it
// belongs to (so go_log can take any of them), and the generation makes a
// handle kept past its object's life (by a thread the app started, say) find
// nothing instead of a newer object in the same slot.
const (
	tagWSGI        = 0 // wsgi_pool.go: request slots (a table of their own)
	tagASGIRequest = 1
	tagASGIApp     = 2

	tagShift = 56
	genShift = 24
	slotMask = 1<<genShift - 1
	genMask  = 1<<(tagShift-genShift) - 1
)

func handleTag(h uintptr) uintptr { return h >> tagShift }

type handleSlot[T any] struct {
	gen uint32
	v   *T
}

// handleTable maps handles to objects of one kind.
type handleTable[T any] struct {
	tag   uintptr
	mu    sync.RWMutex
	slots []handleSlot[T]
	free  []uint32
}

func (t *handleTable[T]) add(v *T) uintptr {
	t.mu.Lock()
	defer t.mu.Unlock()
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slots = append(t.slots, handleSlot[T]{})
		i = uint32(len(t.slots) - 1)
	}
	s := &t.slots[i]
	s.gen = (s.gen + 1) & genMask
	s.v = v
	return t.tag<<tagShift | uintptr(s.gen)<<genShift | uintptr(i)
}

func (t *handleTable[T]) get(h uintptr) *T {
	if handleTag(h) != t.tag {
		return nil
	}
	i, gen := h&slotMask, uint32(h>>genShift)&genMask
	t.mu.RLock()
	defer t.mu.RUnlock()
	if int(i) >= len(t.slots) || t.slots[i].gen != gen {
		return nil
	}
	return t.slots[i].v
}

func (t *handleTable[T]) remove(h uintptr) {
	i, gen := h&slotMask, uint32(h>>genShift)&genMask
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(i) < len(t.slots) && t.slots[i].gen == gen && t.slots[i].v != nil {
		t.slots[i].v = nil
		t.free = append(t.free, uint32(i))
	}
}
