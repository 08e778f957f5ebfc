package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rotator-dev/rotator/pipeline"
)

// progressUI prints a progress bar with rate and ETA on a terminal, JSON
// lines with --json, or nothing (output redirected, --no-progress).
type progressUI struct {
	json   bool
	bar    bool
	stdout io.Writer
	stderr io.Writer
	stats  *pipeline.Stats
	verb   string // what a success did: "rewrapped" or "re-encrypted"
	mu     sync.Mutex
	began  time.Time
}

func newProgressUI(o outputFlags, stdout, stderr io.Writer, s *pipeline.Stats) *progressUI {
	return &progressUI{json: o.json, bar: !o.json && !o.noProgress && isTerminal(stderr), stdout: stdout, stderr: stderr, stats: s, verb: "rewrapped"}
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// emit writes one JSON line.
func (u *progressUI) emit(v map[string]any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b, _ := json.Marshal(v)
	fmt.Fprintf(u.stdout, "%s\n", b)
}

func (u *progressUI) note(msg string) {
	if u.json {
		u.emit(map[string]any{"message_type": "note", "message": msg})
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.stderr, "\nrotator: %s\n", msg)
}

// outcome is called for every object.
func (u *progressUI) outcome(o pipeline.Outcome) {
	if o.Status != pipeline.StatusFailed && o.Status != pipeline.StatusChanged {
		return
	}
	if u.json {
		u.emit(map[string]any{"message_type": "error", "bucket": o.Bucket, "key": o.Key, "version_id": o.VersionID,
			"status": o.Status, "error_code": o.ErrorCode, "message": o.Message})
	}
}

// start prints progress every second until the returned function is called.
func (u *progressUI) start() func() {
	u.began = time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if u.bar || u.json {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					u.tick()
				case <-done:
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
		if u.bar {
			u.tick()
			fmt.Fprintln(u.stderr)
		}
	}
}

func (u *progressUI) tick() {
	s := u.stats
	done, listed := s.Done.Load(), s.Listed.Load()
	el := time.Since(u.began).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := ""
	if s.ListingDone.Load() && rate > 0 {
		eta = time.Duration(float64(listed-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	if u.json {
		m := map[string]any{"message_type": "status", "seconds_elapsed": int64(el), "objects_listed": listed,
			"objects_done": done, "objects_per_second": rate, "listing_done": s.ListingDone.Load()}
		for k, v := range s.Counts() {
			m[k] = v
		}
		if eta != "" {
			m["eta"] = eta
		}
		u.emit(m)
		return
	}
	width := 30
	fill := 0
	total := fmt.Sprintf("%d+", listed)
	if s.ListingDone.Load() && listed > 0 {
		fill = int(float64(width) * float64(done) / float64(listed))
		total = fmt.Sprint(listed)
	}
	if eta == "" {
		eta = "?"
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.stderr, "\r[%s%s] %d/%s objects  %.0f/s  ETA %s  ok %d  skipped %d  failed %d  changed %d ",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total, rate, eta,
		s.Succeeded.Load(), s.Skipped.Load(), s.Failed.Load(), s.Changed.Load())
}

// summary prints the run's result.
func (u *progressUI) summary(runID, report string, took time.Duration, err error) {
	s := u.stats
	if u.json {
		m := map[string]any{"message_type": "summary", "run_id": runID, "report": report,
			"seconds_elapsed": took.Seconds()}
		for k, v := range s.Counts() {
			m[k] = v
		}
		if err != nil {
			m["error"] = err.Error()
		}
		u.emit(m)
		return
	}
	fmt.Fprintf(u.stdout, "run %s: %d objects in %s: %d %s, %d skipped, %d pending, %d failed, %d changed by others",
		runID, s.Done.Load(), took.Round(time.Millisecond), s.Succeeded.Load()-s.Deleted.Load(), u.verb, s.Skipped.Load(), s.Pending.Load(),
		s.Failed.Load(), s.Changed.Load())
	if n := s.Deleted.Load(); n > 0 {
		fmt.Fprintf(u.stdout, ", %d older versions deleted", n)
	}
	if n := s.Left.Load(); n > 0 {
		fmt.Fprintf(u.stdout, ", %d older versions under a --from key left", n)
	}
	if n := s.Unfinished.Load(); n > 0 {
		fmt.Fprintf(u.stdout, ", %d unfinished", n)
	}
	fmt.Fprintf(u.stdout, "\nreport: %s\n", report)
}
