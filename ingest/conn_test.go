package ingest

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps a connection in the 288-byte size class: a node
// holds one for every tracker, idle or not (BENCHMARKS.md, section c),
// and the next class up is 320 bytes. A field added to conn or protocol
// has to pay for itself, or this fails.
func TestConnSize(t *testing.T) {
	const sizeClass = 288
	if got := unsafe.Sizeof(conn{}); got > sizeClass {
		t.Errorf("conn is %d bytes (protocol %d), over its %d-byte size class", got, unsafe.Sizeof(protocol{}), sizeClass)
	}
}
