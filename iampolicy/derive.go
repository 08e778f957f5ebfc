package iampolicy

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/rotator-dev/rotator/escrow"
	"github.com/rotator-dev/rotator/inventory"
	"github.com/rotator-dev/rotator/pipeline"
	"github.com/rotator-dev/rotator/rewrap"
)

// Options say what the configuration does not: where keys and the table
// named without an ARN live, which buckets a list or inventory names, and
// which other commands the identity runs.
type Options struct {
	// Partition of the ARNs built (default "aws").
	Partition string
	// Region and Account of keys named by ID or alias and of the ledger
	// table ("*" when empty).
	Region  string
	Account string
	// Buckets the objects of a --list or --inventory are in, when the list
	// is not a local file and the inventory's path does not name its
	// source bucket (DEST-PREFIX/SOURCE-BUCKET/CONFIG/DATE/manifest.json).
	Buckets []string
	// Verify adds what `rotator verify --key TO` needs: reading the objects
	// (each body at the version its HEAD names: s3:GetObjectVersion in a
	// versioned bucket) and kms:Decrypt on a KMS target.
	Verify bool
	// VerifyEscrow adds what `rotator verify --escrow --key ESCROW` needs:
	// reading the objects and their escrow files (bodies as for Verify) and
	// kms:Decrypt on a KMS escrow key (the run's --escrow; with --mode
	// escrow its escrow key; with --mode restore its --from-escrow).
	VerifyEscrow bool
	// Ledger adds what `rotator ledger` and `rotator status` need on a
	// DynamoDB ledger: queries of the index by_wrap_key and the scan of the
	// audit export.
	Ledger bool
	// Report is the run's --report when it is in S3 (s3://BUCKET/PREFIX/
	// or s3://BUCKET/KEY); a local report needs nothing.
	Report string
	// Plan adds what `rotator plan` reads beyond the run: each bucket's
	// versioning, replication and lifecycle configuration.
	Plan bool
}

// Result is a derived policy and the notes an operator should read with it
// (wildcards it could not avoid, permissions outside IAM).
type Result struct {
	Policy *Policy
	Notes  []string
}

// Sids of the statements For writes.
const (
	SidKMSDescribe      = "KMSOpenKeys"
	SidKMSReEncryptFrom = "KMSReEncryptFromSource"
	SidKMSReEncryptTo   = "KMSReEncryptToTarget"
	SidKMSDecrypt       = "KMSDecryptSource"
	SidKMSEncrypt       = "KMSEncryptTarget"
	SidKMSVerify        = "KMSVerifyTarget"
	SidKMSEscrowFrom    = "KMSEscrowFrom"
	SidKMSEscrowTo      = "KMSEscrowTo"
	SidKMSVerifyEscrow  = "KMSVerifyThroughEscrow"
	SidKMSRestoreFrom   = "KMSDecryptEscrow"
	SidS3ReadObjects    = "S3ReadObjects"
	SidS3WriteObjects   = "S3WriteObjects"
	SidS3WriteEscrow    = "S3WriteEscrowFiles"
	SidS3DeleteVersions = "S3DeleteOldVersions"
	SidS3List           = "S3ListBucket"
	SidS3ListVersions   = "S3ListBucketVersions"
	SidS3ListUploads    = "S3ListMultipartUploads"
	SidS3Reports        = "S3ReadInventoryOrList"
	SidS3WriteReport    = "S3WriteReport"
	SidS3ReportBucket   = "S3ReportBucket"
	SidS3BucketConfig   = "S3ReadBucketConfiguration"
	SidLedgerTable      = "LedgerTable"
	SidLedgerIndex      = "LedgerIndex"
)

// For derives the least-privilege policy of a `rotator run` (and `rotator
// resume`) with configuration cfg; of `rotator escrow` with cfg.Mode
// pipeline.ModeEscrow (To is the escrow key, as that command sets it) and
// of `rotator restore` with pipeline.ModeRestore (Escrow is its
// --from-escrow). It reads nothing over the network; it reads a local
// --list file for the buckets it names.
func For(cfg pipeline.Config, o Options) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkModeOptions(cfg, o); err != nil {
		return nil, err
	}
	if o.Partition == "" {
		o.Partition = "aws"
	}
	if o.Region == "" {
		o.Region = "*"
	}
	if o.Account == "" {
		o.Account = "*"
	}
	d := &deriver{cfg: cfg, o: o, res: &Result{}}
	if err := d.kms(); err != nil {
		return nil, err
	}
	if err := d.s3(); err != nil {
		return nil, err
	}
	if err := d.report(); err != nil {
		return nil, err
	}
	if err := d.ledger(); err != nil {
		return nil, err
	}
	p := &Policy{Version: Version, Statement: d.b.stmts}
	uniqueSids(p)
	d.res.Policy = p
	return d.res, nil
}

type deriver struct {
	cfg pipeline.Config
	o   Options
	b   builder
	res *Result
	// versions: requests may name object versions (see namesVersions).
	versions bool
}

func (d *deriver) note(format string, args ...any) {
	d.res.Notes = append(d.res.Notes, fmt.Sprintf(format, args...))
}

func (d *deriver) reencrypt() bool { return d.cfg.Mode == pipeline.ModeReencrypt }

// checkModeOptions refuses what the commands of modes escrow and restore
// do not do: their commands take no --copy-object-lock, rotator plan plans
// runs only, and after rotator escrow the objects are still under their
// own keys (verify them through the escrow with VerifyEscrow).
func checkModeOptions(cfg pipeline.Config, o Options) error {
	m := cfg.Mode
	if m != pipeline.ModeEscrow && m != pipeline.ModeRestore {
		return nil
	}
	switch {
	case cfg.CopyObjectLock:
		return fmt.Errorf("--copy-object-lock: rotator %s takes no --copy-object-lock", m)
	case o.Plan:
		return fmt.Errorf("--with plan: rotator plan plans runs (rewrap, reencrypt), not rotator %s", m)
	case o.Verify && m == pipeline.ModeEscrow:
		return errors.New("--with verify: rotator escrow leaves every object under its own key; --with verify-escrow is what verify --escrow --key ESCROW needs")
	}
	return nil
}

// escrowKeySpec is the escrow key of the configuration: rotator escrow's
// (To), or the run's --escrow and restore's --from-escrow (Escrow).
func (d *deriver) escrowKeySpec() string {
	if d.cfg.Mode == pipeline.ModeEscrow {
		return d.cfg.To
	}
	return d.cfg.Escrow
}

// readsBodiesAtVersions reports whether a command reads bodies at the
// version their HEAD named (verify, and restore checking a V2 object's
// escrowed data key against its body): in a versioned bucket those GETs
// name a version, so s3:GetObjectVersion is needed whatever the flags.
func (d *deriver) readsBodiesAtVersions() bool {
	return d.o.Verify || d.o.VerifyEscrow || d.cfg.Mode == pipeline.ModeRestore
}

// keyRef is a KMS key as a policy names it.
type keyRef struct {
	region   string // "*" when unknown
	resource string
	cond     Condition
}

func (d *deriver) kmsKey(spec rewrap.Spec) keyRef {
	id := spec.KMSKeyID
	if strings.HasPrefix(id, "arn:") {
		p := strings.SplitN(id, ":", 6)
		if len(p) == 6 {
			if name, ok := strings.CutPrefix(p[5], "alias/"); ok {
				return keyRef{region: p[3], resource: strings.Join(append(p[:5:5], "key/*"), ":"),
					cond: Condition{"ForAnyValue:StringEquals": {"kms:ResourceAliases": {"alias/" + name}}}}
			}
			return keyRef{region: p[3], resource: id}
		}
	}
	region := d.o.Region
	arn := "arn:" + d.o.Partition + ":kms:" + region + ":" + d.o.Account + ":key/"
	if strings.HasPrefix(id, "alias/") {
		return keyRef{region: region, resource: arn + "*", cond: Condition{"ForAnyValue:StringEquals": {"kms:ResourceAliases": {id}}}}
	}
	return keyRef{region: region, resource: arn + id}
}

func (d *deriver) addKey(sid string, actions []string, k keyRef) {
	d.b.add(sid, actions, []string{k.resource}, k.cond)
}

func (d *deriver) kms() error {
	to, err := rewrap.ParseSpec(d.cfg.To)
	if err != nil {
		return err
	}
	var froms []keyRef
	var nonKMSFrom bool
	for _, f := range d.cfg.From {
		s, err := rewrap.ParseSpec(f)
		if err != nil {
			return err
		}
		if s.Kind == rewrap.KindKMS {
			froms = append(froms, d.kmsKey(s))
		} else {
			nonKMSFrom = true
		}
	}
	var target *keyRef
	if to.Kind == rewrap.KindKMS {
		k := d.kmsKey(to)
		target = &k
		d.addKey(SidKMSDescribe, []string{"kms:DescribeKey"}, k)
	} else if d.cfg.Mode == pipeline.ModeEscrow {
		d.note("the escrow key is a %s key: the HSM or the key file authorizes its use, not IAM", to.Kind)
	} else {
		d.note("the target is a %s key: the HSM or the key file authorizes its use, not IAM", to.Kind)
	}
	for _, f := range froms {
		d.addKey(SidKMSDescribe, []string{"kms:DescribeKey"}, f)
	}
	if nonKMSFrom {
		d.note("--from names HSM or local keys: their use is authorized by the HSM (its crypto user's PIN) or the key files, not IAM")
	}
	if d.o.Verify && target != nil {
		d.addKey(SidKMSVerify, []string{"kms:Decrypt"}, *target)
	}
	if d.o.VerifyEscrow {
		if err := d.verifyEscrowKMS(); err != nil {
			return err
		}
	}
	switch d.cfg.Mode {
	case pipeline.ModeEscrow:
		if !d.cfg.DryRun {
			d.escrowModeKMS(froms, nonKMSFrom, target)
		}
		return nil
	case pipeline.ModeRestore:
		return d.restoreKMS(target)
	}
	if d.cfg.DryRun {
		return nil // keys are opened, never used
	}
	if err := d.escrowKMS(froms, nonKMSFrom, target); err != nil {
		return err
	}
	if d.reencrypt() {
		for _, f := range froms {
			d.addKey(SidKMSDecrypt, []string{"kms:Decrypt"}, f)
		}
		if target != nil {
			d.addKey(SidKMSEncrypt, []string{"kms:Encrypt"}, *target)
		}
		return nil
	}
	// Rewrap.
	if target == nil {
		for _, f := range froms {
			d.addKey(SidKMSDecrypt, []string{"kms:Decrypt"}, f)
		}
		return nil
	}
	d.kmsMove(moveSids{SidKMSReEncryptFrom, SidKMSReEncryptTo, SidKMSDecrypt, SidKMSEncrypt}, froms, nonKMSFrom, *target)
	return nil
}

// moveSids name the statements of a move of data keys to a KMS key.
type moveSids struct{ reFrom, reTo, decrypt, encrypt string }

// kmsMove adds what moving data keys from the KMS keys froms (and, with
// nonKMS, from HSM or local keys) to the KMS key to needs
// (rewrap.Rewrap): KMS ReEncrypt between keys of one region
// (kms:ReEncryptFrom on the source, kms:ReEncryptTo on to), else
// kms:Decrypt on the source and kms:Encrypt on to; without --from,
// ReEncrypt finds each object's key itself (kms:ReEncryptFrom on every
// key of to's region).
func (d *deriver) kmsMove(sid moveSids, froms []keyRef, nonKMS bool, to keyRef) {
	encrypt := nonKMS
	for _, f := range froms {
		if sameRegion(f.region, to.region) {
			d.addKey(sid.reFrom, []string{"kms:ReEncryptFrom"}, f)
			d.addKey(sid.reTo, []string{"kms:ReEncryptTo"}, to)
		} else {
			d.addKey(sid.decrypt, []string{"kms:Decrypt"}, f)
			encrypt = true
		}
	}
	if len(d.cfg.From) == 0 {
		any := "arn:" + d.o.Partition + ":kms:" + to.region + ":" + d.o.Account + ":key/*"
		d.b.add(sid.reFrom, []string{"kms:ReEncryptFrom"}, []string{any}, nil)
		d.addKey(sid.reTo, []string{"kms:ReEncryptTo"}, to)
		d.note("no --from: KMS ReEncrypt finds each object's key itself, so kms:ReEncryptFrom is granted on every key (%s); name the source keys with --from to narrow it", any)
	}
	if encrypt {
		d.addKey(sid.encrypt, []string{"kms:Encrypt"}, to)
	}
}

// escrowModeKMS adds what `rotator escrow` needs in KMS: each object under
// a --from key (any KMS-wrapped object without --from) gets its data key
// wrapped under the escrow key (ek, nil when it is not a KMS key) the way a
// rewrap would move it there (Core.newWrappingTo): ReEncrypt within a
// region, no data key in the process. Objects already under the escrow
// key are skipped. To a non-KMS escrow key, KMS-wrapped data keys are
// decrypted.
func (d *deriver) escrowModeKMS(froms []keyRef, nonKMSFrom bool, ek *keyRef) {
	if ek == nil {
		for _, f := range froms {
			d.addKey(SidKMSEscrowFrom, []string{"kms:Decrypt"}, f)
		}
		return
	}
	d.kmsMove(moveSids{SidKMSEscrowFrom, SidKMSEscrowTo, SidKMSEscrowFrom, SidKMSEscrowTo}, froms, nonKMSFrom, *ek)
}

// restoreKMS adds what `rotator restore` needs in KMS
// (Core.escrowWrapping): each data key is unwrapped from the object's
// escrow file with the escrow key (kms:Decrypt: the data key is checked
// against the object before anything is written, so never ReEncrypt) and
// wrapped under the target (kms:Encrypt, target nil when it is not a KMS
// key). Both keys are opened (kms:DescribeKey), in a dry run too.
func (d *deriver) restoreKMS(target *keyRef) error {
	es, err := rewrap.ParseSpec(d.cfg.Escrow)
	if err != nil {
		return fmt.Errorf("--from-escrow: %w", err)
	}
	var ek *keyRef
	if es.Kind == rewrap.KindKMS {
		k := d.kmsKey(es)
		ek = &k
		d.addKey(SidKMSDescribe, []string{"kms:DescribeKey"}, k)
	} else {
		d.note("the escrow key is a %s key: the HSM or the key file (for rsa: the private key) opens the escrow files, not IAM", es.Kind)
	}
	if d.cfg.DryRun {
		return nil
	}
	if ek != nil {
		d.addKey(SidKMSRestoreFrom, []string{"kms:Decrypt"}, *ek)
	}
	if target != nil {
		d.addKey(SidKMSEncrypt, []string{"kms:Encrypt"}, *target)
	}
	return nil
}

// verifyEscrowKMS adds what `rotator verify --escrow --key ESCROW` needs in
// KMS: the escrow key opened (kms:DescribeKey) and each escrowed data key
// unwrapped with it (kms:Decrypt).
func (d *deriver) verifyEscrowKMS() error {
	spec := d.escrowKeySpec()
	if spec == "" {
		return errors.New("--with verify-escrow: no escrow key: give the run's --escrow (with --mode escrow the escrow key, with --mode restore --from-escrow)")
	}
	es, err := rewrap.ParseSpec(spec)
	if err != nil {
		return fmt.Errorf("escrow key: %w", err)
	}
	if es.Kind != rewrap.KindKMS {
		d.note("verify --escrow with a %s escrow key: the HSM or the key file (for rsa: the private key) opens the escrow files, not IAM", es.Kind)
		return nil
	}
	k := d.kmsKey(es)
	d.addKey(SidKMSDescribe, []string{"kms:DescribeKey"}, k)
	d.addKey(SidKMSVerifyEscrow, []string{"kms:Decrypt"}, k)
	return nil
}

// sameRegion: a region of "*" (unknown) is taken to be the target's, as
// rotator resolves keys named without an ARN in the client's region.
func sameRegion(a, b string) bool { return a == b || a == "*" || b == "*" }

// scope is a bucket and the key prefix the run touches in it.
type scope struct{ bucket, prefix string }

func (s scope) bucketARN(part string) string { return "arn:" + part + ":s3:::" + s.bucket }
func (s scope) objectsARN(part string) string {
	return "arn:" + part + ":s3:::" + s.bucket + "/" + s.prefix + "*"
}

func (d *deriver) s3Cond(extra Condition) Condition {
	if d.cfg.ExpectedBucketOwner == "" {
		return extra
	}
	c := Condition{}
	for op, kv := range extra {
		c[op] = kv
	}
	if c["StringEquals"] == nil {
		c["StringEquals"] = map[string][]string{}
	}
	c["StringEquals"]["s3:ResourceAccount"] = []string{d.cfg.ExpectedBucketOwner}
	return c
}

func (d *deriver) s3() error {
	part := d.o.Partition
	// Requests name versions when the run reads them (--all-versions, a
	// list or inventory with version ids) and when re-encryption pins the
	// version it read; a rewrap of current versions names none, in a
	// versioned bucket too.
	d.versions = d.cfg.AllVersions || d.reencrypt() || d.cfg.Inventory != "" || strings.HasPrefix(d.cfg.List, "s3://")
	scopes, err := d.scopes()
	if err != nil {
		return err
	}
	read := []string{"s3:GetObject"}
	write := []string{"s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:AbortMultipartUpload"}
	if d.cfg.CheckACL {
		read = append(read, "s3:GetObjectAcl")
	}
	if !d.versions && d.readsBodiesAtVersions() {
		read = append(read, "s3:GetObjectVersion")
	}
	if d.versions {
		read = append(read, "s3:GetObjectVersion")
		if d.reencrypt() {
			// A rewrap copies the current version onto itself (the copy
			// source names no version) and reads an instruction file's
			// tags, never a version's; a re-encryption reads the tags of
			// the version it read.
			write = append(write, "s3:GetObjectVersionTagging")
		}
		if d.cfg.CheckACL {
			read = append(read, "s3:GetObjectVersionAcl")
		}
	}
	if d.cfg.Placement == pipeline.PlacementInstructionFile {
		// A move whose copy did not land deletes the instruction file it
		// created (KEY.instruction, under the same prefix).
		write = append(write, "s3:DeleteObject")
	}
	if d.cfg.CopyObjectLock {
		read = append(read, "s3:GetObjectRetention", "s3:GetObjectLegalHold")
		write = append(write, "s3:PutObjectRetention", "s3:PutObjectLegalHold")
	}
	escrowFiles := d.cfg.Mode == pipeline.ModeEscrow
	if escrowFiles {
		// rotator escrow writes escrow files only: created with
		// If-None-Match, rewritten with If-Match keeping their tags
		// (commit.WriteInstruction reads them, and writes them back with
		// the file).
		write = []string{"s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging"}
	}
	suffix := d.cfg.EscrowSuffix
	if suffix == "" {
		suffix = escrow.DefaultSuffix
	}
	for _, s := range scopes {
		objs := []string{s.objectsARN(part)}
		d.b.add(SidS3ReadObjects, read, objs, d.s3Cond(nil))
		switch {
		case d.cfg.DryRun:
		case escrowFiles:
			d.b.add(SidS3WriteEscrow, write, []string{s.objectsARN(part) + suffix}, d.s3Cond(nil))
		default:
			d.b.add(SidS3WriteObjects, write, objs, d.s3Cond(nil))
		}
		if d.cfg.DeleteOldVersions && !d.cfg.DryRun {
			d.b.add(SidS3DeleteVersions, []string{"s3:DeleteObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"}, objs, d.s3Cond(nil))
		}
		var prefixCond Condition
		if s.prefix != "" {
			prefixCond = Condition{"StringLike": {"s3:prefix": {s.prefix + "*"}}}
		}
		if d.cfg.AllVersions {
			d.b.add(SidS3ListVersions, []string{"s3:ListBucketVersions"}, []string{s.bucketARN(part)}, d.s3Cond(prefixCond))
		} else if d.cfg.Source != "" {
			d.b.add(SidS3List, []string{"s3:ListBucket"}, []string{s.bucketARN(part)}, d.s3Cond(prefixCond))
		}
		if d.o.Plan {
			d.b.add(SidS3BucketConfig, []string{"s3:GetBucketVersioning", "s3:GetReplicationConfiguration", "s3:GetLifecycleConfiguration"},
				[]string{s.bucketARN(part)}, d.s3Cond(nil))
		}
		if d.reencrypt() && !d.cfg.DryRun {
			d.b.add(SidS3ListUploads, []string{"s3:ListBucketMultipartUploads"}, []string{s.bucketARN(part)}, d.s3Cond(nil))
		}
	}
	return nil
}

// scopes returns the buckets and prefixes the objects are in, and adds
// the statement that reads an inventory report or an s3:// list.
func (d *deriver) scopes() ([]scope, error) {
	part := d.o.Partition
	var out []scope
	for _, b := range d.o.Buckets {
		out = append(out, scope{bucket: b})
	}
	switch {
	case d.cfg.Source != "":
		b, p, err := inventory.ParseS3URL(d.cfg.Source)
		if err != nil {
			return nil, err
		}
		out = append(out, scope{bucket: b, prefix: p})
	case d.cfg.Inventory != "":
		b, k, err := inventory.ParseS3URL(d.cfg.Inventory)
		if err != nil {
			return nil, err
		}
		// DEST-PREFIX/SOURCE-BUCKET/CONFIG/DATE/manifest.json: the data
		// files are in DEST-PREFIX/SOURCE-BUCKET/CONFIG/data/.
		dir := path.Dir(k)
		parts := strings.Split(dir, "/")
		report := dir + "/"
		if len(parts) >= 3 {
			report = path.Dir(dir) + "/"
			if len(d.o.Buckets) == 0 {
				out = append(out, scope{bucket: parts[len(parts)-3]})
			}
		} else if len(d.o.Buckets) == 0 {
			return nil, errors.New("the inventory's path does not name its source bucket (DEST-PREFIX/SOURCE-BUCKET/CONFIG/DATE/manifest.json): name the buckets its objects are in with --bucket")
		}
		d.b.add(SidS3Reports, []string{"s3:GetObject"}, []string{"arn:" + part + ":s3:::" + b + "/" + report + "*"}, d.s3Cond(nil))
		d.note("the inventory report is read from s3://%s/%s (its data files must be there too, as S3 Inventory writes them)", b, report)
	case d.cfg.List != "":
		if strings.HasPrefix(d.cfg.List, "s3://") {
			b, k, err := inventory.ParseS3URL(d.cfg.List)
			if err != nil {
				return nil, err
			}
			d.b.add(SidS3Reports, []string{"s3:GetObject"}, []string{"arn:" + part + ":s3:::" + b + "/" + k}, d.s3Cond(nil))
			if len(d.o.Buckets) == 0 {
				return nil, errors.New("the list is in S3: name the buckets its objects are in with --bucket (a local list file is read for them)")
			}
			break
		}
		bs, versions, err := readList(d.cfg.List)
		if err != nil {
			return nil, err
		}
		d.versions = d.versions || versions
		for _, b := range bs {
			out = append(out, scope{bucket: b})
		}
	}
	slices.SortFunc(out, func(a, b scope) int { return strings.Compare(a.bucket+"/"+a.prefix, b.bucket+"/"+b.prefix) })
	return slices.Compact(out), nil
}

// readList reads the buckets a local bucket,key[,version] list names, and
// whether it names versions.
func readList(file string) (buckets []string, versions bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false, fmt.Errorf("read --list for its buckets: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	seen := map[string]bool{}
	var out []string
	for n := 1; ; n++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("read --list for its buckets: %w", err)
		}
		if len(rec) < 2 {
			return nil, false, fmt.Errorf("read --list for its buckets: line %s: want bucket,key[,version]", strconv.Itoa(n))
		}
		if b := strings.TrimSpace(rec[0]); b != "" && !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
		if len(rec) > 2 && strings.TrimSpace(rec[2]) != "" {
			versions = true
		}
	}
	return out, versions, nil
}

func (d *deriver) ledger() error {
	u := d.cfg.Ledger
	spec, ok := strings.CutPrefix(u, "dynamodb://")
	if !ok {
		d.note("the ledger is an embedded file (%s): no DynamoDB permission; use --ledger dynamodb://TABLE when several workers share a run", u)
		return nil
	}
	table, query, _ := strings.Cut(spec, "?")
	arn := "arn:" + d.o.Partition + ":dynamodb:" + d.o.Region + ":" + d.o.Account + ":table/" + table
	// Items are read one by one, or in batches when reads overlap (the
	// ledger coalesces them), in a dry run too.
	actions := []string{"dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
	if !d.cfg.DryRun {
		// Claims released, journal items dropped; leases, the intent
		// journal and uploads queried. A dry run records the run and its
		// observations only.
		actions = append(actions, "dynamodb:DeleteItem", "dynamodb:Query")
	}
	if strings.Contains(query, "create=true") {
		actions = append(actions, "dynamodb:CreateTable")
	}
	if d.o.Ledger {
		actions = append(actions, "dynamodb:Scan", "dynamodb:Query")
		d.b.add(SidLedgerIndex, []string{"dynamodb:Query"}, []string{arn + "/index/" + IndexName}, nil)
	}
	d.b.add(SidLedgerTable, actions, []string{arn}, nil)
	return nil
}

// IndexName is the ledger's global secondary index (ledger/SCHEMA.md).
const IndexName = "by_wrap_key"

// uniqueSids numbers statements that share a Sid (one per condition).
func uniqueSids(p *Policy) {
	n := map[string]int{}
	for _, s := range p.Statement {
		n[s.Sid]++
	}
	seen := map[string]int{}
	for i := range p.Statement {
		s := &p.Statement[i]
		if n[s.Sid] > 1 {
			seen[s.Sid]++
			s.Sid += strconv.Itoa(seen[s.Sid])
		}
	}
}

// report adds what writing an s3:// --report needs (pipeline.S3Report):
// s3:GetObject (HEAD, and reading back a report being continued),
// s3:PutObject (PutObject, or a multipart upload, its part copies and its
// completion) and s3:AbortMultipartUpload on the report's object or
// prefix; on its bucket s3:ListBucketMultipartUploads (uploads a killed
// process left are aborted) and s3:ListBucket (without it S3 answers a
// HEAD of a report not yet written with 403, not 404).
func (d *deriver) report() error {
	if !strings.HasPrefix(d.o.Report, "s3://") {
		return nil
	}
	b, k, err := inventory.ParseS3URL(d.o.Report)
	if err != nil || b == "" {
		return fmt.Errorf("--report %s: want s3://BUCKET/PREFIX/ (or a local file)", d.o.Report)
	}
	part := d.o.Partition
	obj := "arn:" + part + ":s3:::" + b + "/" + k
	if k == "" || strings.HasSuffix(k, "/") {
		obj += "*"
	}
	d.b.add(SidS3WriteReport, []string{"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}, []string{obj}, d.s3Cond(nil))
	d.b.add(SidS3ReportBucket, []string{"s3:ListBucket", "s3:ListBucketMultipartUploads"}, []string{"arn:" + part + ":s3:::" + b}, d.s3Cond(nil))
	d.note("the report is written to s3://%s/%s (s3:ListBucket on its bucket lets a HEAD of a report not yet written answer 404)", b, k)
	return nil
}

// escrowKMS adds what run --escrow needs in KMS (pipeline/escrow.go): the
// escrow file of each object is wrapped from the object's current
// wrapping (a --from key, or the target for an object already under it):
// KMS ReEncrypt between keys of one region (kms:ReEncryptFrom on the
// source, kms:ReEncryptTo on the escrow key; no data key in the process),
// else kms:Decrypt on the source and kms:Encrypt on the escrow key. A
// re-encryption escrows its new data key from the target's wrapping.
// The escrow files are objects beside the others (s3:GetObject and
// s3:PutObject, granted already).
func (d *deriver) escrowKMS(froms []keyRef, nonKMSFrom bool, target *keyRef) error {
	if d.cfg.Escrow == "" {
		return nil
	}
	es, err := rewrap.ParseSpec(d.cfg.Escrow)
	if err != nil {
		return fmt.Errorf("--escrow: %w", err)
	}
	sources := slices.Clone(froms)
	if target != nil {
		sources = append(sources, *target) // objects already under it are escrowed too
	}
	if es.Kind != rewrap.KindKMS {
		d.note("the escrow key is a %s key: the HSM or the key file authorizes its use, not IAM; KMS-wrapped data keys are decrypted to be escrowed", es.Kind)
		for _, s := range sources {
			d.addKey(SidKMSEscrowFrom, []string{"kms:Decrypt"}, s)
		}
		return nil
	}
	ek := d.kmsKey(es)
	d.addKey(SidKMSDescribe, []string{"kms:DescribeKey"}, ek)
	// The data key is in the process when it comes from a non-KMS key: a
	// --from key, or a non-KMS target whose new data keys a re-encryption
	// escrows. Objects a rewrap finds already under a non-KMS target are
	// escrowed only when they have no escrow file yet.
	encrypt := nonKMSFrom || (target == nil && d.reencrypt())
	if target == nil && !d.reencrypt() && !encrypt {
		d.note("objects already under the %s target with no escrow file yet are escrowed from it: add kms:Encrypt on the escrow key if earlier runs left such objects", "non-KMS")
	}
	for _, s := range sources {
		if sameRegion(s.region, ek.region) {
			d.addKey(SidKMSEscrowFrom, []string{"kms:ReEncryptFrom"}, s)
			d.addKey(SidKMSEscrowTo, []string{"kms:ReEncryptTo"}, ek)
		} else {
			d.addKey(SidKMSEscrowFrom, []string{"kms:Decrypt"}, s)
			encrypt = true
		}
	}
	if len(d.cfg.From) == 0 {
		any := "arn:" + d.o.Partition + ":kms:" + ek.region + ":" + d.o.Account + ":key/*"
		d.b.add(SidKMSEscrowFrom, []string{"kms:ReEncryptFrom"}, []string{any}, nil)
		d.addKey(SidKMSEscrowTo, []string{"kms:ReEncryptTo"}, ek)
	}
	if encrypt {
		d.addKey(SidKMSEscrowTo, []string{"kms:Encrypt"}, ek)
	}
	return nil
}
