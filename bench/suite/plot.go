package main

import (
	"fmt"
	"math"
	"strings"
)

// plot draws two panels side by side: rotator's objects/s and its peak
// RSS against the object count (log scale), from the scale figure.
func plot(res Results) string {
	const w, h, pw, ph, left, top = 900, 380, 340, 260, 70, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">rotator run (rewrap, embedded ledger, %d in flight), %s</text>`+"\n", left, res.Options.Concurrency(), res.Date)
	pts := res.Scale
	panel := func(x0 int, title, unit string, val func(ScalePoint) float64) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13">%s</text>`+"\n", x0, top-8, title)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0, top, pw, ph)
		if len(pts) == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d">no scale runs</text>`+"\n", x0+10, top+20)
			return
		}
		ymax := 0.0
		for _, p := range pts {
			ymax = max(ymax, val(p))
		}
		ymax = niceCeil(ymax * 1.1)
		xmin, xmax := math.Log10(float64(pts[0].Objects)), math.Log10(float64(pts[len(pts)-1].Objects))
		if xmax == xmin {
			xmin, xmax = xmin-1, xmax+1
		}
		px := func(n int) float64 {
			return float64(x0) + 20 + (math.Log10(float64(n))-xmin)/(xmax-xmin)*float64(pw-40)
		}
		py := func(v float64) float64 { return float64(top+ph) - v/ymax*float64(ph) }
		for i := 0; i <= 4; i++ {
			v := ymax * float64(i) / 4
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x0, x0+pw, py(v), py(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.0f</text>`+"\n", x0-5, py(v)+4, v)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`+"\n", x0-50, top+ph/2, x0-50, top+ph/2, unit)
		var line []string
		for _, p := range pts {
			x, y := px(p.Objects), py(val(p))
			line = append(line, fmt.Sprintf("%.1f,%.1f", x, y))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="#1f77b4"/>`+"\n", x, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x, y-8, val(p))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, top+ph+16, fmtInt(p.Objects))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="2"/>`+"\n", strings.Join(line, " "))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">objects in the run (log scale)</text>`+"\n", x0+pw/2, top+ph+34)
	}
	panel(left, "objects per second", "objects/s", func(p ScalePoint) float64 { return p.ObjectsPerS })
	panel(left+pw+110, "peak RSS (kernel maxrss)", "MiB", func(p ScalePoint) float64 { return p.PeakRSSMiB })
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// Concurrency is the concurrency of the scale runs.
func (o Options) Concurrency() int { return o.Conc }
