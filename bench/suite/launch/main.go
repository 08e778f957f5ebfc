// Command launch runs a command and writes its wall time and rusage (user
// and system CPU time, peak RSS) as JSON to a file, then exits as the
// command did. The suite starts every measured process through it.
//
//	launch FILE COMMAND [ARG]...
//
// It exists because Linux carries the peak RSS of the process that forks
// across exec: a child's maxrss starts at the high-water mark of its
// parent's memory (Go forks with CLONE_VM), so a process started by the
// suite itself, which holds seed data, would report the suite's peak
// instead of its own. This program imports little and stays at a few MiB,
// which is then the least any measured process can report (the suite
// measures that floor once and prints it).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: launch FILE COMMAND [ARG]...")
		os.Exit(2)
	}
	c := exec.Command(os.Args[2], os.Args[3:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := c.Run()
	u := struct {
		WallS     float64 `json:"wall_s"`
		UserS     float64 `json:"user_s"`
		SysS      float64 `json:"sys_s"`
		MaxRSSKiB int64   `json:"max_rss_kib"`
	}{WallS: time.Since(start).Seconds()}
	if c.ProcessState != nil {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			u.UserS = time.Duration(ru.Utime.Nano()).Seconds()
			u.SysS = time.Duration(ru.Stime.Nano()).Seconds()
			u.MaxRSSKiB = ru.Maxrss // KiB on Linux
		}
	}
	b, _ := json.Marshal(u)
	if werr := os.WriteFile(os.Args[1], b, 0o600); werr != nil {
		fmt.Fprintln(os.Stderr, "launch:", werr)
		os.Exit(1)
	}
	if err != nil {
		if c.ProcessState != nil {
			os.Exit(max(c.ProcessState.ExitCode(), 1))
		}
		fmt.Fprintln(os.Stderr, "launch:", err)
		os.Exit(1)
	}
}
