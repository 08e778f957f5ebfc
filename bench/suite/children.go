package main

// The baselines, each run as a child process of the suite (the same
// binary, first argument child-...), so that its CPU time and peak RSS
// come from the kernel exactly as rotator's do:
//
//   - child-bare-rewrap: the irreducible calls of a rewrap and nothing
//     else: list, HEAD, KMS ReEncrypt, conditional self-copy with the new
//     wrapped key (the SDK alone: no ledger, no classification, no report).
//   - child-bare-hsm: list, HEAD, KMS Decrypt, CKM_AES_GCM in SoftHSM on
//     the worker's own PKCS#11 session, conditional self-copy.
//   - child-official-copy: the official S3 Encryption Client v4.0.0's only
//     way to change an object's key: GetObject under the old key, PutObject
//     under the new one.
//   - child-official-put / child-official-sum: write one object, read one
//     back and check its SHA-256 (the 1 GiB object).
//
// Each prints one JSON line {"objects":N} on stdout when it is done, and
// fails (exit 1) if any object failed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	s3ec "github.com/aws/amazon-s3-encryption-client-go/v4/client"
	"github.com/aws/amazon-s3-encryption-client-go/v4/materials"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/bench/internal/workload"
)

// loadConfig is the SDK's default configuration with a connection pool as
// large as rotator's (internal/awsx: 2 x the concurrency idle connections
// per host, at least 256, and no overall cap; the SDK's default keeps 10
// per host and 100 in all, which at 512 in flight dials a connection for
// most requests).
func loadConfig(ctx context.Context, conc int) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = max(2*conc, 256)
		t.MaxIdleConns = 0
	})))
}

func newS3(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

// each lists s3://bucket/prefix and calls fn for every key from conc
// goroutines; it returns the number of keys and the first error.
func each(ctx context.Context, s3c *s3.Client, bucket, prefix string, conc int, fn func(worker int, key string) error) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	keys := make(chan string, 2*conc)
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for k := range keys {
				if err := fn(w, k); err != nil {
					cancel(fmt.Errorf("s3://%s/%s: %w", bucket, k, err))
					return
				}
				n.Add(1)
			}
		})
	}
	p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
list:
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			cancel(err)
			break
		}
		for _, o := range page.Contents {
			select {
			case keys <- aws.ToString(o.Key):
			case <-ctx.Done():
				break list
			}
		}
	}
	close(keys)
	wg.Wait()
	return int(n.Load()), context.Cause(ctx)
}

// envelopeOf finds the wrapped key and the KMS encryption context in an
// object's user metadata (V3 or V2, envelope in metadata).
type envelopeFields struct {
	keyField string // x-amz-3 or x-amz-key-v2
	wrapped  []byte
	context  map[string]string
	v3       bool
}

func envelopeOf(meta map[string]string) (envelopeFields, error) {
	e := envelopeFields{keyField: "x-amz-key-v2"}
	ctxJSON := meta["x-amz-matdesc"]
	if _, ok := meta["x-amz-3"]; ok {
		e = envelopeFields{keyField: "x-amz-3", v3: true}
		ctxJSON = meta["x-amz-t"]
	}
	var err error
	if e.wrapped, err = base64.StdEncoding.DecodeString(meta[e.keyField]); err != nil || len(e.wrapped) == 0 {
		return e, fmt.Errorf("no wrapped key in %s", e.keyField)
	}
	if err := json.Unmarshal([]byte(ctxJSON), &e.context); err != nil {
		return e, fmt.Errorf("encryption context: %w", err)
	}
	return e, nil
}

// selfCopy copies the object onto itself with new user metadata, on the
// condition that it is still the one HEAD saw (the copy rotator makes).
func selfCopy(ctx context.Context, s3c *s3.Client, bucket, key string, head *s3.HeadObjectOutput, meta map[string]string) error {
	_, err := s3c.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: &bucket, Key: &key,
		CopySource:        aws.String(bucket + "/" + key),
		CopySourceIfMatch: head.ETag,
		IfMatch:           head.ETag,
		MetadataDirective: types.MetadataDirectiveReplace,
		TaggingDirective:  types.TaggingDirectiveCopy,
		Metadata:          meta,
		ContentType:       head.ContentType,
	})
	return err
}

// clients are the S3 and KMS clients of a child running conc workers.
func clients(ctx context.Context, conc int) (*s3.Client, *kms.Client, error) {
	cfg, err := loadConfig(ctx, conc)
	if err != nil {
		return nil, nil, err
	}
	return newS3(cfg), kms.NewFromConfig(cfg), nil
}

// eachEnvelope is each with every object's HEAD and envelope read: the
// first calls of every bare loop.
func eachEnvelope(ctx context.Context, s3c *s3.Client, bucket, prefix string, conc int,
	fn func(worker int, key string, head *s3.HeadObjectOutput, e envelopeFields) error) (int, error) {
	return each(ctx, s3c, bucket, prefix, conc, func(w int, key string) error {
		head, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return err
		}
		e, err := envelopeOf(head.Metadata)
		if err != nil {
			return err
		}
		return fn(w, key, head, e)
	})
}

func bareRewrap(ctx context.Context, bucket, prefix, from, to string, conc int) (int, error) {
	s3c, kmsc, err := clients(ctx, conc)
	if err != nil {
		return 0, err
	}
	return eachEnvelope(ctx, s3c, bucket, prefix, conc, func(_ int, key string, head *s3.HeadObjectOutput, e envelopeFields) error {
		out, err := kmsc.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: e.wrapped, SourceKeyId: &from, DestinationKeyId: &to,
			SourceEncryptionContext: e.context, DestinationEncryptionContext: e.context})
		if err != nil {
			return err
		}
		meta := maps.Clone(head.Metadata)
		meta[e.keyField] = base64.StdEncoding.EncodeToString(out.CiphertextBlob)
		return selfCopy(ctx, s3c, bucket, key, head, meta)
	})
}

// hsmSession is one worker's own PKCS#11 session and key handle.
type hsmSession struct {
	h   pkcs11.SessionHandle
	key pkcs11.ObjectHandle
}

// openHSM opens conc sessions on the token, logs in once and finds the
// key labelled label.
func openHSM(module, token, pinFile, label string, conc int) (*pkcs11.Ctx, []hsmSession, error) {
	p := pkcs11.New(module)
	if p == nil {
		return nil, nil, fmt.Errorf("cannot load PKCS#11 module %s", module)
	}
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil, nil, err
	}
	slot, err := findSlot(p, token)
	if err != nil {
		return nil, nil, err
	}
	pin, err := os.ReadFile(pinFile)
	if err != nil {
		return nil, nil, err
	}
	sessions := make([]hsmSession, conc)
	for i := range sessions {
		h, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			if err := p.Login(h, pkcs11.CKU_USER, strings.TrimSpace(string(pin))); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
				return nil, nil, err
			}
		}
		if err := p.FindObjectsInit(h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			return nil, nil, err
		}
		objs, _, err := p.FindObjects(h, 1)
		_ = p.FindObjectsFinal(h)
		if err != nil || len(objs) != 1 {
			return nil, nil, fmt.Errorf("find HSM key %q: %v", label, err)
		}
		sessions[i] = hsmSession{h: h, key: objs[0]}
	}
	return p, sessions, nil
}

func findSlot(p *pkcs11.Ctx, token string) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, err
	}
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == token {
			return s, nil
		}
	}
	return 0, fmt.Errorf("no PKCS#11 token labelled %q", token)
}

// createHSMKey generates a token AES-256 key labelled label; with remove
// set it destroys the token's keys labelled label instead.
func createHSMKey(module, token, pinFile, label string, remove bool) error {
	p := pkcs11.New(module)
	if p == nil {
		return fmt.Errorf("cannot load PKCS#11 module %s", module)
	}
	if err := p.Initialize(); err != nil {
		return err
	}
	defer p.Destroy()
	defer p.Finalize()
	slot, err := findSlot(p, token)
	if err != nil {
		return err
	}
	pin, err := os.ReadFile(pinFile)
	if err != nil {
		return err
	}
	h, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return err
	}
	defer p.CloseSession(h)
	if err := p.Login(h, pkcs11.CKU_USER, strings.TrimSpace(string(pin))); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		return err
	}
	if remove {
		if err := p.FindObjectsInit(h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			return err
		}
		objs, _, err := p.FindObjects(h, 16)
		_ = p.FindObjectsFinal(h)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := p.DestroyObject(h, o); err != nil {
				return err
			}
		}
		return nil
	}
	_, err = p.GenerateKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	})
	return err
}

// bareHSM moves every data key from KMS to the HSM key: KMS Decrypt, then
// AES-GCM in the HSM on the worker's own session (the S3 Encryption
// Client's AES/GCM wrapping: IV || ciphertext || tag, AAD the content
// algorithm), then the conditional self-copy.
func bareHSM(ctx context.Context, bucket, prefix, from, module, token, pinFile, label string, conc int) (int, error) {
	s3c, kmsc, err := clients(ctx, conc)
	if err != nil {
		return 0, err
	}
	p, sessions, err := openHSM(module, token, pinFile, label, conc)
	if err != nil {
		return 0, err
	}
	return eachEnvelope(ctx, s3c, bucket, prefix, conc, func(w int, key string, head *s3.HeadObjectOutput, e envelopeFields) error {
		out, err := kmsc.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: e.wrapped, KeyId: &from, EncryptionContext: e.context})
		if err != nil {
			return err
		}
		aad := "AES/GCM/NoPadding"
		if e.v3 {
			aad = "115"
		}
		iv := make([]byte, 12)
		_, _ = rand.Read(iv)
		params := pkcs11.NewGCMParams(iv, []byte(aad), 128)
		s := sessions[w]
		if err := p.EncryptInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, s.key); err != nil {
			params.Free()
			return err
		}
		ct, err := p.Encrypt(s.h, out.Plaintext)
		clear(out.Plaintext)
		if got := params.IV(); len(got) == 12 {
			iv = got
		}
		params.Free()
		if err != nil {
			return err
		}
		matdesc := maps.Clone(e.context)
		delete(matdesc, "aws:x-amz-cek-alg")
		md, _ := json.Marshal(matdesc)
		meta := maps.Clone(head.Metadata)
		meta[e.keyField] = base64.StdEncoding.EncodeToString(append(iv, ct...))
		if e.v3 {
			meta["x-amz-w"] = "02"
			meta["x-amz-m"] = string(md)
			delete(meta, "x-amz-t")
		} else {
			meta["x-amz-wrap-alg"] = "AES/GCM"
			meta["x-amz-matdesc"] = string(md)
		}
		return selfCopy(ctx, s3c, bucket, key, head, meta)
	})
}

// official is an official client v4.0.0 on a KMS key.
func official(s3c *s3.Client, kmsc *kms.Client, keyID string) (*s3ec.S3EncryptionClientV4, error) {
	cmm, err := materials.NewCryptographicMaterialsManager(materials.NewKmsKeyring(kmsc, keyID))
	if err != nil {
		return nil, err
	}
	return s3ec.New(s3c, cmm)
}

// officialOn is an official client v4.0.0 on a KMS key with clients of
// its own (one worker).
func officialOn(ctx context.Context, keyID string) (*s3ec.S3EncryptionClientV4, error) {
	s3c, kmsc, err := clients(ctx, 1)
	if err != nil {
		return nil, err
	}
	return official(s3c, kmsc, keyID)
}

// withoutEnvelope is the user metadata less the envelope's fields (the
// client writes its own).
func withoutEnvelope(meta map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range meta {
		if !strings.HasPrefix(k, "x-amz-") {
			out[k] = v
		}
	}
	return out
}

func officialCopy(ctx context.Context, bucket, prefix, from, to string, conc int) (int, error) {
	s3c, kmsc, err := clients(ctx, conc)
	if err != nil {
		return 0, err
	}
	src, err := official(s3c, kmsc, from)
	if err != nil {
		return 0, err
	}
	dst, err := official(s3c, kmsc, to)
	if err != nil {
		return 0, err
	}
	return each(ctx, s3c, bucket, prefix, conc, func(_ int, key string) error {
		body, out, err := workload.Get(ctx, src, bucket, key)
		if err != nil {
			return err
		}
		_, err = dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body),
			Metadata: withoutEnvelope(out.Metadata), ContentType: out.ContentType})
		return err
	})
}

// child runs one baseline in this process and prints its object count.
func child(mode string, args []string) error {
	ctx := context.Background()
	need := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s: want %d arguments, got %d", mode, n, len(args))
		}
		return nil
	}
	conc := func(s string) int { n, _ := strconv.Atoi(s); return max(n, 1) }
	var n int
	var err error
	switch mode {
	case "child-bare-rewrap": // bucket prefix from to conc
		if err = need(5); err == nil {
			n, err = bareRewrap(ctx, args[0], args[1], args[2], args[3], conc(args[4]))
		}
	case "child-bare-hsm": // bucket prefix from module token pinfile label conc
		if err = need(8); err == nil {
			n, err = bareHSM(ctx, args[0], args[1], args[2], args[3], args[4], args[5], args[6], conc(args[7]))
		}
	case "child-official-copy": // bucket prefix from to conc
		if err = need(5); err == nil {
			n, err = officialCopy(ctx, args[0], args[1], args[2], args[3], conc(args[4]))
		}
	case "child-official-put": // bucket key keyID size
		if err = need(4); err == nil {
			n, err = 1, officialPut(ctx, args[0], args[1], args[2], args[3])
		}
	case "child-official-sum": // bucket key keyID sha256
		if err = need(4); err == nil {
			n, err = 1, officialSum(ctx, args[0], args[1], args[2], args[3])
		}
	default:
		err = fmt.Errorf("unknown child mode %s", mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]int{"objects": n})
}

func officialPut(ctx context.Context, bucket, key, keyID, size string) error {
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return err
	}
	c, err := officialOn(ctx, keyID)
	if err != nil {
		return err
	}
	return workload.Put(ctx, c, bucket, key, n)
}

func officialSum(ctx context.Context, bucket, key, keyID, want string) error {
	c, err := officialOn(ctx, keyID)
	if err != nil {
		return err
	}
	return workload.Check(ctx, c, bucket, key, want)
}
