package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

func holds(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func rng(agg, lo, hi float64, unit string) string {
	if lo == hi || math.IsInf(lo, 0) {
		return fmt.Sprintf("%.2f%s", agg, unit)
	}
	return fmt.Sprintf("%.2f%s (%.2f-%.2f)", agg, unit, lo, hi)
}

// table turns the runs into the rows of the figures.
func (s *suite) table() {
	add := func(r Row) { s.res.Rows = append(s.res.Rows, r) }
	runs := s.res.Runs
	conc := s.o.Conc
	s.res.Rows = nil
	for _, set := range []struct {
		sc, label string
		n         int
		size      int64
		goalOff   float64
	}{{"rewrap-small", "", s.o.SmallN, s.o.SmallSize, 7}, {"rewrap-large", "", s.o.LargeN, s.o.LargeSize, 60}} {
		all := runs[set.sc]
		if len(all) == 0 {
			continue
		}
		rot, bare, off := pick(all, "rotator run (rewrap)"), pick(all, "bare loop"), pick(all, "official")
		what := fmt.Sprintf("%s x %s, %d in flight", fmtInt(set.n), human(set.size), conc)
		agg, lo, hi := ratioRange(rot, bare)
		goal, ok := "", ""
		if set.sc == "rewrap-small" {
			goal, ok = ">= 0.8", holds(agg >= 0.8)
		}
		add(Row{"rewrap / bare loop (HEAD, ReEncrypt, conditional self-copy), " + what,
			fmt.Sprintf("%.0f objects/s", rateOf(rot)), fmt.Sprintf("%.0f objects/s", rateOf(bare)), rng(agg, lo, hi, ""), goal, ok})
		agg, lo, hi = ratioRange(rot, off)
		add(Row{"rewrap / official v4.0.0 GetObject + PutObject, " + what,
			fmt.Sprintf("%.0f objects/s", rateOf(rot)), fmt.Sprintf("%.1f objects/s", rateOf(off)), rng(agg, lo, hi, "x"),
			fmt.Sprintf(">= %.0fx", set.goalOff), holds(agg >= set.goalOff)})
		// The ceiling of the row above: what the irreducible calls alone
		// reach against the official client on this stack. A goal above
		// it asks rotator to beat the bare loop.
		agg, lo, hi = ratioRange(bare, off)
		add(Row{"the ceiling: bare loop / official v4.0.0 GetObject + PutObject, " + what,
			fmt.Sprintf("%.0f objects/s", rateOf(bare)), fmt.Sprintf("%.1f objects/s", rateOf(off)), rng(agg, lo, hi, "x"), "", ""})
		if set.sc == "rewrap-small" {
			cr, cb := cpuOf(rot), cpuOf(bare)
			add(Row{"CPU per rewrapped object (user+sys of the process), " + what,
				fmt.Sprintf("%.3f ms", cr), fmt.Sprintf("%.3f ms", cb), fmt.Sprintf("%.2fx", cr/cb), "<= 1.1x", holds(cr/cb <= 1.1)})
			re := pick(all, "rotator run --mode reencrypt")
			if len(re) > 0 {
				agg, lo, hi = ratioRange(re, off)
				add(Row{"--mode reencrypt / official copy, " + what + ": throughput",
					fmt.Sprintf("%.1f MB/s", rateOf(re)*float64(set.size)/1e6), fmt.Sprintf("%.1f MB/s", rateOf(off)*float64(set.size)/1e6),
					rng(agg, lo, hi, "x"), "", ""})
				add(Row{"--mode reencrypt / official copy, " + what + ": peak RSS",
					fmt.Sprintf("%.0f MiB", maxRSS(re)), fmt.Sprintf("%.0f MiB", maxRSS(off)), fmt.Sprintf("%.2fx", maxRSS(re)/maxRSS(off)), "", ""})
			}
		}
	}
	if big := runs["big"]; len(big) > 0 {
		re, off := pick(big, "rotator"), pick(big, "official v4.0.0 GetObject + PutObject")
		if len(re) > 0 && len(off) > 0 {
			add(Row{fmt.Sprintf("--mode reencrypt / official copy, one %s object: throughput", human(s.o.BigSize)),
				fmt.Sprintf("%.0f MB/s", re[0].mbps()), fmt.Sprintf("%.0f MB/s", off[0].mbps()), fmt.Sprintf("%.2fx", re[0].mbps()/off[0].mbps()), "", ""})
			add(Row{fmt.Sprintf("--mode reencrypt / official copy, one %s object: peak RSS", human(s.o.BigSize)),
				fmt.Sprintf("%.0f MiB", re[0].rssMiB()), fmt.Sprintf("%.0f MiB", off[0].rssMiB()), fmt.Sprintf("%.3fx", re[0].rssMiB()/off[0].rssMiB()), "", ""})
		}
	}
	if h := runs["hsm"]; len(h) > 0 {
		rot, bare := pick(h, "rotator"), pick(h, "bare")
		agg, lo, hi := ratioRange(rot, bare)
		add(Row{fmt.Sprintf("KMS -> HSM (SoftHSM) / bare loop, %d goroutines each with its own PKCS#11 session; %d in flight, --hsm-sessions %d", conc, conc, conc),
			fmt.Sprintf("%.0f objects/s", rateOf(rot)), fmt.Sprintf("%.0f objects/s", rateOf(bare)), rng(agg, lo, hi, ""), "", ""})
	}
	if c, ok := s.res.Figures["cap"].(map[string]any); ok {
		add(Row{fmt.Sprintf("rewraps under a KMS cap of %.0f requests/s (-rps; rotator without --kms-rps): achieved rate / cap", s.o.CapRPS),
			fmt.Sprintf("%.0f objects/s", c["objects_per_s"]), fmt.Sprintf("%.0f/s", s.o.CapRPS), fmt.Sprintf("%.2f", c["fraction_of_cap"]), "", ""})
		add(Row{"the same: throttle errors / ReEncrypt requests",
			fmt.Sprintf("%v of %v", c["throttled"], c["reencrypt_requests"]), "", fmt.Sprintf("%.1f%%", 100*c["throttle_rate"].(float64)), "", ""})
	}
	if pts := s.res.Scale; len(pts) > 0 {
		var rss, rate, cpu, lb, lw []string
		for _, p := range pts {
			rss = append(rss, fmt.Sprintf("%.0f", p.PeakRSSMiB))
			rate = append(rate, fmt.Sprintf("%.0f", p.ObjectsPerS))
			cpu = append(cpu, fmt.Sprintf("%.2f", p.CPUPerObjMS))
			lb = append(lb, fmt.Sprintf("%.0f", p.LedgerBytes))
			lw = append(lw, fmt.Sprintf("%.2f", p.LedgerWrites))
		}
		counts := make([]string, len(pts))
		for i, p := range pts {
			counts[i] = fmtInt(p.Objects)
		}
		first, last := pts[0], pts[len(pts)-1]
		cs := strings.Join(counts, " / ")
		add(Row{"peak RSS (MiB), " + cs + " objects of " + human(s.o.TinySize), strings.Join(rss, " / "), "", fmt.Sprintf("%.2fx (last / first)", last.PeakRSSMiB/first.PeakRSSMiB),
			"<= 1.5x", holds(last.PeakRSSMiB/first.PeakRSSMiB <= 1.5)})
		add(Row{"objects/s, " + cs + " objects", strings.Join(rate, " / "), "", "", "", ""})
		if first.BareCPUS > 0 {
			var bcpu []string
			for _, p := range pts {
				bcpu = append(bcpu, fmt.Sprintf("%.2f", p.BareCPUS*1e3/float64(p.Objects)))
			}
			add(Row{"CPU per object (ms), rotator / bare loop, " + cs + " objects (each process's start included)", strings.Join(cpu, " / "), strings.Join(bcpu, " / "), "", "", ""})
		} else {
			add(Row{"CPU per object (ms), " + cs + " objects", strings.Join(cpu, " / "), "", "", "", ""})
		}
		if rm, bm, ok := marginalCPU(first, last); ok {
			add(Row{fmt.Sprintf("CPU per further object (the %s-object runs subtracted from the %s-object runs), rotator / bare loop", fmtInt(first.Objects), fmtInt(last.Objects)),
				fmt.Sprintf("%.3f ms", rm), fmt.Sprintf("%.3f ms", bm), fmt.Sprintf("%.2fx", rm/bm), "<= 1.1x", holds(rm/bm <= 1.1)})
		}
		add(Row{"embedded ledger: bytes of the bolt file per object, " + cs, strings.Join(lb, " / "), "", "", "<= 512", holds(last.LedgerBytes <= 512)})
		add(Row{"embedded ledger: write transactions per object, " + cs, strings.Join(lw, " / "), "", "", "<= 2", holds(last.LedgerWrites <= 2)})
	}
	if d, ok := s.res.Figures["dynamodb"].(map[string]any); ok {
		wpo, bpo := d["writes_per_object"].(float64), d["bytes_per_object"].(float64)
		if wpr, ok := d["writes_per_rewrap"].(float64); ok {
			// The goal is per rewrap (plan's per-object estimate): the
			// writes on the objects' own items. A run also writes a fixed
			// few items of its own, whatever its size.
			add(Row{fmt.Sprintf("DynamoDB ledger: write requests per rewrapped object (PutItem, UpdateItem, DeleteItem on the objects' items), %s objects", fmtInt(s.o.DynamoN)),
				fmt.Sprintf("%.3f", wpr), "", "", "<= 2", holds(wpr <= 2)})
			add(Row{"the run's own writes, whatever its size (run record, lease, registries, journal, checkpoints); all writes per object",
				fmt.Sprintf("%.0f; %.3f", d["run_writes"].(float64), wpo), "", "", "", ""})
		} else {
			add(Row{fmt.Sprintf("DynamoDB ledger: write requests per object (PutItem, UpdateItem, DeleteItem, batch items), %s objects", fmtInt(s.o.DynamoN)),
				fmt.Sprintf("%.2f", wpo), "", "", "<= 2", holds(wpo <= 2)})
		}
		if m, ok := d["marginal_writes_per_object"].(float64); ok {
			add(Row{fmt.Sprintf("all writes per further object (a run of %s objects subtracted) and per run (the rest)", fmtInt(int(d["small_objects"].(float64)))),
				fmt.Sprintf("%.3f per object, %.0f per run", m, d["writes_per_run"].(float64)), "", "", "", ""})
		}
		add(Row{"DynamoDB ledger: item bytes per object (Scan, DynamoDB's size rules)", fmt.Sprintf("%.0f", bpo), "", "", "<= 512", holds(bpo <= 512)})
		if rpo, ok := d["reads_per_object"].(float64); ok {
			// Reads that overlap go in one BatchGetItem: fewer requests
			// than items read (ledger/SCHEMA.md, "Coalesced reads").
			add(Row{"DynamoDB ledger: read requests per object (GetItem, BatchGetItem, Query, Scan)", fmt.Sprintf("%.3f", rpo), "", "", "", ""})
		}
		if d := runs["dynamodb"]; len(d) > 0 {
			row := Row{Figure: "CPU per rewrapped object with the DynamoDB ledger / the bare loop's", Rotator: fmt.Sprintf("%.3f ms", cpuOf(d))}
			if bare := pick(runs["rewrap-small"], "bare"); len(bare) > 0 {
				row.Baseline, row.Ratio = fmt.Sprintf("%.3f ms", cpuOf(bare)), fmt.Sprintf("%.2fx", cpuOf(d)/cpuOf(bare))
			}
			add(row)
		}
	}
	for _, c := range s.o.LatConcs {
		all := s.res.Runs["latency-c"+fmt.Sprint(c)]
		if len(all) == 0 {
			continue
		}
		rot, bare := pick(all, "rotator"), pick(all, "bare")
		agg, lo, hi := ratioRange(rot, bare)
		add(Row{fmt.Sprintf("rewrap / bare loop, KMS answering in %v, %s objects, --concurrency %d", s.o.Latency, fmtInt(s.o.LatN), c),
			fmt.Sprintf("%.0f objects/s", rateOf(rot)), fmt.Sprintf("%.0f objects/s", rateOf(bare)), rng(agg, lo, hi, ""), ">= 0.8", holds(agg >= 0.8)})
	}
}

// marginalCPU is the CPU (ms) of rotator and of the bare loop per object
// of b beyond a: what a further object costs once each process has
// started, warmed its heap and connections, and listed (a run of
// millions of objects is almost all further objects).
func marginalCPU(a, b ScalePoint) (rotMS, bareMS float64, ok bool) {
	dn := float64(b.Objects - a.Objects)
	if dn <= 0 || a.BareCPUS <= 0 || b.BareCPUS <= 0 {
		return 0, 0, false
	}
	rotMS, bareMS = (b.CPUS-a.CPUS)*1e3/dn, (b.BareCPUS-a.BareCPUS)*1e3/dn
	return rotMS, bareMS, rotMS > 0 && bareMS > 0
}

func fmtInt(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// internetScale computes, from this run's CPU per object and ledger
// figures, what rewrapping 1e9 objects in 4 hours would take.
func (s *suite) internetScale() {
	const objects, hours, vcpus, quota = 1e9, 4.0, 4.0, 100000.0
	rate := objects / (hours * 3600)
	// A fleet shares one DynamoDB ledger: its CPU per object is the one
	// that counts; the embedded figure (the larger of the rewrap set's and
	// the largest scale run's) is shown beside it.
	embMS := 0.0
	if rot := pick(s.res.Runs["rewrap-small"], "rotator run (rewrap)"); len(rot) > 0 {
		embMS = cpuOf(rot)
	}
	if pts := s.res.Scale; len(pts) > 0 {
		embMS = max(embMS, pts[len(pts)-1].CPUPerObjMS)
	}
	cpuMS, source := embMS, "embedded ledger"
	if d := s.res.Runs["dynamodb"]; len(d) > 0 {
		cpuMS, source = cpuOf(d), "DynamoDB ledger"
	}
	bareMS := 0.0
	if bare := pick(s.res.Runs["rewrap-small"], "bare"); len(bare) > 0 {
		bareMS = cpuOf(bare)
	}
	m := map[string]any{"objects": objects, "hours": hours, "objects_per_s": rate, "kms_quota_rps": quota,
		"kms_requests_per_s": rate, "kms_quota_fraction": rate / quota, "cpu_ms_per_object": cpuMS, "cpu_measured_with": source, "embedded_cpu_ms_per_object": embMS, "bare_cpu_ms_per_object": bareMS}
	// What a further object costs a DynamoDB worker, its start left out
	// (the two runs' CPU subtracted): a fleet's workers run for hours, so
	// this is what they would spend; the headline keeps the whole run's.
	furtherMS := 0.0
	if big, small := s.res.Runs["dynamodb"], s.res.Runs["dynamodb-small"]; len(big) == 1 && len(small) == 1 && big[0].Objects > small[0].Objects {
		furtherMS = (big[0].UserS + big[0].SysS - small[0].UserS - small[0].SysS) * 1e3 / float64(big[0].Objects-small[0].Objects)
	}
	if cpuMS > 0 {
		cores := rate * cpuMS / 1e3
		m["vcpus"] = cores
		m["workers_4vcpu"] = math.Ceil(cores / vcpus)
		m["workers_4vcpu_at_75pct"] = math.Ceil(cores / (vcpus * 0.75))
		m["workers_4vcpu_bare"] = math.Ceil(rate * bareMS / 1e3 / vcpus)
		m["workers_4vcpu_embedded_cpu"] = math.Ceil(rate * embMS / 1e3 / vcpus)
		if furtherMS > 0 {
			m["ddb_further_cpu_ms_per_object"] = furtherMS
			m["workers_4vcpu_ddb_further"] = math.Ceil(rate * furtherMS / 1e3 / vcpus)
		}
	}
	if d, ok := s.res.Figures["dynamodb"].(map[string]any); ok {
		w, b := d["writes_per_object"].(float64), d["bytes_per_object"].(float64)
		if mw, ok := d["marginal_writes_per_object"].(float64); ok && mw > 0 {
			// 1e9 objects: a run's own writes weigh nothing there.
			w = mw
		}
		wpo := 0.0
		if w > 0 {
			// Each write costs one unit per started KB of its item; spread
			// the bytes evenly over the writes (the best case per write).
			wpo = w * math.Ceil(b/w/1024)
		}
		m["ddb_writes_per_object"] = w
		m["ddb_write_units_per_object"] = wpo
		m["ddb_write_units_per_s"] = rate * wpo
		m["ddb_partitions_at_1000_wcu"] = math.Ceil(rate * wpo / 1000)
		m["ddb_write_units_total"] = objects * wpo
		m["ddb_on_demand_usd_at_0.625_per_million"] = objects * wpo * 0.625 / 1e6
		m["ddb_storage_gb"] = objects * b / 1e9
	}
	s.res.Internet = m
}

func (s *suite) print() {
	w := os.Stdout
	fmt.Fprintf(w, "\nrotator bench %s; %v CPUs; load %s at start, %s at end; %.0f s in all; peak RSS floor (the launcher's) %.1f MiB\n\n",
		s.res.Date, s.res.Machine["num_cpu"], s.res.Machine["load_at_start"], s.res.Machine["load_at_end"], s.res.WallS, s.res.Machine["rss_floor_mib"])
	fmt.Fprintln(w, "| figure | rotator | baseline | ratio (range over rounds) | goal | holds |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range s.res.Rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, r.Rotator, r.Baseline, r.Ratio, r.Goal, r.Holds)
	}
	fmt.Fprintln(w, "\nSeeding (official client v4.0.0):")
	for _, sd := range s.res.Seeding {
		fmt.Fprintf(w, "  %s: %s x %s in %.1f s (%.0f objects/s)\n", sd.Prefix, fmtInt(sd.Objects), human(sd.Size), sd.WallS, float64(sd.Objects)/sd.WallS)
	}
	if m := s.res.Internet; m["vcpus"] != nil {
		fmt.Fprintf(w, "\nInternet scale on paper: 1e9 objects in 4 h = %.0f objects/s (%.0f%% of a 100,000 requests/s KMS quota at one ReEncrypt each)\n",
			m["objects_per_s"], 100*m["kms_quota_fraction"].(float64))
		fmt.Fprintf(w, "  CPU %.3f ms/object (%s) -> %.0f vCPUs -> %.0f workers of 4 vCPUs (%.0f at 75%% busy; at the embedded ledger's %.3f ms %.0f; at the bare loop's %.3f ms %.0f)\n",
			m["cpu_ms_per_object"], m["cpu_measured_with"], m["vcpus"], m["workers_4vcpu"], m["workers_4vcpu_at_75pct"], m["embedded_cpu_ms_per_object"], m["workers_4vcpu_embedded_cpu"],
			m["bare_cpu_ms_per_object"], m["workers_4vcpu_bare"])
		if m["ddb_further_cpu_ms_per_object"] != nil {
			fmt.Fprintf(w, "  per further object with the DynamoDB ledger (the smaller run subtracted: a worker's start left out) %.3f ms -> %.0f workers\n",
				m["ddb_further_cpu_ms_per_object"], m["workers_4vcpu_ddb_further"])
		}
		if m["ddb_write_units_per_s"] != nil {
			fmt.Fprintf(w, "  DynamoDB: %.2f writes and %.2f write units per object -> %.0f write units/s (%.0f partitions at 1,000 WCU), $%.0f on demand at $0.625 per million\n",
				m["ddb_writes_per_object"], m["ddb_write_units_per_object"], m["ddb_write_units_per_s"], m["ddb_partitions_at_1000_wcu"], m["ddb_on_demand_usd_at_0.625_per_million"])
		}
		fmt.Fprintf(w, "  goal (40 workers of 4 vCPUs or fewer): %s\n", holds(m["workers_4vcpu"].(float64) <= 40))
	}
}
