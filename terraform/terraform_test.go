// Package terraform holds no Go code: its test checks the Terraform module
// offline. It parses every .tf file with github.com/hashicorp/hcl/v2 (the
// parser Terraform and OpenTofu are built on), checks that every reference
// names something declared, evaluates the module's policy (local.policy)
// for run configurations and compares it, action by action and resource by
// resource, with what `rotator iam-policy` derives for the same flags
// (package iampolicy), and checks the ledger table against
// ledger/SCHEMA.md.
package terraform

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/rotator-dev/rotator/iampolicy"
	"github.com/rotator-dev/rotator/pipeline"
)

const moduleDir = "modules/rotator"

// module is the parsed module: its blocks by kind.
type module struct {
	files     map[string]*hcl.File
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	resources map[string]*hclsyntax.Block // "TYPE.NAME"
	data      map[string]*hclsyntax.Block // "TYPE.NAME"
	outputs   map[string]*hclsyntax.Block
}

func parseModule(t *testing.T, dir string) *module {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	p := hclparse.NewParser()
	m := &module{files: map[string]*hcl.File{}, variables: map[string]*hclsyntax.Block{}, locals: map[string]*hclsyntax.Attribute{},
		resources: map[string]*hclsyntax.Block{}, data: map[string]*hclsyntax.Block{}, outputs: map[string]*hclsyntax.Block{}}
	for _, path := range paths {
		f, diags := p.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", path, diags)
		}
		m.files[path] = f
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			switch b.Type {
			case "variable":
				m.variables[b.Labels[0]] = b
			case "locals":
				for name, a := range b.Body.Attributes {
					if m.locals[name] != nil {
						t.Errorf("local.%s declared twice", name)
					}
					m.locals[name] = a
				}
			case "resource":
				m.resources[b.Labels[0]+"."+b.Labels[1]] = b
			case "data":
				m.data[b.Labels[0]+"."+b.Labels[1]] = b
			case "output":
				m.outputs[b.Labels[0]] = b
			case "terraform":
			default:
				t.Errorf("%s: unexpected block %s", path, b.Type)
			}
		}
	}
	return m
}

// TestReferencesResolve is the part of `tofu validate` that needs no
// provider: every var., local., data. and resource reference names a
// declared block.
func TestReferencesResolve(t *testing.T) {
	m := parseModule(t, moduleDir)
	check := func(e hclsyntax.Expression) {
		for _, tr := range e.Variables() {
			root := tr.RootName()
			name := func(i int) string {
				if len(tr) <= i {
					return ""
				}
				if a, ok := tr[i].(hcl.TraverseAttr); ok {
					return a.Name
				}
				return ""
			}
			var ok bool
			switch root {
			case "var":
				ok = m.variables[name(1)] != nil
			case "local":
				ok = m.locals[name(1)] != nil
			case "data":
				ok = m.data[name(1)+"."+name(2)] != nil
			case "count", "each", "path", "terraform", "self":
				ok = true // meta-arguments
			default:
				ok = m.resources[root+"."+name(1)] != nil
			}
			if !ok {
				t.Errorf("%s: %s names nothing declared", tr.SourceRange(), traversalString(tr))
			}
		}
	}
	// walk checks the attributes of a body and of its blocks; a dynamic
	// block's iterator (its label) is a name of its content.
	var walk func(b *hclsyntax.Body, iterators []string, skip string)
	walk = func(b *hclsyntax.Body, iterators []string, skip string) {
		for name, a := range b.Attributes {
			if name == skip {
				continue // a variable's type constraint is not an expression
			}
			check(withoutIterators(a.Expr, iterators))
		}
		for _, blk := range b.Blocks {
			it := iterators
			if blk.Type == "dynamic" {
				it = append(slices.Clone(iterators), blk.Labels[0])
			}
			walk(blk.Body, it, "")
		}
	}
	for _, f := range m.files {
		for _, blk := range f.Body.(*hclsyntax.Body).Blocks {
			skip := ""
			if blk.Type == "variable" {
				skip = "type"
			}
			walk(blk.Body, nil, skip)
		}
	}
	for name, v := range m.variables {
		if v.Body.Attributes["description"] == nil {
			t.Errorf("variable %s has no description", name)
		}
	}
}

// withoutIterators hides references to dynamic block iterators.
func withoutIterators(e hclsyntax.Expression, iterators []string) hclsyntax.Expression {
	if len(iterators) == 0 {
		return e
	}
	return filtered{e, iterators}
}

type filtered struct {
	hclsyntax.Expression
	skip []string
}

func (f filtered) Variables() []hcl.Traversal {
	var out []hcl.Traversal
	for _, tr := range f.Expression.Variables() {
		if !slices.Contains(f.skip, tr.RootName()) {
			out = append(out, tr)
		}
	}
	return out
}

func traversalString(tr hcl.Traversal) string {
	s := tr.RootName()
	for _, step := range tr[1:] {
		if a, ok := step.(hcl.TraverseAttr); ok {
			s += "." + a.Name
		}
	}
	return s
}

// functions are the Terraform functions the module's locals call: go-cty's
// standard library, which Terraform's are built on, and length as
// Terraform defines it (objects count their attributes too).
var functions = map[string]function.Function{
	"compact": stdlib.CompactFunc, "concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc,
	"distinct": stdlib.DistinctFunc, "length": lengthFunc, "merge": stdlib.MergeFunc,
	"sort": stdlib.SortFunc, "split": stdlib.SplitFunc, "jsonencode": stdlib.JSONEncodeFunc,
}

var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		switch ty := v.Type(); {
		case ty.IsObjectType():
			return cty.NumberIntVal(int64(len(ty.AttributeTypes()))), nil
		case ty == cty.String:
			return stdlib.Strlen(v)
		}
		return stdlib.Length(v)
	},
})

// evalLocals evaluates every local of m with the variables vars (over the
// defaults) and the values of data sources and resources given.
func evalLocals(t *testing.T, m *module, vars map[string]cty.Value, data, resources map[string]map[string]cty.Value) map[string]cty.Value {
	t.Helper()
	all := map[string]cty.Value{}
	for name, b := range m.variables {
		if v, ok := vars[name]; ok {
			all[name] = v
			continue
		}
		d := b.Body.Attributes["default"]
		if d == nil {
			t.Fatalf("variable %s has no default and the test gives none", name)
		}
		v, diags := d.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("variable %s default: %v", name, diags)
		}
		all[name] = v
	}
	for name := range vars {
		if m.variables[name] == nil {
			t.Fatalf("the test sets var.%s, which the module does not declare", name)
		}
	}
	objects := func(in map[string]map[string]cty.Value) map[string]cty.Value {
		out := map[string]cty.Value{}
		for typ, byName := range in {
			out[typ] = cty.ObjectVal(byName)
		}
		return out
	}
	locals := map[string]cty.Value{}
	ctx := &hcl.EvalContext{Functions: functions}
	errs := map[string]hcl.Diagnostics{}
	for pass := 0; len(locals) < len(m.locals); pass++ {
		if pass > len(m.locals) {
			for name, d := range errs {
				t.Errorf("local.%s: %v", name, d)
			}
			t.FailNow()
		}
		vs := objects(resources)
		vs["var"] = cty.ObjectVal(all)
		vs["data"] = cty.ObjectVal(objects(data))
		vs["local"] = cty.ObjectVal(locals)
		ctx.Variables = vs
		for name, a := range m.locals {
			if _, done := locals[name]; done {
				continue
			}
			v, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				errs[name] = diags
				continue // it may need a local not evaluated yet
			}
			delete(errs, name)
			locals[name] = v
		}
	}
	return locals
}

// flatten lists a policy as "action resource condition" lines: two
// policies that allow the same things under the same conditions have the
// same lines, however their statements are cut and named.
func flatten(t *testing.T, p *iampolicy.Policy) []string {
	t.Helper()
	var out []string
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement %s: effect %s", s.Sid, s.Effect)
		}
		cond := ""
		if len(s.Condition) > 0 {
			b, err := json.Marshal(s.Condition)
			if err != nil {
				t.Fatal(err)
			}
			cond = string(b)
		}
		for _, a := range s.Action {
			for _, r := range s.Resource {
				out = append(out, a+" "+r+" "+cond)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func strs(ss ...string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	var vs []cty.Value
	for _, s := range ss {
		vs = append(vs, cty.StringVal(s))
	}
	return cty.ListVal(vs)
}

// TestPolicyMatchesRotatorIAMPolicy evaluates the module's policy for run
// configurations and compares it with iampolicy.For (what `rotator
// iam-policy` prints) for the same flags.
func TestPolicyMatchesRotatorIAMPolicy(t *testing.T) {
	m := parseModule(t, moduleDir)
	const (
		account = "111122223333"
		region  = "eu-west-1"
		table   = "rotator-ledger"
		keyA    = "arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000001"
		keyB    = "arn:aws:kms:eu-west-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000002"
		keyC    = "arn:aws:kms:us-east-1:111122223333:key/cccccccc-0000-0000-0000-000000000003"
		hsm     = "pkcs11:token=prod;object=s3-kek"
	)
	data := map[string]map[string]cty.Value{
		"aws_partition":       {"current": cty.ObjectVal(map[string]cty.Value{"partition": cty.StringVal("aws")})},
		"aws_region":          {"current": cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(region)})},
		"aws_caller_identity": {"current": cty.ObjectVal(map[string]cty.Value{"account_id": cty.StringVal(account)})},
	}
	resources := map[string]map[string]cty.Value{
		"aws_dynamodb_table": {"ledger": cty.ObjectVal(map[string]cty.Value{
			"arn":  cty.StringVal("arn:aws:dynamodb:" + region + ":" + account + ":table/" + table),
			"name": cty.StringVal(table),
		})},
	}
	bucket := func(b, p string) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"bucket": cty.StringVal(b), "prefix": cty.StringVal(p)})
	}
	kmsSpecs := func(arns ...string) []string {
		var out []string
		for _, a := range arns {
			out = append(out, "kms:"+a)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		cfg  pipeline.Config
		o    iampolicy.Options
		vars map[string]cty.Value
	}{
		{"scheduled CMK rotation",
			pipeline.Config{Source: "s3://data/2025/", From: kmsSpecs(keyA), To: "kms:" + keyB, ExpectedBucketOwner: account},
			iampolicy.Options{Verify: true, Ledger: true},
			map[string]cty.Value{"buckets": cty.TupleVal([]cty.Value{bucket("data", "2025/")}), "from_key_arns": strs(keyA),
				"to_key_arn": cty.StringVal(keyB), "expected_bucket_owner": cty.StringVal(account)}},
		{"sharded rotation writing its reports to S3",
			pipeline.Config{Source: "s3://data/2025/", From: kmsSpecs(keyA), To: "kms:" + keyB, ExpectedBucketOwner: account},
			iampolicy.Options{Verify: true, Ledger: true, Report: "s3://audit/rotation/"},
			map[string]cty.Value{"buckets": cty.TupleVal([]cty.Value{bucket("data", "2025/")}), "from_key_arns": strs(keyA),
				"to_key_arn": cty.StringVal(keyB), "expected_bucket_owner": cty.StringVal(account),
				"report_bucket": cty.StringVal("audit"), "report_prefix": cty.StringVal("rotation/")}},
		{"rotation from whatever key, no verify, no ledger queries",
			pipeline.Config{Source: "s3://data", To: "kms:" + keyB},
			iampolicy.Options{},
			map[string]cty.Value{"buckets": cty.TupleVal([]cty.Value{bucket("data", "")}), "to_key_arn": cty.StringVal(keyB),
				"allow_verify": cty.False, "allow_ledger_queries": cty.False}},
		{"rotation across regions and from an HSM key",
			pipeline.Config{Source: "s3://data", From: append(kmsSpecs(keyA, keyC), hsm), To: "kms:" + keyB, AllVersions: true},
			iampolicy.Options{Verify: true, Ledger: true},
			map[string]cty.Value{"buckets": cty.TupleVal([]cty.Value{bucket("data", "")}), "from_key_arns": strs(keyA, keyC),
				"from_non_kms": cty.True, "to_key_arn": cty.StringVal(keyB), "all_versions": cty.True}},
		{"KMS to CloudHSM migration",
			pipeline.Config{Source: "s3://data/x/", From: kmsSpecs(keyA), To: hsm, CheckACL: true},
			iampolicy.Options{Verify: true, Ledger: true},
			map[string]cty.Value{"buckets": cty.TupleVal([]cty.Value{bucket("data", "x/")}), "from_key_arns": strs(keyA), "check_acl": cty.True}},
		{"incident re-keying of two buckets",
			pipeline.Config{Source: "s3://data/x/", Mode: pipeline.ModeReencrypt, From: kmsSpecs(keyA, keyC), To: "kms:" + keyB,
				AllVersions: true, DeleteOldVersions: true, CheckACL: true, CopyObjectLock: true, ExpectedBucketOwner: account},
			iampolicy.Options{Buckets: []string{"logs"}, Verify: true, Ledger: true},
			map[string]cty.Value{"buckets": cty.TupleVal([]cty.Value{bucket("data", "x/"), bucket("logs", "")}), "mode": cty.StringVal("reencrypt"),
				"from_key_arns": strs(keyA, keyC), "to_key_arn": cty.StringVal(keyB), "all_versions": cty.True, "delete_old_versions": cty.True,
				"check_acl": cty.True, "copy_object_lock": cty.True, "expected_bucket_owner": cty.StringVal(account)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Ledger = "dynamodb://" + table
			tc.o.Partition, tc.o.Region, tc.o.Account = "aws", region, account
			want, err := iampolicy.For(tc.cfg, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			locals := evalLocals(t, m, tc.vars, data, resources)
			pv := locals["policy"]
			b, err := ctyjson.Marshal(pv, pv.Type())
			if err != nil {
				t.Fatalf("local.policy is not JSON: %v", err)
			}
			var got iampolicy.Policy
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("local.policy is not a policy: %v\n%s", err, b)
			}
			if got.Version != iampolicy.Version {
				t.Errorf("Version %q", got.Version)
			}
			g, w := flatten(t, &got), flatten(t, want.Policy)
			for _, l := range g {
				if !slices.Contains(w, l) {
					t.Errorf("the module grants what rotator iam-policy does not: %s", l)
				}
			}
			for _, l := range w {
				if !slices.Contains(g, l) {
					t.Errorf("the module lacks what rotator iam-policy grants: %s", l)
				}
			}
			if !slices.Equal(got.Actions(), want.Policy.Actions()) {
				t.Errorf("actions:\n module %q\n rotator iam-policy %q", got.Actions(), want.Policy.Actions())
			}
			sids := map[string]bool{}
			for _, s := range got.Statement {
				if sids[s.Sid] {
					t.Errorf("Sid %s twice", s.Sid)
				}
				sids[s.Sid] = true
			}
		})
	}
}

// schemaDoc reads ledger/SCHEMA.md's key schema, index and projection.
type schemaDoc struct {
	hash, rang, indexName, indexHash string
	projection                       []string
	cliProjection                    []string
}

func readSchema(t *testing.T) schemaDoc {
	t.Helper()
	b, err := os.ReadFile("../ledger/SCHEMA.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	find := func(re string) []string {
		m := regexp.MustCompile(re).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("SCHEMA.md: nothing matches %s", re)
		}
		return m
	}
	var d schemaDoc
	m := find("Key schema: `(\\w+)` \\(string, hash\\), `(\\w+)` \\(string, range\\)")
	d.hash, d.rang = m[1], m[2]
	d.indexName = find("### Global secondary index `(\\w+)`")[1]
	d.indexHash = find("- Hash key `(\\w+)` \\(S\\), no range key")[1]
	proj := find(`(?s)- Projection INCLUDE: (.*?)\(claims`)[1]
	for _, m := range regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(proj, -1) {
		d.projection = append(d.projection, m[1])
	}
	cli := find(`"NonKeyAttributes":\[([^\]]*)\]`)[1]
	for _, m := range regexp.MustCompile(`"(\w+)"`).FindAllStringSubmatch(cli, -1) {
		d.cliProjection = append(d.cliProjection, m[1])
	}
	return d
}

// TestLedgerTableMatchesSchema checks the module's table against
// ledger/SCHEMA.md: key schema, attribute types, the index, its
// projection, on-demand billing and point-in-time recovery.
func TestLedgerTableMatchesSchema(t *testing.T) {
	m := parseModule(t, moduleDir)
	d := readSchema(t)
	if !slices.Equal(d.cliProjection, d.projection) {
		t.Errorf("SCHEMA.md's create-table example projects %q, its index section %q", d.cliProjection, d.projection)
	}
	tbl := m.resources["aws_dynamodb_table.ledger"]
	if tbl == nil {
		t.Fatal("no aws_dynamodb_table.ledger")
	}
	str := func(body *hclsyntax.Body, name string) string {
		t.Helper()
		a := body.Attributes[name]
		if a == nil {
			t.Errorf("%s: no %s", tbl.Labels[1], name)
			return ""
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.String {
			t.Errorf("%s: %s is not a constant string", tbl.Labels[1], name)
			return ""
		}
		return v.AsString()
	}
	for name, want := range map[string]string{"hash_key": d.hash, "range_key": d.rang, "billing_mode": "PAY_PER_REQUEST"} {
		if got := str(tbl.Body, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	attrs := map[string]string{}
	var gsi, pitr *hclsyntax.Block
	for _, b := range tbl.Body.Blocks {
		switch b.Type {
		case "attribute":
			attrs[str(b.Body, "name")] = str(b.Body, "type")
		case "global_secondary_index":
			gsi = b
		case "point_in_time_recovery":
			pitr = b
		}
	}
	if want := map[string]string{d.hash: "S", d.rang: "S", d.indexHash: "S"}; fmt.Sprint(attrs) != fmt.Sprint(want) {
		t.Errorf("attributes %v, want %v", attrs, want)
	}
	if gsi == nil {
		t.Fatal("no global_secondary_index")
	}
	if got := str(gsi.Body, "name"); got != d.indexName {
		t.Errorf("index %q, want %q", got, d.indexName)
	}
	if got := str(gsi.Body, "hash_key"); got != d.indexHash {
		t.Errorf("index hash key %q, want %q", got, d.indexHash)
	}
	if _, ok := gsi.Body.Attributes["range_key"]; ok {
		t.Error("the index has a range key; SCHEMA.md says none")
	}
	if got := str(gsi.Body, "projection_type"); got != "INCLUDE" {
		t.Errorf("projection %q, want INCLUDE", got)
	}
	v, diags := gsi.Body.Attributes["non_key_attributes"].Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var proj []string
	for _, e := range v.AsValueSlice() {
		proj = append(proj, e.AsString())
	}
	if !slices.Equal(proj, d.projection) {
		t.Errorf("projected %q, want SCHEMA.md's %q", proj, d.projection)
	}
	if pitr == nil {
		t.Fatal("no point_in_time_recovery")
	}
	if v, _ := pitr.Body.Attributes["enabled"].Expr.Value(nil); v != cty.True {
		t.Error("point-in-time recovery is not enabled")
	}
	if iampolicy.IndexName != d.indexName {
		t.Errorf("iampolicy.IndexName %q, SCHEMA.md %q", iampolicy.IndexName, d.indexName)
	}
}

// TestExampleUsesTheModule parses the example and checks it calls the
// module with the variables it declares.
func TestExampleUsesTheModule(t *testing.T) {
	m := parseModule(t, moduleDir)
	paths, _ := filepath.Glob("examples/*/*.tf")
	if len(paths) == 0 {
		t.Fatal("no example")
	}
	p := hclparse.NewParser()
	calls := 0
	for _, path := range paths {
		f, diags := p.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", path, diags)
		}
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			if b.Type != "module" {
				continue
			}
			calls++
			for name := range b.Body.Attributes {
				if name != "source" && m.variables[name] == nil {
					t.Errorf("%s: module %s sets %s, which the module does not declare", path, b.Labels[0], name)
				}
			}
			for name, v := range m.variables {
				if v.Body.Attributes["default"] == nil && b.Body.Attributes[name] == nil {
					t.Errorf("%s: module %s does not set %s, which has no default", path, b.Labels[0], name)
				}
			}
			src, _ := b.Body.Attributes["source"].Expr.Value(nil)
			if dir := filepath.Join(filepath.Dir(path), src.AsString()); !strings.HasSuffix(filepath.Clean(dir), filepath.Clean(moduleDir)) {
				t.Errorf("%s: source %s is not the module", path, src.AsString())
			}
		}
	}
	if calls == 0 {
		t.Error("no example calls the module")
	}
}
