//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
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
		mode, optOut, godebug, memlimit string
		want                            bool
	}{
		{"madvise", "", "", "", true},
		{"madvise", "on", "gctrace=1", "", true},
		{"madvise", "off", "", "", false},
		{"madvise", "", "disablethp=0", "", true},
		{"madvise", "", "disablethp=1", "", false},
		{"madvise", "", "disablethp=2", "", false}, // the runtime: any integer but 0
		{"madvise", "", "gctrace=1,disablethp=1", "", false},
		{"madvise", "", "disablethp=1,disablethp=0", "", true}, // the last wins
		{"madvise", "", "disablethp=yes", "", true},            // not an integer: ignored
		{"madvise", "", "", "200MiB", false},
		{"always", "", "", "", false}, // the heap has huge pages already
		{"never", "", "", "", false},
		{"", "", "", "", false},
	} {
		if got := wantHugeHeap(c.mode, c.optOut, c.godebug, c.memlimit); got != c.want {
			t.Errorf("wantHugeHeap(%q, %q, %q, %q) = %v, want %v", c.mode, c.optOut, c.godebug, c.memlimit, got, c.want)
		}
	}
}

// hugeHeapProbe is what TestReserveHeapAdvisesTheHeap measures in a
// fresh process: it starts as main does, fills 16 MiB of heap with small
// objects, and says how many of them lie in mappings advised for huge
// pages, and how much of those mappings the kernel backs with them.
type hugeHeapProbe struct {
	Objects     int `json:"objects"`
	InAdvised   int `json:"in_advised"`
	AnonHugeKiB int `json:"anon_huge_kib"`
}

func init() {
	probes["hugeheap"] = func() {
		setUp()
		objs := make([]*[4096]byte, 4096)
		for i := range objs {
			objs[i] = new([4096]byte)
			objs[i][0] = 1
		}
		maps, err := smaps()
		if err != nil {
			panic(err)
		}
		res := hugeHeapProbe{Objects: len(objs)}
		counted := map[int]bool{}
		for _, o := range objs {
			addr := uint64(uintptr(unsafe.Pointer(o)))
			for i, m := range maps {
				if addr < m.lo || addr >= m.hi {
					continue
				}
				if m.advised {
					res.InAdvised++
					if !counted[i] {
						res.AnonHugeKiB += m.anonHugeKiB
						counted[i] = true
					}
				}
				break
			}
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			panic(err)
		}
	}
}

// TestReserveHeapAdvisesTheHeap: under THP "madvise", a process started
// as main starts has most of its heap in memory advised for huge pages,
// and backed by them; ROTATOR_HUGEPAGES=off, or any other THP mode,
// leaves the heap unadvised.
func TestReserveHeapAdvisesTheHeap(t *testing.T) {
	file, err := os.ReadFile(thpEnabledFile)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("this kernel has no transparent huge pages")
	}
	if err != nil {
		t.Fatal(err)
	}
	mode := thpMode(string(file))
	probe := func(env ...string) hugeHeapProbe {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "GODEBUG" && k != "GOMEMLIMIT" && k != "GOGC" && k != envHugePages {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, append(env, envProbe+"=hugeheap")...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("probe %v: %v (%s)", env, err, out)
		}
		var p hugeHeapProbe
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("probe %v: %v in %q", env, err, out)
		}
		t.Logf("THP %s, %v: %+v", mode, env, p)
		return p
	}
	got := probe()
	if mode == "madvise" {
		if got.InAdvised < got.Objects/2 {
			t.Errorf("%d of %d heap objects lie in memory advised for huge pages, want at least half", got.InAdvised, got.Objects)
		}
		if got.AnonHugeKiB == 0 {
			t.Errorf("no huge page backs the advised heap")
		}
	} else if got.InAdvised != 0 {
		t.Errorf("THP mode %q: %d heap objects lie in advised memory, want none", mode, got.InAdvised)
	}
	if off := probe(envHugePages + "=off"); off.InAdvised != 0 {
		t.Errorf("%s=off: %d heap objects lie in advised memory, want none", envHugePages, off.InAdvised)
	}
}

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	lo, hi      uint64
	advised     bool // VmFlags hg: MADV_HUGEPAGE
	anonHugeKiB int
}

func smaps() ([]mapping, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var maps []mapping
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok && len(maps) > 0 {
			maps[len(maps)-1].advised = strings.Contains(v+" ", " hg ")
			continue
		}
		if v, ok := strings.CutPrefix(line, "AnonHugePages:"); ok && len(maps) > 0 {
			maps[len(maps)-1].anonHugeKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			continue
		}
		// A mapping's first line: "lo-hi perms offset dev inode [path]".
		rng, _, _ := strings.Cut(line, " ")
		a, b, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(a, 16, 64)
		hi, err2 := strconv.ParseUint(b, 16, 64)
		if err1 == nil && err2 == nil {
			maps = append(maps, mapping{lo: lo, hi: hi})
		}
	}
	return maps, s.Err()
}
