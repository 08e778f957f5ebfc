package main

import (
	"os"
	"runtime"
	"syscall"
)

const thpEnabledFile = "/sys/kernel/mm/transparent_hugepage/enabled"

// reserveHeap advises the heap's next heapReserve bytes for huge pages
// (see heapReserve), when the system and the environment allow it.
func reserveHeap() {
	mode, err := os.ReadFile(thpEnabledFile)
	if err != nil || !wantHugeHeap(thpMode(string(mode)), os.Getenv("GODEBUG"), os.Getenv("GOMEMLIMIT")) {
		return
	}
	if adviseHuge(heapReserve) != nil {
		// Free the block now, so that the heap's spans are cut from it
		// from the start: left to the pacer, the collection that its
		// allocation set off would find it still in use, and the heap
		// would grow past it, in 4 KiB pages, before the next one.
		runtime.GC()
	}
}

// adviseHuge allocates n bytes of heap, advises them MADV_HUGEPAGE and
// returns them (nil if the kernel refused the advice). The caller lets
// them go; only the test keeps them.
func adviseHuge(n int) []byte {
	b := make([]byte, n)
	if syscall.Madvise(b, syscall.MADV_HUGEPAGE) != nil {
		return nil
	}
	return b
}
