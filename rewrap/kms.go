package rewrap

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rotator-dev/rotator/envelope"
)

// kmsKeyring is a KMS key, named by its ARN, reached through its region's
// client (which its region's pacer paces).
type kmsKeyring struct {
	arn       string
	partition string
	r         *kmsRegion
}

var (
	_ Keyring     = (*kmsKeyring)(nil)
	_ Recognizer  = (*kmsKeyring)(nil)
	_ ReEncrypter = (*kmsKeyring)(nil)
)

func (d *Deps) openKMS(ctx context.Context, spec Spec) (*kmsKeyring, error) {
	region := d.AWS.Region
	if a, ok := splitARN(spec.KMSKeyID); ok {
		region = a.region
	}
	if region == "" {
		return nil, newError("open", spec.String(), CodeConfig, "no AWS region for "+spec.KMSKeyID,
			"set AWS_REGION, or name the key by its ARN")
	}
	r, err := d.region(region)
	if err != nil {
		return nil, err
	}
	out, err := r.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(spec.KMSKeyID)})
	if err != nil {
		return nil, kmsError("DescribeKey", spec.String(), sideOpen,
			"grant kms:DescribeKey on "+spec.KMSKeyID+" (and check that it exists in "+region+")", err)
	}
	md := out.KeyMetadata
	if md == nil || md.Arn == nil {
		return nil, newError("kms DescribeKey", spec.String(), CodeRequestFailed, "answer without key metadata", "")
	}
	arn := *md.Arn
	switch md.KeyState {
	case types.KeyStateEnabled:
	case types.KeyStateDisabled:
		return nil, newError("open", arn, (&types.DisabledException{}).ErrorCode(),
			fmt.Sprintf("%s (named by %s) is disabled", arn, spec.String()),
			"enable it (aws kms enable-key --key-id "+arn+") or name another key")
	case types.KeyStatePendingDeletion, types.KeyStatePendingReplicaDeletion:
		return nil, newError("open", arn, (&types.KMSInvalidStateException{}).ErrorCode(),
			fmt.Sprintf("%s (named by %s) is pending deletion", arn, spec.String()),
			"cancel the deletion (aws kms cancel-key-deletion --key-id "+arn+", then enable-key) or name another key")
	default:
		return nil, newError("open", arn, (&types.KMSInvalidStateException{}).ErrorCode(),
			fmt.Sprintf("%s (named by %s) is in state %s", arn, spec.String(), md.KeyState),
			"wait until the key is Enabled, or name another key")
	}
	if md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || md.KeySpec != types.KeySpecSymmetricDefault {
		return nil, newError("open", arn, (&types.InvalidKeyUsageException{}).ErrorCode(),
			fmt.Sprintf("%s is a %s key for %s", arn, md.KeySpec, md.KeyUsage),
			"S3EC wraps data keys with symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) only")
	}
	a, ok := splitARN(arn)
	if !ok {
		return nil, newError("open", arn, CodeRequestFailed, "DescribeKey answered with a malformed key ARN", "")
	}
	if a.region != region {
		return nil, newError("open", arn, CodeConfig,
			fmt.Sprintf("the key is in %s, the client in %s", a.region, region), "name the key by its ARN")
	}
	return &kmsKeyring{arn: arn, partition: a.partition, r: r}, nil
}

type arnParts struct{ partition, region string }

// splitARN returns the partition and region of a KMS ARN.
func splitARN(s string) (arnParts, bool) {
	p := strings.SplitN(s, ":", 6)
	if len(p) != 6 || p[0] != "arn" || p[2] != "kms" || p[1] == "" || p[3] == "" {
		return arnParts{}, false
	}
	return arnParts{partition: p[1], region: p[3]}, true
}

// ID returns the key ARN.
func (k *kmsKeyring) ID() string { return k.arn }

// Kind returns KindKMS.
func (k *kmsKeyring) Kind() Kind { return KindKMS }

// Region returns the key's region.
func (k *kmsKeyring) Region() string { return k.r.name }

// Recognize answers MatchUnknown for KMS-wrapped keys: the ciphertext blob is
// opaque, and the official clients store no key id beside it, so only a KMS
// call can tell which key it is under.
func (k *kmsKeyring) Recognize(w Wrapped) Match {
	if w.Alg.IsKMS() {
		return MatchUnknown
	}
	return MatchNo
}

// Wrap encrypts dek under the key with KMS Encrypt. The encryption context
// is userDesc plus aws:x-amz-cek-alg (envelope.NewKMSContext).
func (k *kmsKeyring) Wrap(ctx context.Context, dek *envelope.DataKey, cek envelope.ContentAlg, userDesc map[string]string) (Wrapped, error) {
	if dek.Len() != envelope.DataKeySize {
		return Wrapped{}, newError("kms Encrypt", k.arn, CodeBadInput, fmt.Sprintf("data key is %d bytes, want %d", dek.Len(), envelope.DataKeySize), "")
	}
	ec, err := envelope.NewKMSContext(cek, UserEntries(userDesc))
	if err != nil {
		return Wrapped{}, newError("kms Encrypt", k.arn, CodeBadInput, err.Error(), "")
	}
	// The SDK copies the plaintext into the request body, which it does not
	// zero: that copy is out of reach.
	out, err := k.r.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(k.arn),
		Plaintext:         dek.Bytes(),
		EncryptionContext: ec,
	})
	if err != nil {
		return Wrapped{}, kmsError("Encrypt", k.arn, sideDest, "grant kms:Encrypt on the destination key "+k.arn, err)
	}
	return Wrapped{Alg: envelope.WrapKMSContext, Key: out.CiphertextBlob, MatDesc: ec}, nil
}

// sourceContext returns the encryption context to decrypt w with: its
// material description, which for kms+context must name cek under
// aws:x-amz-cek-alg (as the Go client checks).
func sourceContext(op, key string, w Wrapped, cek envelope.ContentAlg) (map[string]string, error) {
	if !w.Alg.IsKMS() {
		return nil, newError(op, key, CodeAlgorithmMismatch,
			fmt.Sprintf("the data key is wrapped with %s, not by KMS", quote(string(w.Alg))),
			"name the key the objects are wrapped under with --from")
	}
	if w.Alg == envelope.WrapKMSContext {
		v, ok := w.MatDesc[envelope.ReservedContextKey]
		if !ok {
			return nil, newError(op, key, CodeAlgorithmMismatch, "kms+context encryption context lacks "+envelope.ReservedContextKey, "the stored context is incomplete (altered metadata)")
		}
		if v != string(cek) {
			return nil, newError(op, key, CodeAlgorithmMismatch,
				fmt.Sprintf("encryption context says %s=%s but the content algorithm is %s", envelope.ReservedContextKey, quote(v), quote(string(cek))),
				"the envelope's metadata was altered")
		}
	}
	ec := make(map[string]string, len(w.MatDesc))
	for n, v := range w.MatDesc {
		ec[n] = v
	}
	return ec, nil
}

// Unwrap decrypts w with KMS Decrypt, naming this key (a key wrapped under
// another key fails with IncorrectKeyException) and passing the stored
// context.
func (k *kmsKeyring) Unwrap(ctx context.Context, w Wrapped, cek envelope.ContentAlg) (*envelope.DataKey, error) {
	ec, err := sourceContext("kms Decrypt", k.arn, w, cek)
	if err != nil {
		return nil, err
	}
	out, err := k.r.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(k.arn),
		CiphertextBlob:    w.Key,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, kmsError("Decrypt", k.arn, sideSource, "grant kms:Decrypt on the source key "+k.arn, err)
	}
	defer clear(out.Plaintext)
	if len(out.Plaintext) != envelope.DataKeySize {
		return nil, newError("kms Decrypt", k.arn, CodeBadInput, fmt.Sprintf("the plaintext is %d bytes, not a %d-byte data key", len(out.Plaintext), envelope.DataKeySize), "")
	}
	return envelope.NewDataKey(out.Plaintext), nil
}

// CanReEncrypt reports whether KMS ReEncrypt reaches both keys: from is nil
// (KMS finds the source key in the blob; it must be in this key's region) or
// a KMS key of the same partition and region. ReEncrypt works across
// accounts, not across regions.
func (k *kmsKeyring) CanReEncrypt(from Keyring) bool {
	if from == nil {
		return true
	}
	f, ok := from.(*kmsKeyring)
	return ok && f.partition == k.partition && f.r.name == k.r.name
}

// ReEncrypt moves w to this key with KMS ReEncrypt. The stored context is the
// source context and (for kms+context) also the destination context, so the
// material description stays byte for byte what it was. SourceKeyId is
// from's ARN when from is given.
func (k *kmsKeyring) ReEncrypt(ctx context.Context, from Keyring, w Wrapped, cek envelope.ContentAlg) (Result, error) {
	ec, err := sourceContext("kms ReEncrypt", k.arn, w, cek)
	if err != nil {
		return Result{}, err
	}
	dst := ec
	if w.Alg != envelope.WrapKMSContext { // legacy "kms": bind the content algorithm now
		if dst, err = envelope.NewKMSContext(cek, UserEntries(ec)); err != nil {
			return Result{}, newError("kms ReEncrypt", k.arn, CodeBadInput, err.Error(), "")
		}
	}
	in := &kms.ReEncryptInput{
		CiphertextBlob:               w.Key,
		SourceEncryptionContext:      ec,
		DestinationKeyId:             aws.String(k.arn),
		DestinationEncryptionContext: dst,
	}
	if from != nil {
		in.SourceKeyId = aws.String(from.ID())
	}
	out, err := k.r.client.ReEncrypt(ctx, in)
	if err != nil {
		return Result{}, k.reEncryptError(ctx, from, err)
	}
	fromKey := aws.ToString(out.SourceKeyId)
	if fromKey == "" && from != nil {
		fromKey = from.ID()
	}
	return Result{
		Wrapped: Wrapped{Alg: envelope.WrapKMSContext, Key: out.CiphertextBlob, MatDesc: dst},
		Lineage: Lineage{FromKey: fromKey, ToKey: k.arn, Method: MethodKMSReEncrypt},
	}, nil
}

// reEncryptError classifies a ReEncrypt failure. KMS does not say in a
// typed way which of the two keys a DisabledException, KMSInvalidState or
// NotFoundException is about, so the destination key is described: if it is
// unusable the error is systemic, otherwise it concerns the object's key.
// AccessDeniedException is not marked systemic: KMS does not say whether
// kms:ReEncryptFrom on the object's key (a per-object matter, say a key
// policy that denies this role) or kms:ReEncryptTo on the destination was
// refused. The pipeline's breaker stops a run in which every object fails
// the same way.
func (k *kmsKeyring) reEncryptError(ctx context.Context, from Keyring, err error) *Error {
	src := ""
	if from != nil {
		src = from.ID()
	}
	access := "grant kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the destination key " + k.arn
	e := kmsError("ReEncrypt", src, sideSource, access, err)
	var (
		disabled     *types.DisabledException
		invalidState *types.KMSInvalidStateException
		notFound     *types.NotFoundException
		invalidUsage *types.InvalidKeyUsageException
		invalidCT    *types.InvalidCiphertextException
	)
	switch {
	case e.Code == "AccessDeniedException":
		e.Systemic = false
	case errors.As(err, &disabled), errors.As(err, &invalidState), errors.As(err, &notFound), errors.As(err, &invalidUsage):
		if derr := k.checkUsable(ctx); derr != nil {
			derr.Op, derr.Err = "kms ReEncrypt", err
			return derr
		}
	case errors.As(err, &invalidCT) && from == nil:
		e.Hint += "; if the object's key is in another region, name it with --from"
	}
	return e
}

// checkUsable describes the key and returns a systemic error if it cannot be
// used (disabled, pending deletion, gone), nil if it can or if that cannot be
// told.
func (k *kmsKeyring) checkUsable(ctx context.Context) *Error {
	out, err := k.r.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.arn)})
	if err != nil {
		var nf *types.NotFoundException
		if errors.As(err, &nf) {
			return kmsError("DescribeKey", k.arn, sideDest, "", err)
		}
		return nil
	}
	if out.KeyMetadata == nil {
		return nil
	}
	switch st := out.KeyMetadata.KeyState; st {
	case types.KeyStateEnabled:
		return nil
	case types.KeyStateDisabled:
		return &Error{Key: k.arn, Code: (&types.DisabledException{}).ErrorCode(), Systemic: true,
			detail: "the destination key " + k.arn + " is disabled",
			Hint:   "enable it (aws kms enable-key --key-id " + k.arn + ") or name another key"}
	default:
		return &Error{Key: k.arn, Code: (&types.KMSInvalidStateException{}).ErrorCode(), Systemic: true,
			detail: fmt.Sprintf("the destination key %s is in state %s", k.arn, st),
			Hint:   "cancel its deletion (aws kms cancel-key-deletion, then enable-key) or name another key"}
	}
}
