package main

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/pipeline"
)

// otherWriter stands between rotator and versitygw and plays an
// application that writes an object again (under the old key, as the
// official client does: object and instruction file) right before
// rotator's write of it reaches S3: rotator's conditional write then
// finds the object changed.
type otherWriter struct {
	proxy *httputil.ReverseProxy
	// before maps the path of the write to intercept (/bucket/key) to
	// the write of the other application; each runs once.
	mu     sync.Mutex
	before map[string]func()
}

func (w *otherWriter) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		w.mu.Lock()
		f := w.before[r.URL.Path]
		delete(w.before, r.URL.Path)
		w.mu.Unlock()
		if f != nil {
			f()
		}
	}
	w.proxy.ServeHTTP(rw, r)
}

// An object someone else writes again while the run rewraps it is left as
// they wrote it, with the envelope in its metadata (the self-copy meets
// it) and in an instruction file (the instruction file's write meets it).
// The run reports it changed and exits 3, since it is not rekeyed; a new
// run rekeys it.
func TestCLIObjectChangedMidRunExits3(t *testing.T) {
	f := newCLIFixture(t, 0)
	kinds := map[string]sample.Kind{
		"m/": {Format: envelope.V3, Placement: envelope.PlacementMetadata},
		"i/": {Format: envelope.V2, Placement: envelope.PlacementInstructionFile},
	}
	target, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	if err != nil {
		t.Fatal(err)
	}
	w := &otherWriter{proxy: httputil.NewSingleHostReverseProxy(target), before: map[string]func(){}}
	changed := map[string]objectState{} // what the other application left, by key@version
	var mu sync.Mutex
	written := map[string]sample.Object{} // the other application's objects
	for prefix, kind := range kinds {
		objs, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: prefix, KMSKeyID: f.arnA, Count: 4, MaxSize: 2000, Kinds: []sample.Kind{kind}})
		if err != nil {
			t.Fatal(err)
		}
		f.objs = append(f.objs, objs...)
		key := objs[0].Key
		write := "/" + f.bucket + "/" + key
		if kind.Placement == envelope.PlacementInstructionFile {
			write += ".instruction"
		}
		w.before[write] = func() {
			// The same key, a new body and data key, under key A.
			again, err := sample.Seed(ctx, f.s3, f.kms, sample.Options{Bucket: f.bucket, Prefix: prefix, KMSKeyID: f.arnA, Count: 1, MaxSize: 2000, Kinds: []sample.Kind{kind}})
			if err != nil || again[0].Key != key {
				t.Errorf("the other application's write of %s: %v (wrote %v)", key, err, again)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			written[key] = again[0]
			for id, st := range f.state(t) {
				if strings.HasPrefix(id, key+"@") || strings.HasPrefix(id, key+".instruction@") {
					changed[id] = st
				}
			}
		}
	}
	srv := httptest.NewServer(w)
	defer srv.Close()

	ledgerPath := filepath.Join(f.dir, "ledger.db")
	args := []string{"run", "--source", "s3://" + f.bucket, "--from", "kms:" + f.arnA, "--to", "kms:" + f.arnB,
		"--ledger", ledgerPath, "--run-id", "changed", "--no-progress"}
	code, out, errOut := f.rotatorEnv(t, []string{"AWS_ENDPOINT_URL_S3=" + srv.URL}, args...)
	if code != exitPartial || !strings.Contains(errOut, "2 objects were changed by someone else") {
		t.Fatalf("a run with 2 objects changed mid-run exits %d, want %d naming them:\n%s%s", code, exitPartial, out, errOut)
	}
	if len(w.before) != 0 || len(written) != 2 || len(changed) != 3 {
		t.Fatalf("the other application did not write both objects (%d left to write, wrote %d, %d objects)", len(w.before), len(written), len(changed))
	}

	// The report says changed for those two, succeeded for the others.
	rep, err := os.ReadFile(filepath.Join(f.dir, "rotator-report-changed.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(rep)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows[1:] {
		key, _ := url.QueryUnescape(r[1])
		want := string(pipeline.StatusSucceeded)
		if _, ok := written[key]; ok {
			want = string(pipeline.StatusChanged)
		}
		if r[3] != want {
			t.Errorf("report row of %s: %s, want %s: %v", key, r[3], want, r)
		}
	}

	// Left as the other application wrote them, byte for byte.
	after := f.state(t)
	for id := range after {
		if _, ok := changed[id]; !ok {
			delete(after, id)
		}
	}
	if d := diffState(changed, after); len(d) != 0 {
		t.Errorf("the other application's objects were not left as it wrote them:\n%s", strings.Join(d, "\n"))
	}

	// A new run rekeys them; then every object opens under key B (those
	// two with the other application's plaintext).
	for i, o := range f.objs {
		if again, ok := written[o.Key]; ok {
			f.objs[i] = again
		}
	}
	code, out2, errOut2 := f.rotatorEnv(t, nil, "run", "--source", "s3://"+f.bucket, "--from", "kms:"+f.arnA, "--to", "kms:"+f.arnB,
		"--ledger", ledgerPath, "--run-id", "changed-again", "--no-progress")
	if code != exitOK {
		t.Fatalf("the new run exits %d:\n%s%s", code, out2, errOut2)
	}
	f.opensUnder(t, f.arnB)
}
