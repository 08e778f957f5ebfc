package ledger

import "syscall"

const canDropMapped = true

// dropMapped tells the kernel the process no longer needs the pages of the
// shared read-only file map at [addr, addr+n): they leave its resident set
// and are read again from the page cache when touched.
func dropMapped(addr, n uintptr) {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, addr, n, syscall.MADV_DONTNEED)
}
