package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
)

// CheckAddr checks a --metrics-addr value: HOST:PORT (PORT 0 picks a free
// one).
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT (for example 127.0.0.1:9464)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// Server serves /metrics.
type Server struct {
	srv  *http.Server
	addr string
	done chan error
}

// Serve listens on addr (HOST:PORT) at once, so that a taken port fails
// here, and serves h on /metrics until Close.
func Serve(addr string, h http.Handler) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics: %w (hint: choose a free port, or port 0 for any)", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on (the port chosen for port 0).
func (s *Server) Addr() string { return s.addr }

// Close stops the server, letting scrapes in progress finish until ctx
// ends.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Target is where a push goes: a Pushgateway, a job and grouping labels.
type Target struct {
	URL      string // the Pushgateway's base URL
	Job      string
	Grouping map[string]string
}

// DefaultJob is the job of a push whose URL names none.
const DefaultJob = "rotator"

// ParsePushURL reads a --metrics-push value: the Pushgateway's URL
// (http://HOST:9091), optionally followed by the group in the
// Pushgateway's own path form, /metrics/job/JOB[/LABEL/VALUE]...
func ParsePushURL(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Target{}, fmt.Errorf("%q is not a Pushgateway URL (for example http://pushgateway:9091 or http://pushgateway:9091/metrics/job/cmk-rotation)", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("%q: a Pushgateway URL takes no query or fragment", s)
	}
	t := Target{Job: DefaultJob}
	base, group, found := strings.Cut(u.EscapedPath(), "/metrics/job/")
	if found {
		parts := strings.Split(strings.TrimSuffix(group, "/"), "/")
		if len(parts)%2 != 1 || parts[0] == "" {
			return Target{}, fmt.Errorf("%q: the group is /metrics/job/JOB followed by LABEL/VALUE pairs", s)
		}
		unescaped := make([]string, len(parts))
		for i, p := range parts {
			if unescaped[i], err = url.PathUnescape(p); err != nil || unescaped[i] == "" {
				return Target{}, fmt.Errorf("%q: %q is not a job, label or value", s, p)
			}
		}
		t.Job = unescaped[0]
		for i := 1; i < len(unescaped); i += 2 {
			if slices.Contains(seriesLabels, unescaped[i]) {
				return Target{}, fmt.Errorf("%q: %s labels rotator's own series; name the group with another label", s, unescaped[i])
			}
			if t.Grouping == nil {
				t.Grouping = map[string]string{}
			}
			t.Grouping[unescaped[i]] = unescaped[i+1]
		}
	}
	u.Path, u.RawPath = "", ""
	t.URL = u.String() + strings.TrimSuffix(base, "/")
	return t, nil
}

// Push replaces the metrics of t's group on the Pushgateway with g's
// (HTTP PUT), adding the labels of extra to the group. A metric label
// named like a grouping label (rotator_run_info's shard) is left out of
// the push: the group's value stands for it.
func Push(ctx context.Context, t Target, g prometheus.Gatherer, extra map[string]string) error {
	group := map[string]string{}
	for k, v := range extra {
		group[k] = v
	}
	for k, v := range t.Grouping {
		group[k] = v
	}
	p := push.New(t.URL, t.Job).Gatherer(withoutLabels(g, group)).Client(&http.Client{Timeout: 30 * time.Second})
	for k, v := range group {
		p = p.Grouping(k, v)
	}
	if err := p.PushContext(ctx); err != nil {
		return fmt.Errorf("push metrics to %s: %w", t.URL, err)
	}
	return nil
}

// withoutLabels returns g's metrics without the labels named in drop.
func withoutLabels(g prometheus.Gatherer, drop map[string]string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		fams, err := g.Gather()
		for _, mf := range fams {
			for _, m := range mf.GetMetric() {
				kept := make([]*dto.LabelPair, 0, len(m.GetLabel()))
				for _, lp := range m.GetLabel() {
					if _, ok := drop[lp.GetName()]; !ok {
						kept = append(kept, lp)
					}
				}
				m.Label = kept
			}
		}
		return fams, err
	})
}

// seriesLabels are the labels that tell rotator's series apart: a
// grouping label of one of these names would merge series.
var seriesLabels = []string{"status", "code", "action", "service", "operation", "class", "token", "le"}
