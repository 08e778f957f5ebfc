package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// Profiling for performance work (bench/README.md), hidden from the
// usage: with ROTATOR_CPUPROFILE=FILE the whole command runs under the CPU
// profiler; with ROTATOR_MEMPROFILE=FILE an allocation profile (every
// allocation since the start, sampled as the runtime does by default) is
// written when it ends; with ROTATOR_TRACE=FILE an execution trace (go
// tool trace: where each goroutine waited, the start of a run included)
// is written. (For the goroutines' stacks mid-run, send the
// process SIGQUIT: the runtime prints them all on stderr and exits.)
const (
	envCPUProfile = "ROTATOR_CPUPROFILE"
	envMemProfile = "ROTATOR_MEMPROFILE"
	envTrace      = "ROTATOR_TRACE"
)

// startProfiles starts what the environment asks for and returns the
// function that stops it and writes the profiles.
func startProfiles(stderr io.Writer) func() {
	var stops []func()
	// recording starts a recorder writing to the file the environment
	// variable env names, if it names one, and keeps its stop.
	recording := func(env string, start func(io.Writer) error, stop func()) {
		path := os.Getenv(env)
		if path == "" {
			return
		}
		f, err := os.Create(path)
		if err == nil {
			if err = start(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "rotator: warning: %s: %v\n", env, err)
			return
		}
		stops = append(stops, func() { stop(); f.Close() })
	}
	recording(envCPUProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
	recording(envTrace, trace.Start, trace.Stop)
	if path := os.Getenv(envMemProfile); path != "" {
		stops = append(stops, func() {
			f, err := os.Create(path)
			if err == nil {
				runtime.GC()
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				fmt.Fprintf(stderr, "rotator: warning: %s: %v\n", envMemProfile, err)
			}
		})
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// noMemProfile turns the runtime's allocation sampling off unless
// ROTATOR_MEMPROFILE asks for the profile it feeds. The runtime samples an
// allocation every 512 KiB by default in any program that links
// runtime/pprof (this one does, for the profiles above), recording its
// stack each time: with the SDK allocating some 160 KiB per object, a
// stack walk every three objects, 1 to 2% of a rewrap run's CPU.
func noMemProfile() {
	if os.Getenv(envMemProfile) == "" {
		runtime.MemProfileRate = 0
	}
}
