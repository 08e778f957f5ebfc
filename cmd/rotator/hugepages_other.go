//go:build !linux

package main

// reserveHeap does nothing: transparent huge pages are Linux's.
func reserveHeap() {}
