//go:build linux

package main

import "strings"

// The heap's first touch. Every page of memory the Go heap uses for the
// first time costs a page fault, and in some virtual machines a fault
// costs far more than on bare metal: 12 us for a 4 KiB page on the
// Firecracker VM of the 2026-12-06 measurements (bench/README.md), the
// hypervisor that AWS Fargate and Lambda run on, against 0.25 us per
// 4 KiB with 2 MiB pages. A rewrap run's heap grows to some 40 MiB (its
// collector is given room: gc.go), 10,000 faults; on that VM they were a
// quarter of a 750-object run's CPU.
//
// Linux backs anonymous memory with 2 MiB pages (transparent huge pages)
// when /sys/kernel/mm/transparent_hugepage/enabled is "always", or when
// it is "madvise", the default of many distributions, and the memory was
// advised MADV_HUGEPAGE. The Go runtime does not advise its heap (since
// Go 1.21.1), so under "madvise" the heap gets 4 KiB pages. reserveHeap
// therefore makes the heap's next growth one large block, advised: it
// allocates heapReserve bytes (which maps them, fresh from the system,
// without touching them) and advises them MADV_HUGEPAGE, then lets them
// go. The next collection frees the block, and the heap's spans are cut
// from it, lowest addresses first, before the heap maps anything more.
//
// Nothing is resident until touched, so the reservation costs no memory;
// a 2 MiB page is resident as a whole once any of it is touched, which
// measured as no difference in peak RSS (72 MiB either way at 750
// objects). A heap larger than the reservation (a re-encryption's part
// buffers) grows with 4 KiB pages beyond it, as before. GODEBUG
// disablethp=1, Go's switch for keeping huge pages off the heap, and
// GOMEMLIMIT (a limit the reservation would count against) turn this
// off.
const heapReserve = 64 << 20

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

// thpDisabled says whether a GODEBUG value sets disablethp=1 (the last
// setting of a name wins, as in the runtime).
func thpDisabled(godebug string) bool {
	off := false
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == "disablethp" {
			off = v == "1"
		}
	}
	return off
}

// wantHugeHeap says whether reserveHeap should advise the heap: only
// where the system gives huge pages to advised memory alone, and the
// environment does not say otherwise.
func wantHugeHeap(mode, godebug, memlimit string) bool {
	return mode == "madvise" && !thpDisabled(godebug) && memlimit == ""
}
