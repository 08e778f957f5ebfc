package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// docType is one message type as docs/json.md documents it.
type docType struct {
	fields  map[string]bool // field -> present always
	example string
}

// readJSONDoc parses docs/json.md: a "## `type`" heading per message type,
// a table of its fields (`field` | type | present | meaning) and a json
// example.
func readJSONDoc(t *testing.T) map[string]*docType {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	heading := regexp.MustCompile("^## `([a-z_]+)`$")
	row := regexp.MustCompile("^\\| `([a-z_0-9]+)` \\| [^|]+ \\| ([^|]+) \\|")
	types := map[string]*docType{}
	var cur *docType
	inExample := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			cur = nil
			if m := heading.FindStringSubmatch(line); m != nil {
				cur = &docType{fields: map[string]bool{}}
				types[m[1]] = cur
			}
		case cur == nil:
		case line == "```json":
			inExample = true
		case line == "```":
			inExample = false
		case inExample && cur.example == "":
			cur.example = line
		default:
			if m := row.FindStringSubmatch(line); m != nil {
				cur.fields[m[1]] = strings.TrimSpace(m[2]) == "always"
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return types
}

// jsonFields returns the JSON names of a struct's fields, embedded structs
// flattened.
func jsonFields(typ reflect.Type) []string {
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name != "":
			out = append(out, name)
		case f.IsExported():
			out = append(out, f.Name)
		}
	}
	sort.Strings(out)
	return out
}

// messageTypes maps every message type to the struct that writes it.
var messageTypes = map[string]any{
	msgStatus: statusMsg{}, msgObject: objectMsg{}, msgSummary: summaryMsg{}, msgExitError: exitErrorMsg{}, msgPlan: planMsg{},
	msgRunStatus: runStatusMsg{}, msgEvent: eventMsg{}, msgLedgerObj: ledgerObjectMsg{}, msgKeyCounts: keyCountsMsg{}, msgRun: runMsg{},
	msgIntent: intentMsg{}, msgVersionMsg: versionMsg{},
}

// checkMessage checks one line of --json output against the doc.
func checkMessage(t *testing.T, doc map[string]*docType, where, line string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Errorf("%s: not a JSON object: %q", where, line)
		return ""
	}
	var typ string
	_ = json.Unmarshal(m["message_type"], &typ)
	d := doc[typ]
	if d == nil {
		t.Errorf("%s: message_type %q is not in docs/json.md: %s", where, typ, line)
		return typ
	}
	for k := range m {
		if _, ok := d.fields[k]; !ok {
			t.Errorf("%s: %s has field %q, which docs/json.md does not document: %s", where, typ, k, line)
		}
	}
	for k, always := range d.fields {
		if _, ok := m[k]; always && !ok {
			t.Errorf("%s: %s lacks %q, which docs/json.md says is always present: %s", where, typ, k, line)
		}
	}
	return typ
}

// docs/json.md and the Go structs of the messages agree field for field,
// and every example decodes to documented fields.
func TestJSONDocMatchesMessages(t *testing.T) {
	doc := readJSONDoc(t)
	var documented []string
	for typ := range doc {
		documented = append(documented, typ)
	}
	var written []string
	for typ := range messageTypes {
		written = append(written, typ)
	}
	slices.Sort(documented)
	slices.Sort(written)
	if !slices.Equal(documented, written) {
		t.Fatalf("docs/json.md documents %v; rotator writes %v", documented, written)
	}
	for typ, v := range messageTypes {
		var fields []string
		for f := range doc[typ].fields {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		if got := jsonFields(reflect.TypeOf(v)); !slices.Equal(got, fields) {
			t.Errorf("%s: the struct has %v, docs/json.md documents %v", typ, got, fields)
		}
		if doc[typ].example == "" {
			t.Errorf("%s: no example in docs/json.md", typ)
			continue
		}
		if got := checkMessage(t, doc, "docs/json.md example", doc[typ].example); got != typ {
			t.Errorf("the example of %s has message_type %q", typ, got)
		}
	}
}

// TestJSONOutputFollowsDocsJSON runs every command with --json against the
// local stack and checks each line against docs/json.md.
func TestJSONOutputFollowsDocsJSON(t *testing.T) {
	doc := readJSONDoc(t)
	f := newCLIFixture(t, 12)
	bad := "corrupt/object"
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &bad, Body: strings.NewReader("x"),
		Metadata: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "short", "x-amz-cek-alg": "AES/GCM/NoPadding",
			"x-amz-wrap-alg": "kms+context", "x-amz-matdesc": "{}"}}); err != nil {
		t.Fatal(err)
	}
	ledgerPath := filepath.Join(f.dir, "l.db")
	src, to, from := "s3://"+f.bucket, "kms:"+f.arnB, "kms:"+f.arnA
	seen := map[string]bool{}
	check := func(wantCode int, args ...string) string {
		t.Helper()
		c := f.cmd(args...)
		out, err := c.Output() // stdout only: the messages
		code := 0
		if err != nil {
			code = c.ProcessState.ExitCode()
		}
		if code != wantCode {
			t.Fatalf("rotator %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, wantCode, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" {
				seen[checkMessage(t, doc, "rotator "+args[0], line)] = true
			}
		}
		return string(out)
	}
	plan := check(exitOK, "plan", "--source", src, "--to", to, "--from", from, "--json")
	if err := os.WriteFile(filepath.Join(f.dir, "plan.json"), []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	// Slow enough for status messages (the plan's total is taken while the
	// listing runs: see TestProgressTotals).
	out := check(exitPartial, "run", "--source", src, "--to", to, "--from", from, "--ledger", ledgerPath, "--run-id", "json",
		"--json", "--json-objects", "all", "--s3-rps", "8", "--plan", "plan.json")
	if !strings.Contains(out, `"objects_total":13`) || !strings.Contains(out, `"eta_seconds"`) {
		t.Errorf("no status message with the total and an ETA:\n%s", out)
	}
	check(exitPartial, "resume", "--run-id", "json", "--ledger", ledgerPath, "--json")
	check(exitOK, "status", "--run-id", "json", "--ledger", ledgerPath, "--json")
	check(exitOK, "ledger", "lineage", "s3://"+f.bucket+"/"+f.objs[0].Key, "--ledger", ledgerPath, "--json")
	check(exitOK, "ledger", "counts", "--ledger", ledgerPath, "--json")
	check(exitOK, "ledger", "objects", "--key", f.arnB, "--ledger", ledgerPath, "--json")
	check(exitOK, "ledger", "runs", "--ledger", ledgerPath, "--json")
	check(exitOK, "ledger", "export", "--ledger", ledgerPath, "--json")
	check(exitOK, "ledger", "intents", "--run-id", "json", "--ledger", ledgerPath, "--json")
	check(exitPartial, "verify", "--source", src, "--key", to, "--all", "--json", "--json-objects", "all")
	check(exitOK, "version", "--json")
	check(exitUsage, "run", "--source", src, "--json")
	for _, typ := range []string{msgStatus, msgObject, msgSummary, msgExitError, msgPlan, msgRunStatus, msgEvent, msgLedgerObj,
		msgKeyCounts, msgRun, msgVersionMsg} {
		if !seen[typ] {
			t.Errorf("no %s message was seen", typ)
		}
	}
}
