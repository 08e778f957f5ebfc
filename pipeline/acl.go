package pipeline

import (
	"context"
	"errors"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/reencrypt"
)

// ACLReader reads the grants of an object's ACL that a rewrite would drop
// (commit.Committer).
type ACLReader interface {
	ExtraGrants(ctx context.Context, obj *commit.Object) ([]commit.Grant, error)
}

var _ ACLReader = (*commit.Committer)(nil)

// checkGrants fails with commit.ErrACLWouldBeDropped when obj's ACL has
// grants a rewrite would drop. A missing object (an instruction file that
// does not exist) has none.
func checkGrants(ctx context.Context, acl ACLReader, obj *commit.Object) error {
	grants, err := acl.ExtraGrants(ctx, obj)
	switch {
	case errors.Is(err, commit.ErrGone):
		return nil
	case err != nil:
		return err
	case len(grants) > 0:
		return commit.GrantsError(obj, grants)
	}
	return nil
}

// ACLGuard returns c checking ACLs before it writes (aclCommitter): the
// core's Committer under --check-acl.
func ACLGuard(c Committer, acl ACLReader) Committer { return aclCommitter{Committer: c, acl: acl} }

// ACLGuardWriter returns w checking ACLs before it writes (aclWriter): the
// re-encryption engine's Writer under --check-acl. suffix is the
// instruction files' (default envelope.DefaultInstructionSuffix).
func ACLGuardWriter(w reencrypt.Writer, acl ACLReader, suffix string) reencrypt.Writer {
	if suffix == "" {
		suffix = envelope.DefaultInstructionSuffix
	}
	return aclWriter{Writer: w, acl: acl, suffix: suffix}
}

// aclCommitter is the core's Committer with --check-acl: before it writes
// an object's metadata (self-copy) or an instruction file, it reads the
// ACL of what it overwrites, and refuses (commit.ErrACLWouldBeDropped,
// nothing written) when the write would drop grants.
type aclCommitter struct {
	Committer
	acl ACLReader
}

func (a aclCommitter) MetadataEnvelope(ctx context.Context, obj *commit.Object, newMeta map[string]string) (commit.Result, error) {
	if err := checkGrants(ctx, a.acl, obj); err != nil {
		return commit.Result{}, err
	}
	return a.Committer.MetadataEnvelope(ctx, obj, newMeta)
}

func (a aclCommitter) WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error) {
	if err := checkGrants(ctx, a.acl, instr); err != nil {
		return commit.Result{}, err
	}
	return a.Committer.WriteInstruction(ctx, instr, body)
}

// aclWriter is the re-encryption engine's Writer with --check-acl: before
// the first write of an object's new content (a multipart upload or a
// PutObject) it reads the ACLs of the object and of its instruction file,
// which is written after the content, and refuses when either would lose
// grants. The instruction file is looked up by name, whatever the
// object's placement: one more request per object.
type aclWriter struct {
	reencrypt.Writer
	acl    ACLReader
	suffix string
}

func (a aclWriter) check(ctx context.Context, obj *commit.Object) error {
	if err := checkGrants(ctx, a.acl, obj); err != nil {
		return err
	}
	return checkGrants(ctx, a.acl, &commit.Object{Bucket: obj.Bucket, Key: envelope.InstructionKey(obj.Key, a.suffix)})
}

func (a aclWriter) CreateUpload(ctx context.Context, obj *commit.Object, meta map[string]string) (string, error) {
	if err := a.check(ctx, obj); err != nil {
		return "", err
	}
	return a.Writer.CreateUpload(ctx, obj, meta)
}

func (a aclWriter) PutContent(ctx context.Context, obj *commit.Object, meta map[string]string, body []byte) (commit.Result, error) {
	if err := a.check(ctx, obj); err != nil {
		return commit.Result{}, err
	}
	return a.Writer.PutContent(ctx, obj, meta, body)
}

var (
	_ Committer        = aclCommitter{}
	_ reencrypt.Writer = aclWriter{}
)

// aclTargets returns what acting on cl rewrites, whose ACLs --check-acl
// reads: the object itself when its envelope is in its metadata or it is
// re-encrypted, and its instruction file when the envelope is there.
func aclTargets(cl *Classification, action string) []*commit.Object {
	var out []*commit.Object
	if action == ActionReencrypt || cl.Instr == nil {
		out = append(out, cl.Obj)
	}
	if cl.Instr != nil {
		out = append(out, cl.Instr)
	}
	return out
}
