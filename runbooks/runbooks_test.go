// Package runbooks holds no Go code: its test runs every runbook. It parses
// each runbook's ```sh blocks, in order, and runs them with bash (set -euo
// pipefail) in one working directory, with the runbook's placeholders set
// to test values on the local stack, the rotator built from this tree and
// an AWS CLI stand-in (testdata/awsstub) on PATH. Variables a block sets
// are kept for the next block. A block must exit 0 unless an HTML comment
// <!-- exit N --> right before it says otherwise; every placeholder a
// block uses must be documented in the runbook's table (or set by an
// earlier block), and every documented one must be used.
package runbooks

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/ledger"
)

var ctx = context.Background()

// block is one ```sh block of a runbook.
type block struct {
	line int // of the opening fence
	code string
	exit int
}

// runbook is a parsed runbook.
type runbook struct {
	path         string
	blocks       []block
	placeholders []string // documented, without $
}

var (
	fenceRE       = regexp.MustCompile("^(\\s*)```(\\S*)\\s*$")
	exitRE        = regexp.MustCompile(`^\s*<!--\s*exit\s+(\d+)\s*-->\s*$`)
	placeholderRE = regexp.MustCompile("^\\|\\s*`\\$([A-Z][A-Z0-9_]*)`\\s*\\|")
	varRE         = regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)\}?`)
	assignRE      = regexp.MustCompile(`(?m)^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=`)
)

func parseRunbook(t *testing.T, path string) runbook {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rb := runbook{path: path}
	sc := bufio.NewScanner(f)
	n, exit := 0, 0
	var cur *block
	var indent, lang string
	inPlaceholders := false
	for sc.Scan() {
		n++
		l := sc.Text()
		if cur != nil {
			if m := fenceRE.FindStringSubmatch(l); m != nil && m[2] == "" {
				if lang == "sh" {
					rb.blocks = append(rb.blocks, *cur)
				}
				cur = nil
				continue
			}
			cur.code += strings.TrimPrefix(l, indent) + "\n"
			continue
		}
		if m := fenceRE.FindStringSubmatch(l); m != nil {
			indent, lang = m[1], m[2]
			if lang == "" || lang == "bash" || lang == "shell" || lang == "console" {
				t.Errorf("%s:%d: a command block is ```sh (it is run by the test) or names another language", path, n)
			}
			cur = &block{line: n, exit: exit}
			exit = 0
			continue
		}
		if m := exitRE.FindStringSubmatch(l); m != nil {
			exit, _ = strconv.Atoi(m[1])
			continue
		}
		if strings.HasPrefix(l, "## ") {
			inPlaceholders = strings.TrimSpace(l) == "## Placeholders"
		}
		if m := placeholderRE.FindStringSubmatch(l); m != nil && inPlaceholders {
			rb.placeholders = append(rb.placeholders, m[1])
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unclosed code block", path, cur.line)
	}
	if len(rb.blocks) == 0 {
		t.Fatalf("%s: no ```sh block", path)
	}
	return rb
}

// checkPlaceholders: every $NAME a block uses is documented, set by an
// earlier block, or a variable of the environment the test gives every
// runbook (PATH, HOME); every documented placeholder is used.
func checkPlaceholders(t *testing.T, rb runbook, values map[string]string) {
	t.Helper()
	set := map[string]bool{}
	used := map[string]bool{}
	for _, b := range rb.blocks {
		for _, m := range assignRE.FindAllStringSubmatch(b.code, -1) {
			set[m[1]] = true
		}
		for _, m := range varRE.FindAllStringSubmatch(b.code, -1) {
			name := m[1]
			used[name] = true
			if !slices.Contains(rb.placeholders, name) && !set[name] && name != "PATH" && name != "HOME" {
				t.Errorf("%s:%d: $%s is neither documented under Placeholders nor set by an earlier block", rb.path, b.line, name)
			}
		}
	}
	for _, p := range rb.placeholders {
		if !used[p] {
			t.Errorf("%s: placeholder $%s is documented but no block uses it", rb.path, p)
		}
		if _, ok := values[p]; !ok {
			t.Errorf("%s: the test gives no value for $%s", rb.path, p)
		}
	}
}

// tools builds rotator and the AWS CLI stand-in into one directory.
func tools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range [][2]string{{"rotator", "../cmd/rotator"}, {"aws", "./testdata/awsstub"}} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	return dir
}

// runBlocks runs the blocks of rb in order in one directory.
func runBlocks(t *testing.T, rb runbook, bin string, values map[string]string) {
	t.Helper()
	checkPlaceholders(t, rb, values)
	dir := t.TempDir()
	state := filepath.Join(dir, ".runbook-state")
	var env strings.Builder
	for k, v := range values {
		fmt.Fprintf(&env, "export %s=%q\n", k, v)
	}
	if err := os.WriteFile(state, []byte(env.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, b := range rb.blocks {
		// Each block starts from the variables the earlier ones left and
		// saves its own for the next (set -a exports every assignment).
		script := ". " + strconv.Quote(state) + "\nset -a -euo pipefail\n" + b.code + "\nexport -p > " + strconv.Quote(state) + "\n"
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != b.exit {
			t.Fatalf("%s:%d: exit %d, want %d\n--- block\n%s--- output\n%s", rb.path, b.line, code, b.exit, b.code, out.String())
		}
		t.Logf("%s:%d: exit %d\n%s", rb.path, b.line, code, out.String())
	}
}

// stack is what every runbook's test values are made of.
type stack struct {
	s3      *s3.Client
	kms     *kms.Client
	account string
	region  string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	testenv.Need(t, testenv.S3, testenv.KMS, testenv.DynamoDB)
	cfg := testenv.AWSConfig(t)
	return &stack{s3: awsx.S3(cfg), kms: kms.NewFromConfig(cfg), region: cfg.Region}
}

func (s *stack) key(t *testing.T, desc string) string {
	t.Helper()
	out, err := s.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(desc)})
	if err != nil {
		t.Fatal(err)
	}
	s.account = strings.Split(*out.KeyMetadata.Arn, ":")[4]
	return *out.KeyMetadata.Arn
}

// bucket creates a bucket of n samples under prefix, wrapped under key.
func (s *stack) bucket(t *testing.T, prefix, key string, n int, versioned bool, kinds []sample.Kind) string {
	t.Helper()
	b := testenv.Name(t)
	if _, err := s.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &b}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(s.s3, b) })
	gens := 1
	if versioned {
		gens = 2
		if _, err := s.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &b,
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
			t.Fatal(err)
		}
	}
	for range gens {
		if _, err := sample.Seed(ctx, s.s3, s.kms, sample.Options{Bucket: b, Prefix: prefix, KMSKeyID: key, Count: n, MaxSize: 3000, Kinds: kinds}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// ledgerTable creates a DynamoDB ledger, as the Terraform module would.
func ledgerTable(t *testing.T) string {
	t.Helper()
	name := testenv.Name(t)
	l, err := ledger.Open(ctx, "dynamodb://"+name+"?create=true")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return "dynamodb://" + name
}

// hsmKey creates an AES key on the stack's SoftHSM token and returns its
// label.
func hsmKey(t *testing.T) string {
	t.Helper()
	testenv.Need(t, testenv.PKCS11)
	pin, err := hsmpool.ReadPIN("file:" + os.Getenv(testenv.EnvPKCS11PinFile))
	if err != nil {
		t.Fatal(err)
	}
	p, err := hsmpool.Open(ctx, hsmpool.Config{ModulePath: os.Getenv(testenv.EnvPKCS11Module), TokenLabel: os.Getenv(testenv.EnvPKCS11Token), PIN: pin, Size: 1})
	pin.Clear()
	if err != nil {
		t.Fatal(err)
	}
	label := "runbook-" + testenv.Name(t)
	if err := p.Do(ctx, func(s *hsmpool.Session) error { return s.GenerateAESKey(label, false) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Do(ctx, func(s *hsmpool.Session) error { return s.DestroyKey(label) })
		p.Close()
	})
	return label
}

func TestRunbooks(t *testing.T) {
	st := newStack(t)
	bin := tools(t)
	paths, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range []struct {
		file   string
		values func(t *testing.T) map[string]string
	}{
		{"cmk-rotation.md", func(t *testing.T) map[string]string {
			old := st.key(t, "runbook old key")
			return map[string]string{
				"BUCKET": st.bucket(t, "records/", old, 12, false, nil), "PREFIX": "records/", "KEY_OLD": old,
				"LEDGER": ledgerTable(t), "RUN_ID": "cmk-" + testenv.Name(t), "ACCOUNT": st.account, "REGION": st.region,
				"ROLE": "rotator-run",
			}
		}},
		{"kms-to-cloudhsm.md", func(t *testing.T) map[string]string {
			old := st.key(t, "runbook KMS key")
			return map[string]string{
				"BUCKET": st.bucket(t, "", old, 12, false, nil), "KEY_OLD": old,
				"HSM_TOKEN": os.Getenv(testenv.EnvPKCS11Token), "HSM_KEY_LABEL": hsmKey(t),
				"LEDGER": ledgerTable(t), "RUN_ID": "hsm-" + testenv.Name(t), "ACCOUNT": st.account, "REGION": st.region,
				"ROLE": "rotator-run",
			}
		}},
		{"escrow-before-retiring.md", func(t *testing.T) map[string]string {
			old := st.key(t, "runbook KMS key")
			return map[string]string{
				"BUCKET": st.bucket(t, "", old, 12, false, nil), "KEY_OLD": old,
				"HSM_TOKEN": os.Getenv(testenv.EnvPKCS11Token), "HSM_KEY_LABEL": hsmKey(t),
				"ESCROW_KEY": st.key(t, "runbook escrow key"), "RESTORE_KEY": st.key(t, "runbook restore key"),
				"LEDGER": ledgerTable(t), "RUN_ID": "escrow-" + testenv.Name(t),
			}
		}},
		{"incident-rekey.md", func(t *testing.T) map[string]string {
			exposed := st.key(t, "runbook exposed key")
			// Envelopes in metadata: older versions of instruction-file
			// objects are reported, not deleted (guarantee 12), which the
			// runbook covers in prose.
			return map[string]string{
				"BUCKET":      st.bucket(t, "", exposed, 8, true, []sample.Kind{sample.AllKinds[0], sample.AllKinds[1]}),
				"KEY_EXPOSED": exposed, "LEDGER": ledgerTable(t), "RUN_ID": "incident-" + testenv.Name(t),
				"ACCOUNT": st.account, "REGION": st.region, "ROLE": "rotator-run",
			}
		}},
	} {
		tested[tc.file] = true
		t.Run(strings.TrimSuffix(tc.file, ".md"), func(t *testing.T) {
			rb := parseRunbook(t, tc.file)
			runBlocks(t, rb, bin, tc.values(t))
		})
	}
	for _, p := range paths {
		if p != "README.md" && !tested[p] {
			t.Errorf("runbook %s is not run by the test: add it to TestRunbooks", p)
		}
	}
}
