package nethttp

import (
	"math/rand"
	"testing"
	"unicode/utf8"
)

// utf8Stream must agree with utf8.Valid however the bytes are split, and
// fail at the first piece that cannot lead to valid UTF-8.
func TestUTF8StreamAgreesWithValid(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	alphabet := []byte{'a', 0x80, 0xBF, 0xC0, 0xC2, 0xCE, 0xBA, 0xE0, 0xA0, 0xED, 0x9F, 0xF0, 0x90, 0xF4, 0x8F, 0xF5, 0xFF}
	for i := 0; i < 20000; i++ {
		msg := make([]byte, rng.Intn(12))
		for j := range msg {
			if rng.Intn(3) == 0 {
				msg[j] = byte(rng.Intn(256))
			} else {
				msg[j] = alphabet[rng.Intn(len(alphabet))]
			}
		}
		var u utf8Stream
		ok := true
		for rest := msg; len(rest) > 0 && ok; {
			n := 1 + rng.Intn(len(rest))
			ok = u.write(rest[:n])
			rest = rest[n:]
		}
		got := ok && u.complete()
		if got != utf8.Valid(msg) {
			t.Fatalf("%x: stream says %v, utf8.Valid %v", msg, got, !got)
		}
	}
}

func TestUTF8StreamFailsFast(t *testing.T) {
	for _, prefix := range [][]byte{{0xF4, 0x90}, {0xED, 0xA0}, {0xE0, 0x80}, {0xC0}, {0xF5}, {'a', 0x80}} {
		var u utf8Stream
		if u.write(prefix) {
			t.Errorf("%x: accepted a prefix no valid UTF-8 starts with", prefix)
		}
	}
	var u utf8Stream
	if !u.write([]byte{'a', 0xF0, 0x9F}) || u.complete() {
		t.Fatal("a valid incomplete prefix must be accepted and left incomplete")
	}
	if !u.write([]byte{0x98, 0x80}) || !u.complete() {
		t.Fatal("completing the sequence must make it complete")
	}
}
