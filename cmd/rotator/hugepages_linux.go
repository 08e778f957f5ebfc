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
	if err != nil || !wantHugeHeap(thpMode(string(mode)), os.Getenv(envHugePages), os.Getenv("GODEBUG"), os.Getenv("GOMEMLIMIT")) {
		return
	}
	// A kernel that refuses the advice leaves the heap as it was.
	_ = syscall.Madvise(make([]byte, heapReserve), syscall.MADV_HUGEPAGE)
	// Free the block now, advised or not: the collection its allocation
	// set off may have found it still in use, and the next would come
	// only after the heap had grown past it.
	runtime.GC()
}
