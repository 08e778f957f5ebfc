//go:build linux

package main

import (
	"strconv"
	"strings"
)

// The heap's first touch. Every page of memory the Go heap uses for the
// first time costs a page fault, and in some virtual machines a fault
// costs far more than on bare metal: 12 us for a 4 KiB page on the
// Firecracker VM of the 2026-12-06 measurements (bench/README.md; AWS
// Lambda runs on Firecracker), against 0.25 us per 4 KiB with 2 MiB
// pages. A rewrap run's heap grows to some 40 MiB (its collector is
// given room: gc.go), 10,000 faults there: 0.15 s of a 750-object run's
// 0.78 s of CPU.
//
// Linux backs anonymous memory with 2 MiB pages (transparent huge pages)
// when /sys/kernel/mm/transparent_hugepage/enabled is "always", or when
// it is "madvise", the default of many distributions, and the memory was
// advised MADV_HUGEPAGE. The Go runtime does not advise its heap (since
// Go 1.21.1: golang/go#61718, #63334), so under "madvise" the heap gets
// 4 KiB pages. reserveHeap therefore makes the heap's next heapReserve
// bytes one block, advised: it allocates them (which maps them, fresh
// from the system, without touching them), advises them MADV_HUGEPAGE
// and frees them with a collection. The page allocator cuts spans from
// the lowest free addresses, so the heap fills the block before it maps
// anything more; a heap larger than the block (a re-encryption's part
// buffers) grows with 4 KiB pages beyond it, as before.
//
// The costs, which are why the runtime stopped advising its heap, are
// bounded by the block's size here:
//   - memory: a 2 MiB page is resident as a whole once any of it is
//     touched, and the kernel (khugepaged) may make a sparsely used one
//     whole again, so a process may hold up to heapReserve more than it
//     would. Measured: 1-4 MiB more peak RSS at 32 objects in flight, 19
//     MiB at 512.
//   - stalls: with the kernel's default defrag setting, a fault in
//     advised memory may compact memory to find a free 2 MiB page; there
//     are at most heapReserve / 2 MiB = 32 such faults.
//
// ROTATOR_HUGEPAGES=off, GODEBUG disablethp=1 (Go's switch for keeping
// huge pages off the heap) or GOMEMLIMIT (a limit the block would count
// against) turn it off.
const heapReserve = 64 << 20

// envHugePages, set to "off", turns reserveHeap off.
const envHugePages = "ROTATOR_HUGEPAGES"

// thpMode is the selected value of a transparent_hugepage/enabled file
// ("always [madvise] never" -> "madvise"), or "".
func thpMode(file string) string {
	for f := range strings.FieldsSeq(file) {
		if len(f) > 2 && f[0] == '[' && f[len(f)-1] == ']' {
			return f[1 : len(f)-1]
		}
	}
	return ""
}

// thpDisabled says whether a GODEBUG value turns disablethp on, as the
// runtime reads it: the last setting of the name wins, and any integer
// but 0 is on.
func thpDisabled(godebug string) bool {
	off := false
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "disablethp" {
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				off = n != 0
			}
		}
	}
	return off
}

// wantHugeHeap says whether reserveHeap should advise the heap: only
// where the system gives huge pages to advised memory alone, and the
// environment (envHugePages, GODEBUG, GOMEMLIMIT) does not say otherwise.
func wantHugeHeap(mode, optOut, godebug, memlimit string) bool {
	return mode == "madvise" && optOut != "off" && !thpDisabled(godebug) && memlimit == ""
}
