package engine

import (
	"sync"
	"testing"
)

func TestHandleTableAddGetRemove(t *testing.T) {
	tab := handleTable[int]{tag: tagASGIRequest}
	a, b := new(int), new(int)
	ha, hb := tab.add(a), tab.add(b)
	if ha == hb {
		t.Fatalf("two objects share handle %#x", ha)
	}
	if got := tab.get(ha); got != a {
		t.Errorf("get(ha) = %p, want %p", got, a)
	}
	if got := tab.get(hb); got != b {
		t.Errorf("get(hb) = %p, want %p", got, b)
	}
	tab.remove(ha)
	if got := tab.get(ha); got != nil {
		t.Errorf("get of a removed handle = %p, want nil", got)
	}
	if got := tab.get(hb); got != b {
		t.Errorf("removing ha lost hb: get(hb) = %p", got)
	}
	if got := tab.get(hb + 1000); got != nil { // a slot never handed out
		t.Errorf("get of an unknown slot = %p, want nil", got)
	}
}

// The tag in the top bits names the table: go_log takes any handle and
// must find it in its own table only.
func TestHandleTableTags(t *testing.T) {
	reqs := handleTable[int]{tag: tagASGIRequest}
	apps := handleTable[int]{tag: tagASGIApp}
	x, y := new(int), new(int)
	hr, ha := reqs.add(x), apps.add(y)
	if handleTag(hr) != tagASGIRequest || handleTag(ha) != tagASGIApp {
		t.Fatalf("tags %d, %d; want %d, %d", handleTag(hr), handleTag(ha), tagASGIRequest, tagASGIApp)
	}
	// Same slot and generation in both tables: only the tag differs.
	if hr&^(uintptr(0xff)<<tagShift) != ha&^(uintptr(0xff)<<tagShift) {
		t.Fatalf("first handles differ beyond the tag: %#x, %#x", hr, ha)
	}
	if got := apps.get(hr); got != nil {
		t.Errorf("the app table took a request handle: %p", got)
	}
	if got := reqs.get(ha); got != nil {
		t.Errorf("the request table took an app handle: %p", got)
	}
	if reqs.get(hr) != x || apps.get(ha) != y {
		t.Error("own handles not found")
	}
}

// A removed slot is reused with a new generation: the stale handle (kept
// by a thread the app started, say) finds nothing, and removing it again
// does not drop the new object.
func TestHandleTableReuseAfterRemove(t *testing.T) {
	tab := handleTable[int]{tag: tagASGIRequest}
	old := new(int)
	hOld := tab.add(old)
	tab.remove(hOld)
	fresh := new(int)
	hNew := tab.add(fresh)
	if hNew&slotMask != hOld&slotMask {
		t.Fatalf("slot not reused: %#x then %#x", hOld, hNew)
	}
	if hNew == hOld {
		t.Fatalf("reused slot kept its generation: %#x", hNew)
	}
	if got := tab.get(hOld); got != nil {
		t.Errorf("stale handle found %p (the new object is %p)", got, fresh)
	}
	tab.remove(hOld) // stale: must not remove fresh
	if got := tab.get(hNew); got != fresh {
		t.Errorf("a stale remove dropped the slot's new object: get = %p", got)
	}
	if n := len(tab.free); n != 0 {
		t.Errorf("stale remove freed the slot again: %d free", n)
	}
	tab.remove(hNew)
	tab.remove(hNew) // twice: the slot must be on the free list once
	if n := len(tab.free); n != 1 {
		t.Errorf("double remove: %d free slots, want 1", n)
	}
}

// Concurrent add, get and remove (the race detector watches): every
// goroutine finds its own objects and only those.
func TestHandleTableConcurrent(t *testing.T) {
	tab := handleTable[int]{tag: tagASGIRequest}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				v := new(int)
				h := tab.add(v)
				if tab.get(h) != v {
					errs <- "get after add found another object"
					return
				}
				tab.remove(h)
				if tab.get(h) != nil {
					errs <- "get after remove found an object"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
