package iampolicy

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rotator-dev/rotator/pipeline"
)

const (
	keyA = "arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000001"
	keyB = "arn:aws:kms:eu-west-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000002"
	keyC = "arn:aws:kms:us-east-1:111122223333:key/cccccccc-0000-0000-0000-000000000003" // another region
)

func derive(t *testing.T, cfg pipeline.Config, o Options) *Result {
	t.Helper()
	if cfg.Ledger == "" {
		cfg.Ledger = "rotator-ledger.db"
	}
	r, err := For(cfg, o)
	if err != nil {
		t.Fatalf("For(%+v): %v", cfg, err)
	}
	return r
}

// grants lists "action resource" for every statement of p.
func grants(p *Policy, service string) []string {
	var out []string
	for _, s := range p.Statement {
		for _, a := range s.Action {
			if !strings.HasPrefix(a, service+":") {
				continue
			}
			for _, r := range s.Resource {
				out = append(out, a+" "+r)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestKMSActionsFollowTheMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  pipeline.Config
		want []string
	}{
		{"rewrap in one region: ReEncrypt only", pipeline.Config{Source: "s3://b", From: []string{"kms:" + keyA}, To: "kms:" + keyB},
			[]string{"kms:DescribeKey " + keyA, "kms:DescribeKey " + keyB, "kms:ReEncryptFrom " + keyA, "kms:ReEncryptTo " + keyB}},
		{"rewrap across regions: Decrypt and Encrypt", pipeline.Config{Source: "s3://b", From: []string{"kms:" + keyC}, To: "kms:" + keyB},
			[]string{"kms:Decrypt " + keyC, "kms:DescribeKey " + keyB, "kms:DescribeKey " + keyC, "kms:Encrypt " + keyB}},
		{"rewrap without --from: ReEncryptFrom on every key of the region", pipeline.Config{Source: "s3://b", To: "kms:" + keyB},
			[]string{"kms:DescribeKey " + keyB, "kms:ReEncryptFrom arn:aws:kms:eu-west-1:*:key/*", "kms:ReEncryptTo " + keyB}},
		{"KMS to HSM: Decrypt on the source", pipeline.Config{Source: "s3://b", From: []string{"kms:" + keyA}, To: "pkcs11:token=t;object=k"},
			[]string{"kms:Decrypt " + keyA, "kms:DescribeKey " + keyA}},
		{"HSM to KMS: Encrypt on the target", pipeline.Config{Source: "s3://b", From: []string{"pkcs11:token=t;object=k"}, To: "kms:" + keyB},
			[]string{"kms:DescribeKey " + keyB, "kms:Encrypt " + keyB}},
		{"re-encryption: Decrypt on the source, Encrypt on the target", pipeline.Config{Source: "s3://b", Mode: pipeline.ModeReencrypt, From: []string{"kms:" + keyA}, To: "kms:" + keyB},
			[]string{"kms:Decrypt " + keyA, "kms:DescribeKey " + keyA, "kms:DescribeKey " + keyB, "kms:Encrypt " + keyB}},
		{"dry run: keys are opened only", pipeline.Config{Source: "s3://b", DryRun: true, Mode: pipeline.ModeReencrypt, From: []string{"kms:" + keyA}, To: "kms:" + keyB},
			[]string{"kms:DescribeKey " + keyA, "kms:DescribeKey " + keyB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := derive(t, tc.cfg, Options{})
			if got := grants(r.Policy, "kms"); !slices.Equal(got, tc.want) {
				t.Errorf("KMS grants:\n got %q\nwant %q", got, tc.want)
			}
			for _, a := range r.Policy.ActionsOf("kms") {
				if strings.HasPrefix(a, "kms:GenerateDataKey") {
					t.Errorf("%s granted: rotator never asks KMS for a data key", a)
				}
			}
		})
	}
}

func TestKeysNamedWithoutARN(t *testing.T) {
	r := derive(t, pipeline.Config{Source: "s3://b", From: []string{"kms:alias/data-2025"}, To: "kms:1234abcd-12ab-34cd-56ef-1234567890ab"},
		Options{Region: "eu-west-1", Account: "111122223333"})
	var from *Statement
	for i, s := range r.Policy.Statement {
		if s.Sid == SidKMSReEncryptFrom {
			from = &r.Policy.Statement[i]
		}
	}
	if from == nil || !slices.Equal(from.Resource, []string{"arn:aws:kms:eu-west-1:111122223333:key/*"}) ||
		!slices.Equal(from.Condition["ForAnyValue:StringEquals"]["kms:ResourceAliases"], []string{"alias/data-2025"}) {
		t.Errorf("an alias source: want key/* with a kms:ResourceAliases condition, got %+v", from)
	}
	if got := grants(r.Policy, "kms"); !slices.Contains(got, "kms:ReEncryptTo arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab") {
		t.Errorf("a key id target: want its ARN, got %q", got)
	}
	sids := map[string]bool{}
	for _, s := range r.Policy.Statement {
		if sids[s.Sid] {
			t.Errorf("Sid %s twice", s.Sid)
		}
		sids[s.Sid] = true
	}
}

func TestS3ActionsFollowTheFlags(t *testing.T) {
	base := pipeline.Config{Source: "s3://data/2025/", From: []string{"kms:" + keyA}, To: "kms:" + keyB}
	with := func(f func(*pipeline.Config)) pipeline.Config { c := base; f(&c); return c }
	rewrap := []string{
		"s3:AbortMultipartUpload arn:aws:s3:::data/2025/*", "s3:GetObject arn:aws:s3:::data/2025/*",
		"s3:GetObjectTagging arn:aws:s3:::data/2025/*", "s3:ListBucket arn:aws:s3:::data",
		"s3:PutObject arn:aws:s3:::data/2025/*", "s3:PutObjectTagging arn:aws:s3:::data/2025/*",
	}
	plus := func(extra ...string) []string {
		out := append(slices.Clone(rewrap), extra...)
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		name string
		cfg  pipeline.Config
		want []string
	}{
		{"rewrap of a prefix", base, rewrap},
		{"dry run reads only", with(func(c *pipeline.Config) { c.DryRun = true }),
			[]string{"s3:GetObject arn:aws:s3:::data/2025/*", "s3:ListBucket arn:aws:s3:::data"}},
		{"--check-acl", with(func(c *pipeline.Config) { c.CheckACL = true }), plus("s3:GetObjectAcl arn:aws:s3:::data/2025/*")},
		{"--placement instruction-file", with(func(c *pipeline.Config) { c.Placement = pipeline.PlacementInstructionFile }), plus("s3:DeleteObject arn:aws:s3:::data/2025/*")},
		{"--copy-object-lock", with(func(c *pipeline.Config) { c.CopyObjectLock = true }), plus(
			"s3:GetObjectLegalHold arn:aws:s3:::data/2025/*", "s3:GetObjectRetention arn:aws:s3:::data/2025/*",
			"s3:PutObjectLegalHold arn:aws:s3:::data/2025/*", "s3:PutObjectRetention arn:aws:s3:::data/2025/*")},
		{"--all-versions", with(func(c *pipeline.Config) { c.AllVersions = true }), []string{
			"s3:AbortMultipartUpload arn:aws:s3:::data/2025/*", "s3:GetObject arn:aws:s3:::data/2025/*",
			"s3:GetObjectTagging arn:aws:s3:::data/2025/*", "s3:GetObjectVersion arn:aws:s3:::data/2025/*",
			"s3:ListBucketVersions arn:aws:s3:::data",
			"s3:PutObject arn:aws:s3:::data/2025/*", "s3:PutObjectTagging arn:aws:s3:::data/2025/*"}},
		{"re-encryption deleting old versions", with(func(c *pipeline.Config) {
			c.Mode, c.AllVersions, c.DeleteOldVersions = pipeline.ModeReencrypt, true, true
		}), []string{
			"s3:AbortMultipartUpload arn:aws:s3:::data/2025/*", "s3:DeleteObjectVersion arn:aws:s3:::data/2025/*",
			"s3:GetObject arn:aws:s3:::data/2025/*", "s3:GetObjectLegalHold arn:aws:s3:::data/2025/*",
			"s3:GetObjectRetention arn:aws:s3:::data/2025/*", "s3:GetObjectTagging arn:aws:s3:::data/2025/*",
			"s3:GetObjectVersion arn:aws:s3:::data/2025/*", "s3:GetObjectVersionTagging arn:aws:s3:::data/2025/*",
			"s3:ListBucketMultipartUploads arn:aws:s3:::data", "s3:ListBucketVersions arn:aws:s3:::data",
			"s3:PutObject arn:aws:s3:::data/2025/*", "s3:PutObjectTagging arn:aws:s3:::data/2025/*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := derive(t, tc.cfg, Options{})
			if got := grants(r.Policy, "s3"); !slices.Equal(got, tc.want) {
				t.Errorf("S3 grants:\n got %q\nwant %q", got, tc.want)
			}
			for _, s := range r.Policy.Statement {
				if (s.Sid == SidS3List || s.Sid == SidS3ListVersions) && s.Condition["StringLike"]["s3:prefix"][0] != "2025/*" {
					t.Errorf("%s: want the condition s3:prefix 2025/*, got %v", s.Sid, s.Condition)
				}
			}
		})
	}
}

// --with plan adds the bucket configuration plan reads (versioning,
// replication, lifecycle) on each bucket, and nothing else.
func TestPlanReadsBucketConfiguration(t *testing.T) {
	cfg := pipeline.Config{Source: "s3://data/2025/", From: []string{"kms:" + keyA}, To: "kms:" + keyB}
	without := grants(derive(t, cfg, Options{}).Policy, "s3")
	with := grants(derive(t, cfg, Options{Plan: true}).Policy, "s3")
	want := append(slices.Clone(without), "s3:GetBucketVersioning arn:aws:s3:::data",
		"s3:GetLifecycleConfiguration arn:aws:s3:::data", "s3:GetReplicationConfiguration arn:aws:s3:::data")
	slices.Sort(want)
	if !slices.Equal(with, want) {
		t.Errorf("with Plan:\n got %q\nwant %q", with, want)
	}
	for _, g := range without {
		if strings.Contains(g, "Bucket") && !strings.Contains(g, "ListBucket") {
			t.Errorf("without Plan the run's policy grants %s", g)
		}
	}
}

func TestExpectedBucketOwnerConditionsEveryS3Statement(t *testing.T) {
	r := derive(t, pipeline.Config{Source: "s3://b", To: "kms:" + keyB, ExpectedBucketOwner: "111122223333"}, Options{})
	n := 0
	for _, s := range r.Policy.Statement {
		if !strings.HasPrefix(s.Action[0], "s3:") {
			continue
		}
		n++
		if got := s.Condition["StringEquals"]["s3:ResourceAccount"]; !slices.Equal(got, []string{"111122223333"}) {
			t.Errorf("%s: s3:ResourceAccount %q", s.Sid, got)
		}
	}
	if n == 0 {
		t.Fatal("no S3 statement")
	}
}

func TestListsAndInventories(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.csv")
	if err := os.WriteFile(list, []byte("b1,k%231\nb2,k2,v2\nb1,k3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := derive(t, pipeline.Config{List: list, To: "kms:" + keyB}, Options{})
	got := grants(r.Policy, "s3")
	for _, want := range []string{"s3:GetObject arn:aws:s3:::b1/*", "s3:GetObject arn:aws:s3:::b2/*", "s3:GetObjectVersion arn:aws:s3:::b2/*"} {
		if !slices.Contains(got, want) {
			t.Errorf("local list: %q lacks %q", got, want)
		}
	}
	if slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, "s3:ListBucket") }) {
		t.Errorf("local list: no listing needed, got %q", got)
	}

	r = derive(t, pipeline.Config{Inventory: "s3://reports/inv/data-bucket/daily/2026-01-01T00-00Z/manifest.json", To: "kms:" + keyB}, Options{})
	got = grants(r.Policy, "s3")
	for _, want := range []string{"s3:GetObject arn:aws:s3:::reports/inv/data-bucket/daily/*", "s3:PutObject arn:aws:s3:::data-bucket/*"} {
		if !slices.Contains(got, want) {
			t.Errorf("inventory: %q lacks %q", got, want)
		}
	}
	if slices.Contains(got, "s3:PutObject arn:aws:s3:::reports/inv/data-bucket/daily/*") {
		t.Error("inventory: the report is read-only")
	}

	// An S3 report: written (and continued) under its prefix or key; a
	// local report needs nothing.
	for _, tc := range []struct{ report, object string }{
		{"s3://audit/rotator/", "arn:aws:s3:::audit/rotator/*"},
		{"s3://audit", "arn:aws:s3:::audit/*"},
		{"s3://audit/runs/r1.csv", "arn:aws:s3:::audit/runs/r1.csv"},
	} {
		r = derive(t, pipeline.Config{Source: "s3://data/", To: "kms:" + keyB}, Options{Report: tc.report})
		got = grants(r.Policy, "s3")
		for _, want := range []string{"s3:GetObject " + tc.object, "s3:PutObject " + tc.object, "s3:AbortMultipartUpload " + tc.object,
			"s3:ListBucket arn:aws:s3:::audit", "s3:ListBucketMultipartUploads arn:aws:s3:::audit"} {
			if !slices.Contains(got, want) {
				t.Errorf("--report %s: %q lacks %q", tc.report, got, want)
			}
		}
	}
	r = derive(t, pipeline.Config{Source: "s3://data/", To: "kms:" + keyB}, Options{Report: "report.csv"})
	if got := grants(r.Policy, "s3"); slices.ContainsFunc(got, func(g string) bool {
		return strings.Contains(g, "audit") || strings.HasPrefix(g, "s3:ListBucketMultipartUploads")
	}) {
		t.Errorf("a local report needs nothing in S3: %q", got)
	}

	if _, err := For(pipeline.Config{List: "s3://lists/flagged.csv", To: "kms:" + keyB, Ledger: "l.db"}, Options{}); err == nil || !strings.Contains(err.Error(), "--bucket") {
		t.Errorf("an S3 list without --bucket: %v, want a hint to name the buckets", err)
	}
	r = derive(t, pipeline.Config{List: "s3://lists/flagged.csv", To: "kms:" + keyB}, Options{Buckets: []string{"b9"}})
	if got := grants(r.Policy, "s3"); !slices.Contains(got, "s3:GetObject arn:aws:s3:::lists/flagged.csv") || !slices.Contains(got, "s3:PutObject arn:aws:s3:::b9/*") {
		t.Errorf("S3 list with --bucket: %q", got)
	}
}

func TestLedgerActions(t *testing.T) {
	cfg := pipeline.Config{Source: "s3://b", To: "kms:" + keyB, Ledger: "dynamodb://rotator-ledger"}
	table := "arn:aws:dynamodb:eu-west-1:111122223333:table/rotator-ledger"
	o := Options{Region: "eu-west-1", Account: "111122223333"}
	want := []string{"dynamodb:BatchGetItem " + table, "dynamodb:DeleteItem " + table, "dynamodb:DescribeTable " + table, "dynamodb:GetItem " + table,
		"dynamodb:PutItem " + table, "dynamodb:Query " + table, "dynamodb:UpdateItem " + table}
	if got := grants(derive(t, cfg, o).Policy, "dynamodb"); !slices.Equal(got, want) {
		t.Errorf("run:\n got %q\nwant %q", got, want)
	}
	cfg.Ledger += "?create=true"
	if got := grants(derive(t, cfg, o).Policy, "dynamodb"); !slices.Contains(got, "dynamodb:CreateTable "+table) {
		t.Errorf("?create=true: %q lacks CreateTable", got)
	}
	o.Ledger = true
	got := grants(derive(t, cfg, o).Policy, "dynamodb")
	if !slices.Contains(got, "dynamodb:Query "+table+"/index/by_wrap_key") || !slices.Contains(got, "dynamodb:Scan "+table) {
		t.Errorf("--with ledger: %q lacks the index query or the export's scan", got)
	}
	r := derive(t, pipeline.Config{Source: "s3://b", To: "kms:" + keyB}, Options{})
	if len(r.Policy.ActionsOf("dynamodb")) > 0 || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "embedded") }) {
		t.Errorf("embedded ledger: %v %q", r.Policy.ActionsOf("dynamodb"), r.Notes)
	}
}

func TestPolicyJSONIsAnIAMDocument(t *testing.T) {
	r := derive(t, pipeline.Config{Source: "s3://b", From: []string{"kms:" + keyA}, To: "kms:" + keyB}, Options{})
	var doc map[string]any
	if err := json.Unmarshal(r.Policy.JSON(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["Version"] != "2012-10-17" {
		t.Errorf("Version %v", doc["Version"])
	}
	for _, s := range doc["Statement"].([]any) {
		m := s.(map[string]any)
		if m["Effect"] != "Allow" || m["Sid"] == "" || len(m["Action"].([]any)) == 0 || len(m["Resource"].([]any)) == 0 {
			t.Errorf("statement %v", m)
		}
		if _, ok := m["Condition"]; ok && m["Condition"] == nil {
			t.Errorf("statement %v: null Condition", m)
		}
	}
}

func TestS3NeedsAsS3Authorizes(t *testing.T) {
	q := func(s string) url.Values { v, _ := url.ParseQuery(s); return v }
	for _, tc := range []struct {
		req  S3Request
		op   string
		want []string
	}{
		{S3Request{Method: "GET", Bucket: "b", Query: q("list-type=2&prefix=p/")}, "ListObjectsV2", []string{"s3:ListBucket arn:aws:s3:::b"}},
		{S3Request{Method: "GET", Bucket: "b", Query: q("versions&prefix=p/")}, "ListObjectVersions", []string{"s3:ListBucketVersions arn:aws:s3:::b"}},
		{S3Request{Method: "HEAD", Bucket: "b", Key: "k", Query: q("versionId=v")}, "HeadObject", []string{"s3:GetObjectVersion arn:aws:s3:::b/k"}},
		{S3Request{Method: "PUT", Bucket: "b", Key: "k", CopySource: "/b/k"}, "CopyObject", []string{
			"s3:PutObject arn:aws:s3:::b/k", "s3:GetObject arn:aws:s3:::b/k", "s3:GetObjectTagging arn:aws:s3:::b/k", "s3:PutObjectTagging arn:aws:s3:::b/k"}},
		{S3Request{Method: "PUT", Bucket: "b", Key: "k", CopySource: "/b/k?versionId=v", TaggingDirective: "REPLACE"}, "CopyObject", []string{
			"s3:PutObject arn:aws:s3:::b/k", "s3:GetObjectVersion arn:aws:s3:::b/k"}},
		{S3Request{Method: "PUT", Bucket: "b", Key: "k", Query: q("partNumber=1&uploadId=u"), CopySource: "/b/k"}, "UploadPartCopy", []string{
			"s3:PutObject arn:aws:s3:::b/k", "s3:GetObject arn:aws:s3:::b/k"}},
		{S3Request{Method: "POST", Bucket: "b", Key: "k", Query: q("uploads"), Tagging: "a=b", LegalHold: true}, "CreateMultipartUpload", []string{
			"s3:PutObject arn:aws:s3:::b/k", "s3:PutObjectTagging arn:aws:s3:::b/k", "s3:PutObjectLegalHold arn:aws:s3:::b/k"}},
		{S3Request{Method: "DELETE", Bucket: "b", Key: "k", Query: q("uploadId=u")}, "AbortMultipartUpload", []string{"s3:AbortMultipartUpload arn:aws:s3:::b/k"}},
		{S3Request{Method: "DELETE", Bucket: "b", Key: "k", Query: q("versionId=v")}, "DeleteObject", []string{"s3:DeleteObjectVersion arn:aws:s3:::b/k"}},
		{S3Request{Method: "GET", Bucket: "b", Key: "k", Query: q("acl&versionId=v")}, "GetObjectAcl", []string{"s3:GetObjectVersionAcl arn:aws:s3:::b/k"}},
		{S3Request{Method: "GET", Bucket: "b", Query: q("versioning")}, "GetBucketVersioning", []string{"s3:GetBucketVersioning arn:aws:s3:::b"}},
		{S3Request{Method: "GET", Bucket: "b", Query: q("replication")}, "GetBucketReplication", []string{"s3:GetReplicationConfiguration arn:aws:s3:::b"}},
		{S3Request{Method: "GET", Bucket: "b", Query: q("lifecycle")}, "GetBucketLifecycleConfiguration", []string{"s3:GetLifecycleConfiguration arn:aws:s3:::b"}},
	} {
		op, needs := S3Needs("aws", tc.req)
		var got []string
		for _, n := range needs {
			got = append(got, n.Action+" "+n.Resource)
		}
		if op != tc.op || !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %s %q, want %s %q", tc.req, op, got, tc.op, tc.want)
		}
	}
}

func TestAllowsNeedChecksThePrefixCondition(t *testing.T) {
	r := derive(t, pipeline.Config{Source: "s3://data/2025/", To: "kms:" + keyB}, Options{})
	list := func(prefix string) Need {
		return Need{Action: "s3:ListBucket", Resource: "arn:aws:s3:::data", Context: map[string]string{"s3:prefix": prefix}}
	}
	if !r.Policy.AllowsNeed(list("2025/")) || !r.Policy.AllowsNeed(list("2025/x/")) {
		t.Error("a listing under the prefix is refused")
	}
	if r.Policy.AllowsNeed(list("")) || r.Policy.AllowsNeed(list("2024/")) {
		t.Error("a listing outside the prefix is allowed")
	}
	if r.Policy.AllowsNeed(Need{Action: "s3:PutObject", Resource: "arn:aws:s3:::data/2024/k"}) {
		t.Error("a write outside the prefix is allowed")
	}
}

// keyE is an escrow key in the region of keyA and keyB.
const keyE = "arn:aws:kms:eu-west-1:111122223333:key/eeeeeeee-0000-0000-0000-000000000005"

// The policies of rotator escrow (Mode escrow, To the escrow key), rotator
// restore (Mode restore, Escrow its --from-escrow) and of verify --escrow
// (Options.VerifyEscrow): each KMS and S3 grant, and the notes on keys
// IAM does not authorize.
func TestEscrowCommands(t *testing.T) {
	const objs, escrowFiles = "arn:aws:s3:::data/2025/*", "arn:aws:s3:::data/2025/*.escrow.instruction"
	escrowS3 := []string{"s3:GetObject " + objs, "s3:GetObjectTagging " + escrowFiles, "s3:ListBucket arn:aws:s3:::data",
		"s3:PutObject " + escrowFiles, "s3:PutObjectTagging " + escrowFiles}
	restoreS3 := []string{"s3:AbortMultipartUpload " + objs, "s3:GetObject " + objs, "s3:GetObjectTagging " + objs,
		"s3:GetObjectVersion " + objs, "s3:ListBucket arn:aws:s3:::data", "s3:PutObject " + objs, "s3:PutObjectTagging " + objs}
	escrowCfg := func(from []string, to string) pipeline.Config {
		return pipeline.Config{Source: "s3://data/2025/", Mode: pipeline.ModeEscrow, From: from, To: to}
	}
	restoreCfg := func(esc, to string) pipeline.Config {
		return pipeline.Config{Source: "s3://data/2025/", Mode: pipeline.ModeRestore, Escrow: esc, To: to}
	}
	for _, tc := range []struct {
		name    string
		cfg     pipeline.Config
		o       Options
		kms, s3 []string
		note    string // a note that must be there
	}{
		{"escrow: ReEncrypt within a region", escrowCfg([]string{"kms:" + keyA}, "kms:"+keyE), Options{},
			[]string{"kms:DescribeKey " + keyA, "kms:DescribeKey " + keyE, "kms:ReEncryptFrom " + keyA, "kms:ReEncryptTo " + keyE}, escrowS3, ""},
		{"escrow: Decrypt and Encrypt across regions", escrowCfg([]string{"kms:" + keyC}, "kms:"+keyE), Options{},
			[]string{"kms:Decrypt " + keyC, "kms:DescribeKey " + keyE, "kms:DescribeKey " + keyC, "kms:Encrypt " + keyE}, escrowS3, ""},
		{"escrow from an HSM key: Encrypt", escrowCfg([]string{"pkcs11:token=t;object=k"}, "kms:"+keyE), Options{},
			[]string{"kms:DescribeKey " + keyE, "kms:Encrypt " + keyE}, escrowS3, "--from names HSM"},
		{"escrow to an RSA key: Decrypt", escrowCfg([]string{"kms:" + keyA}, "rsa:/etc/rotator/escrow.pub.pem"), Options{},
			[]string{"kms:Decrypt " + keyA, "kms:DescribeKey " + keyA}, escrowS3, "the escrow key is a rsa key"},
		{"escrow without --from: ReEncryptFrom on every key", escrowCfg(nil, "kms:"+keyE), Options{},
			[]string{"kms:DescribeKey " + keyE, "kms:ReEncryptFrom arn:aws:kms:eu-west-1:*:key/*", "kms:ReEncryptTo " + keyE}, escrowS3, "no --from"},
		{"escrow dry run: keys opened, nothing written", func() pipeline.Config {
			c := escrowCfg([]string{"kms:" + keyA}, "kms:"+keyE)
			c.DryRun = true
			return c
		}(), Options{},
			[]string{"kms:DescribeKey " + keyA, "kms:DescribeKey " + keyE}, []string{"s3:GetObject " + objs, "s3:ListBucket arn:aws:s3:::data"}, ""},
		{"escrow then verify --escrow", escrowCfg([]string{"kms:" + keyA}, "kms:"+keyE), Options{VerifyEscrow: true},
			[]string{"kms:Decrypt " + keyE, "kms:DescribeKey " + keyA, "kms:DescribeKey " + keyE, "kms:ReEncryptFrom " + keyA, "kms:ReEncryptTo " + keyE},
			append(slices.Clone(escrowS3), "s3:GetObjectVersion "+objs), ""},
		{"restore: Decrypt the escrow, Encrypt the target", restoreCfg("kms:"+keyE, "kms:"+keyB), Options{},
			[]string{"kms:Decrypt " + keyE, "kms:DescribeKey " + keyB, "kms:DescribeKey " + keyE, "kms:Encrypt " + keyB}, restoreS3, ""},
		{"restore from an RSA key", restoreCfg("rsa:/etc/rotator/escrow.pem", "kms:"+keyB), Options{},
			[]string{"kms:DescribeKey " + keyB, "kms:Encrypt " + keyB}, restoreS3, "the escrow key is a rsa key"},
		{"restore to an HSM key", restoreCfg("kms:"+keyE, "pkcs11:token=t;object=k"), Options{},
			[]string{"kms:Decrypt " + keyE, "kms:DescribeKey " + keyE}, restoreS3, "the target is a pkcs11 key"},
		{"restore dry run: keys opened only", func() pipeline.Config { c := restoreCfg("kms:"+keyE, "kms:"+keyB); c.DryRun = true; return c }(), Options{},
			[]string{"kms:DescribeKey " + keyB, "kms:DescribeKey " + keyE}, []string{"s3:GetObject " + objs, "s3:GetObjectVersion " + objs, "s3:ListBucket arn:aws:s3:::data"}, ""},
		{"run --escrow then verify --escrow", pipeline.Config{Source: "s3://data/2025/", From: []string{"kms:" + keyA}, To: "kms:" + keyB, Escrow: "kms:" + keyE},
			Options{VerifyEscrow: true}, []string{"kms:Decrypt " + keyE, "kms:DescribeKey " + keyA, "kms:DescribeKey " + keyB, "kms:DescribeKey " + keyE,
				"kms:ReEncryptFrom " + keyA, "kms:ReEncryptFrom " + keyB, "kms:ReEncryptTo " + keyB, "kms:ReEncryptTo " + keyE}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := derive(t, tc.cfg, tc.o)
			if got := grants(r.Policy, "kms"); !slices.Equal(got, tc.kms) {
				t.Errorf("KMS grants:\n got %q\nwant %q", got, tc.kms)
			}
			slices.Sort(tc.s3)
			if got := grants(r.Policy, "s3"); tc.s3 != nil && !slices.Equal(got, tc.s3) {
				t.Errorf("S3 grants:\n got %q\nwant %q", got, tc.s3)
			}
			if tc.note != "" && !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, tc.note) }) {
				t.Errorf("notes %q lack %q", r.Notes, tc.note)
			}
			for _, a := range r.Policy.ActionsOf("kms") {
				if strings.HasPrefix(a, "kms:GenerateDataKey") {
					t.Errorf("%s granted", a)
				}
			}
		})
	}

	// The escrow files follow --escrow-suffix.
	c := escrowCfg([]string{"kms:" + keyA}, "kms:"+keyE)
	c.EscrowSuffix = ".backup.instruction"
	if got := grants(derive(t, c, Options{}).Policy, "s3"); !slices.Contains(got, "s3:PutObject arn:aws:s3:::data/2025/*.backup.instruction") {
		t.Errorf("--escrow-suffix .backup.instruction: %q", got)
	}

	for _, tc := range []struct {
		name string
		cfg  pipeline.Config
		o    Options
		want string
	}{
		{"verify-escrow without an escrow key", pipeline.Config{Source: "s3://data", To: "kms:" + keyB}, Options{VerifyEscrow: true}, "no escrow key"},
		{"plan of rotator escrow", escrowCfg(nil, "kms:"+keyE), Options{Plan: true}, "rotator plan plans runs"},
		{"verify after rotator escrow", escrowCfg(nil, "kms:"+keyE), Options{Verify: true}, "verify-escrow"},
		{"restore with --copy-object-lock", func() pipeline.Config { c := restoreCfg("kms:"+keyE, "kms:"+keyB); c.CopyObjectLock = true; return c }(), Options{}, "no --copy-object-lock"},
	} {
		tc.cfg.Ledger = "l.db"
		if _, err := For(tc.cfg, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// verify reads each body at the version its HEAD named: in a versioned
// bucket that GET names a version (TestIAMPolicyCoversEveryRequest).
func TestVerifyReadsVersions(t *testing.T) {
	cfg := pipeline.Config{Source: "s3://data/2025/", From: []string{"kms:" + keyA}, To: "kms:" + keyB}
	if got := grants(derive(t, cfg, Options{}).Policy, "s3"); slices.Contains(got, "s3:GetObjectVersion arn:aws:s3:::data/2025/*") {
		t.Errorf("a rewrap of current versions names none: %q", got)
	}
	if got := grants(derive(t, cfg, Options{Verify: true}).Policy, "s3"); !slices.Contains(got, "s3:GetObjectVersion arn:aws:s3:::data/2025/*") {
		t.Errorf("--with verify: %q lacks s3:GetObjectVersion", got)
	}
}
