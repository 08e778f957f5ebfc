//go:build linux

package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestTHPMode(t *testing.T) {
	for file, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]\n": "never",
		"always madvise never\n":   "",
		"":                         "",
		"[]\n":                     "",
	} {
		if got := thpMode(file); got != want {
			t.Errorf("thpMode(%q) = %q, want %q", file, got, want)
		}
	}
}

func TestWantHugeHeap(t *testing.T) {
	for _, c := range []struct {
		mode, godebug, memlimit string
		want                    bool
	}{
		{"madvise", "", "", true},
		{"madvise", "gctrace=1", "", true},
		{"madvise", "disablethp=0", "", true},
		{"madvise", "disablethp=1", "", false},
		{"madvise", "gctrace=1, disablethp=1", "", false},
		{"madvise", "disablethp=1,disablethp=0", "", true},
		{"madvise", "", "200MiB", false},
		{"always", "", "", false}, // the heap has huge pages already
		{"never", "", "", false},
		{"", "", "", false},
	} {
		if got := wantHugeHeap(c.mode, c.godebug, c.memlimit); got != c.want {
			t.Errorf("wantHugeHeap(%q, %q, %q) = %v, want %v", c.mode, c.godebug, c.memlimit, got, c.want)
		}
	}
}

// TestAdviseHugeMarksTheHeap: the block adviseHuge returns lies in a
// mapping the kernel flags for huge pages ("hg" in /proc/self/smaps), and
// advising it made none of it resident.
func TestAdviseHugeMarksTheHeap(t *testing.T) {
	const n = heapReserve
	b := adviseHuge(n)
	if b == nil {
		t.Fatal("the kernel refused MADV_HUGEPAGE on heap memory")
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	flags, rss := vmaOf(t, lo)
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("the mapping holding the advised block has VmFlags %q, without hg", flags)
	}
	if rss >= n/1024/2 {
		t.Errorf("the mapping holding the untouched %d KiB block has %d KiB resident", n/1024, rss)
	}
}

// vmaOf returns the VmFlags and the Rss (KiB) of the mapping of
// /proc/self/smaps that holds addr.
func vmaOf(t *testing.T, addr uintptr) (flags string, rssKiB int) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	found := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if rng, _, ok := strings.Cut(line, " "); ok && strings.Contains(rng, "-") && !strings.HasSuffix(rng, ":") {
			a, b, _ := strings.Cut(rng, "-")
			lo, err1 := strconv.ParseUint(a, 16, 64)
			hi, err2 := strconv.ParseUint(b, 16, 64)
			in = err1 == nil && err2 == nil && uint64(addr) >= lo && uint64(addr) < hi
			found = found || in
			continue
		}
		if !in {
			continue
		}
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			flags = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok {
			rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("no mapping of /proc/self/smaps holds %#x", addr)
	}
	return flags, rssKiB
}
