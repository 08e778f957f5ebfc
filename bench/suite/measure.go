package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.etcd.io/bbolt"
)

// Run is one measured child process.
type Run struct {
	Name      string             `json:"name"`
	Objects   int                `json:"objects"`
	Bytes     int64              `json:"bytes"`
	WallS     float64            `json:"wall_s"`
	UserS     float64            `json:"user_s"`
	SysS      float64            `json:"sys_s"`
	MaxRSSKiB int64              `json:"max_rss_kib"`
	Extra     map[string]float64 `json:"extra,omitempty"`
}

func (r Run) rate() float64           { return float64(r.Objects) / r.WallS }
func (r Run) mbps() float64           { return float64(r.Bytes) / r.WallS / 1e6 }
func (r Run) cpuPerObjectMS() float64 { return (r.UserS + r.SysS) * 1e3 / float64(r.Objects) }
func (r Run) rssMiB() float64         { return float64(r.MaxRSSKiB) / 1024 }

// launcher is the path of the launch command (built at start).
var launcher string

// runChild runs a child process with extra environment, checks its exit,
// and returns its wall time, rusage and stdout. It goes through the
// launch command (see launch/main.go for why).
func runChild(name string, env []string, bin string, args ...string) (Run, []byte, error) {
	f, err := os.CreateTemp("", "rusage-*.json")
	if err != nil {
		return Run{Name: name}, nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	// Every program starts with the dirty pages of the one before written
	// back, outside its timing: the official client's round leaves
	// gigabytes of the S3 server's files to write, and the next program's
	// fsyncs (the embedded ledger's group commits) waited behind them: the
	// rotator rounds after it measured 0.43-0.78 of the bare loop at
	// 16 MiB, 0.66-0.74 with this sync.
	syscall.Sync()
	c := exec.Command(launcher, append([]string{f.Name(), bin}, args...)...)
	c.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err = c.Run()
	r := Run{Name: name}
	var u usage
	if b, rerr := os.ReadFile(f.Name()); rerr == nil && json.Unmarshal(b, &u) == nil {
		r.WallS, r.UserS, r.SysS, r.MaxRSSKiB = u.WallS, u.UserS, u.SysS, u.MaxRSSKiB
	} else if err == nil {
		err = fmt.Errorf("the launcher wrote no usage: %v", rerr)
	}
	if err != nil {
		return r, stdout.Bytes(), fmt.Errorf("%s: %w\n%s%s", name, err, tail(stdout.String()), tail(stderr.String()))
	}
	return r, stdout.Bytes(), nil
}

// usage is what the launcher reports of its child.
type usage struct {
	WallS     float64 `json:"wall_s"`
	UserS     float64 `json:"user_s"`
	SysS      float64 `json:"sys_s"`
	MaxRSSKiB int64   `json:"max_rss_kib"`
}

func tail(s string) string {
	if len(s) > 3000 {
		s = "..." + s[len(s)-3000:]
	}
	return s
}

// summary is the part of rotator's --json summary the suite checks.
type summary struct {
	MessageType string         `json:"message_type"`
	State       string         `json:"state"`
	ObjectsDone int            `json:"objects_done"`
	Counts      map[string]int `json:"counts"`
}

func rotatorSummary(out []byte) (summary, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s summary
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.MessageType == "summary" {
			return s, nil
		}
	}
	return summary{}, fmt.Errorf("no summary line in rotator's output:\n%s", tail(string(out)))
}

func childCount(out []byte) int {
	var v struct{ Objects int }
	_ = json.Unmarshal(out, &v)
	return v.Objects
}

// counter counts the requests a proxy forwards, by operation (the
// X-Amz-Target header: KMS and DynamoDB), the items of BatchWriteItem
// requests, and the responses that were throttles.
type counter struct {
	mu        sync.Mutex
	ops       map[string]int
	batchPuts int
	throttled int
	// objWrites: the writes (of those counted in ops and batchPuts) on
	// an object's item, PK obj#<h> (ledger/SCHEMA.md): what the ledger
	// writes per object, apart from what a run writes whatever its size.
	objWrites int
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops, c.batchPuts, c.throttled, c.objWrites = map[string]int{}, 0, 0, 0
}

func (c *counter) snapshot() (map[string]int, int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := map[string]int{}
	for k, v := range c.ops {
		ops[k] = v
	}
	return ops, c.batchPuts, c.throttled
}

// objectWrites returns the writes counted on objects' items.
func (c *counter) objectWrites() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.objWrites
}

// startProxy forwards 127.0.0.1:PORT to target, counting into c.
func startProxy(target string, c *counter) (string, func(), error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", nil, err
	}
	c.reset()
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 1024}
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Header.Get("X-Amzn-ErrorType"), "Throttling") {
			c.mu.Lock()
			c.throttled++
			c.mu.Unlock()
		}
		return nil
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(op, '.'); i >= 0 {
			op = op[i+1:]
		}
		items, obj := 0, 0
		switch op {
		case "BatchWriteItem", "TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem":
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			items, obj = writeItems(body)
		}
		c.mu.Lock()
		c.ops[op]++
		c.batchPuts += items
		c.objWrites += obj
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// writeItems reads a DynamoDB write request's JSON body: the items of a
// BatchWriteItem or TransactWriteItems (0 for a single write, counted by
// its operation), and the writes of any of them on objects' items, whose
// PK starts "obj#" (ledger/SCHEMA.md).
func writeItems(body []byte) (items, onObjects int) {
	type key struct {
		PK struct{ S string }
	}
	type write struct {
		Item *key // PutItem; Put, PutRequest
		Key  *key // UpdateItem, DeleteItem; Update, Delete, DeleteRequest
	}
	var v struct {
		write
		RequestItems  map[string][]struct{ PutRequest, DeleteRequest *write }
		TransactItems []struct{ Put, Update, Delete, ConditionCheck *write }
	}
	if json.Unmarshal(body, &v) != nil {
		return 0, 0
	}
	count := func(ws ...*write) {
		for _, w := range ws {
			if w == nil {
				continue
			}
			k := w.Item
			if k == nil {
				k = w.Key
			}
			if k != nil && strings.HasPrefix(k.PK.S, "obj#") {
				onObjects++
			}
		}
	}
	count(&v.write)
	for _, batch := range v.RequestItems {
		items += len(batch)
		for _, it := range batch {
			count(it.PutRequest, it.DeleteRequest)
		}
	}
	items += len(v.TransactItems)
	for _, it := range v.TransactItems {
		count(it.Put, it.Update, it.Delete, it.ConditionCheck)
	}
	return items, onObjects
}

// boltStats is an embedded ledger file's size and the number of write
// transactions committed to it in its life (bbolt's transaction id grows
// by one per committed write transaction).
func boltStats(path string) (size int64, writeTxs int, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fi.Size(), 0, err
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error { writeTxs = tx.ID(); return nil })
	return fi.Size(), writeTxs, err
}

// tableStats scans a DynamoDB table and returns its item count and the
// sum of its items' sizes as DynamoDB bills them (attribute names plus
// values: strings and binaries by length, numbers about one byte per two
// digits plus one, maps and lists 3 bytes plus one per element).
func tableStats(ctx context.Context, c *dynamodb.Client, table string) (items int, bytes int64, err error) {
	p := dynamodb.NewScanPaginator(c, &dynamodb.ScanInput{TableName: aws.String(table)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return items, bytes, err
		}
		for _, it := range page.Items {
			items++
			for k, v := range it {
				bytes += int64(len(k)) + attrSize(v)
			}
		}
	}
	return items, bytes, nil
}

func attrSize(v ddbtypes.AttributeValue) int64 {
	switch v := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		return int64(len(v.Value))
	case *ddbtypes.AttributeValueMemberN:
		return int64(len(strings.TrimLeft(v.Value, "-0."))+1)/2 + 1
	case *ddbtypes.AttributeValueMemberB:
		return int64(len(v.Value))
	case *ddbtypes.AttributeValueMemberBOOL, *ddbtypes.AttributeValueMemberNULL:
		return 1
	case *ddbtypes.AttributeValueMemberSS:
		var n int64
		for _, s := range v.Value {
			n += int64(len(s))
		}
		return n
	case *ddbtypes.AttributeValueMemberNS:
		var n int64
		for _, s := range v.Value {
			n += attrSize(&ddbtypes.AttributeValueMemberN{Value: s})
		}
		return n
	case *ddbtypes.AttributeValueMemberBS:
		var n int64
		for _, b := range v.Value {
			n += int64(len(b))
		}
		return n
	case *ddbtypes.AttributeValueMemberM:
		n := int64(3)
		for k, e := range v.Value {
			n += int64(len(k)) + attrSize(e) + 1
		}
		return n
	case *ddbtypes.AttributeValueMemberL:
		n := int64(3)
		for _, e := range v.Value {
			n += attrSize(e) + 1
		}
		return n
	}
	return 0
}

// kmsServer is a kms-test-server child with its own options (latency,
// rate cap), on a free port, with its state in dir.
type kmsServer struct {
	url string
	cmd *exec.Cmd
}

func startKMS(bin, dir string, args ...string) (*kmsServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "kms-"+strings.ReplaceAll(addr, ":", "-")+".log"))
	if err != nil {
		return nil, err
	}
	c := exec.Command(bin, append([]string{"-addr", addr}, args...)...)
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		return nil, err
	}
	for range 100 {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return &kmsServer{url: "http://" + addr, cmd: c}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = c.Process.Kill()
	return nil, fmt.Errorf("kms-test-server %v did not start (see %s)", args, logf.Name())
}

func (k *kmsServer) stop() {
	_ = k.cmd.Process.Signal(os.Interrupt)
	_ = k.cmd.Wait()
}
