//go:build !linux

package ledger

const canDropMapped = false

func dropMapped(addr, n uintptr) {}
