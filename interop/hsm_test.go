package interop

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/rewrap"
)

// The tests in this file prove that an object migrated from KMS to an HSM key
// by package rewrap (and committed by package commit) stays an S3EC object
// the official clients open: the HSM computes S3EC AES/GCM wrapping with
// CKM_AES_GCM, so a raw AES keyring holding the same key bytes reads it. The
// key is imported into SoftHSM with a known value and marked extractable, the
// case where an exported copy of the key can exist at all
// (docs/hsm-migrated-objects.md explains why production keys should not be).

// hsmKey is an AES-256 key imported into the stack's SoftHSM token for one
// test, with a raw PKCS#11 session for what hsmpool does not offer
// (importing a known value, reading it back, decrypting the way an
// application would).
type hsmKey struct {
	token, label string
	module       string
	pinSource    string
	pin          string // to check that it never reaches an object
	value        []byte // CKA_VALUE as read back from the HSM

	p11 *pkcs11.Ctx
	sh  pkcs11.SessionHandle
}

// newHSMKey imports a random AES-256 key into the stack's token as a session
// object (CKA_TOKEN false) with a label unique to the test, and destroys it
// when the test ends. Without the stack it skips, or fails under
// ROTATOR_INTEGRATION=require.
//
// PKCS#11 state is per process: a pool of package hsmpool initialises the
// library and logs the token in first and is closed last (logging out and
// finalising what it initialised), so the raw session here and the pools
// rewrap opens share its login, and none of them logs out or finalises
// behind another's back.
func newHSMKey(t *testing.T) *hsmKey {
	t.Helper()
	testenv.Need(t, testenv.PKCS11)
	k := &hsmKey{
		token:     os.Getenv(testenv.EnvPKCS11Token),
		label:     "interop-" + testenv.Name(t),
		module:    os.Getenv(testenv.EnvPKCS11Module),
		pinSource: "file:" + os.Getenv(testenv.EnvPKCS11PinFile),
	}
	pin, err := hsmpool.ReadPIN(k.pinSource)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(os.Getenv(testenv.EnvPKCS11PinFile))
	if err != nil {
		t.Fatal(err)
	}
	k.pin = strings.TrimRight(string(raw), "\r\n")
	pool, err := hsmpool.Open(context.Background(), hsmpool.Config{ModulePath: k.module, TokenLabel: k.token, PIN: pin, Size: 1})
	pin.Clear()
	if err != nil {
		t.Fatalf("open the HSM token: %v", err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Errorf("close the HSM pool: %v", err)
		}
	})

	k.p11 = pkcs11.New(k.module)
	if k.p11 == nil {
		t.Fatalf("cannot load PKCS#11 module %s", k.module)
	}
	if err := k.p11.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatalf("C_Initialize: %v", err)
	}
	slot, err := k.slot()
	if err != nil {
		t.Fatal(err)
	}
	if k.sh, err = k.p11.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
		t.Fatalf("C_OpenSession: %v", err)
	}
	t.Cleanup(func() {
		if err := k.p11.CloseSession(k.sh); err != nil {
			t.Errorf("C_CloseSession: %v", err)
		}
	})
	if info, err := k.p11.GetSessionInfo(k.sh); err != nil || info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		t.Fatalf("raw session is not logged in: %+v %v", info, err)
	}

	imported := randomBytes(32)
	h, err := k.p11.CreateObject(k.sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, imported),
	})
	if err != nil {
		t.Fatalf("import the AES key into the HSM (C_CreateObject): %v", err)
	}
	t.Cleanup(func() {
		if err := k.p11.DestroyObject(k.sh, h); err != nil {
			t.Errorf("destroy HSM key %s: %v", k.label, err)
		}
	})
	// Export the key as an application holding an exportable key would,
	// and use the exported bytes for the raw AES keyring.
	attrs, err := k.p11.GetAttributeValue(k.sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		t.Fatalf("export the HSM key (C_GetAttributeValue CKA_VALUE): %v", err)
	}
	k.value = attrs[0].Value
	if !bytes.Equal(k.value, imported) {
		t.Fatal("the HSM key's CKA_VALUE differs from the value imported")
	}
	return k
}

// slot returns the slot of the stack's token.
func (k *hsmKey) slot() (uint, error) {
	slots, err := k.p11.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		if ti, err := k.p11.GetTokenInfo(s); err == nil && ti.Label == k.token {
			return s, nil
		}
	}
	return 0, fmt.Errorf("no token labelled %q", k.token)
}

// spec is the key spec an operator would pass: the key URI with module path
// and PIN source.
func (k *hsmKey) spec(t *testing.T) rewrap.Spec {
	t.Helper()
	u := &rewrap.PKCS11URI{Token: k.token, Object: k.label, ModulePath: k.module, PINSource: k.pinSource}
	spec, err := rewrap.ParseSpec(u.String())
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// uri is the HSM keyring's ID (what rotator's ledger records): the key URI
// without module path or PIN source. Migrated objects do not name it.
func (k *hsmKey) uri() string { return "pkcs11:token=" + k.token + ";object=" + k.label }

// find returns the handle of the HSM key by its label, as an application
// finds the key its configuration (or rotator's ledger) names.
func (k *hsmKey) find() (pkcs11.ObjectHandle, error) {
	if err := k.p11.FindObjectsInit(k.sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.label),
	}); err != nil {
		return 0, err
	}
	found, _, err := k.p11.FindObjects(k.sh, 2)
	if ferr := k.p11.FindObjectsFinal(k.sh); err == nil {
		err = ferr
	}
	if err != nil || len(found) != 1 {
		return 0, fmt.Errorf("find key %q: %d found, %v", k.label, len(found), err)
	}
	return found[0], nil
}

// openThroughHSM is the sketch of docs/hsm-migrated-objects.md, path (a),
// kept identical to it: it decrypts an HSM-migrated object the way an
// application holding only an HSM session does, written from FORMAT.md with
// the standard library and miekg/pkcs11 alone. The data key is unwrapped
// inside the HSM with C_Decrypt (CKM_AES_GCM, IV = the wrapped key's first
// 12 bytes, AAD = the content algorithm's binding); the content is decrypted
// in the process. env holds the object's user metadata (names without
// x-amz-meta-) plus, when its envelope is in an instruction file, that
// file's entries; body is the stored object (ciphertext || tag).
func openThroughHSM(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, env map[string]string, body []byte) ([]byte, error) {
	b64 := base64.StdEncoding.DecodeString
	v3 := env["x-amz-c"] != ""
	wrappedB64, aad := env["x-amz-key-v2"], "AES/GCM/NoPadding"
	if v3 {
		wrappedB64, aad = env["x-amz-3"], "115"
	}
	if v3 && (env["x-amz-c"] != "115" || env["x-amz-w"] != "02") ||
		!v3 && (env["x-amz-cek-alg"] != "AES/GCM/NoPadding" || env["x-amz-wrap-alg"] != "AES/GCM") {
		return nil, errors.New("not an AES/GCM-wrapped S3EC V2 or V3 object")
	}
	wrapped, err := b64(wrappedB64)
	if err != nil || len(wrapped) != 12+32+16 {
		return nil, errors.New("the wrapped key is not 60 bytes of base64")
	}

	// 1. Unwrap the data key inside the HSM.
	params := pkcs11.NewGCMParams(wrapped[:12], []byte(aad), 128)
	defer params.Free()
	if err := p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, fmt.Errorf("C_DecryptInit: %w", err)
	}
	dek, err := p.Decrypt(s, wrapped[12:]) // fails unless key, IV, AAD and tag match
	if err != nil {
		return nil, fmt.Errorf("C_Decrypt: %w", err)
	}
	defer clear(dek)

	// 2. Decrypt the content in the process.
	cek, nonce, contentAAD := dek, []byte(nil), []byte(nil)
	if v3 {
		msgID, err1 := b64(env["x-amz-i"])
		want, err2 := b64(env["x-amz-d"])
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		prk, err := hkdf.Extract(sha512.New, dek, msgID)
		if err != nil {
			return nil, err
		}
		defer clear(prk)
		if cek, err = hkdf.Expand(sha512.New, prk, "\x00\x73DERIVEKEY", 32); err != nil {
			return nil, err
		}
		defer clear(cek)
		commitment, err := hkdf.Expand(sha512.New, prk, "\x00\x73COMMITKEY", 28)
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare(commitment, want) != 1 {
			return nil, errors.New("the key commitment does not match")
		}
		nonce, contentAAD = bytes.Repeat([]byte{0x01}, 12), []byte{0x00, 0x73}
	} else if nonce, err = b64(env["x-amz-iv"]); err != nil || len(nonce) != 12 {
		return nil, errors.New("x-amz-iv is not 12 bytes of base64")
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, nonce, body, contentAAD)
}

// stored is an object as S3 holds it, read without decryption.
type stored struct {
	body  []byte
	meta  map[string]string // the object's user metadata
	head  *s3.GetObjectOutput
	instr []byte // the instruction file's body, nil for metadata placement
	// instrMeta is the instruction file's own user metadata.
	instrMeta map[string]string
	env       *envelope.Envelope
	// fields is meta plus the instruction file's entries.
	fields map[string]string
}

func (st *stack) readStored(t *testing.T, bucket, key string, p envelope.Placement) stored {
	t.Helper()
	var s stored
	s.body, s.meta, s.head = st.raw(t, bucket, key)
	s.fields = maps.Clone(s.meta)
	if p == envelope.PlacementInstructionFile {
		s.instr, s.instrMeta, _ = st.raw(t, bucket, envelope.InstructionKey(key, envelope.DefaultInstructionSuffix))
		var entries map[string]string
		if err := json.Unmarshal(s.instr, &entries); err != nil {
			t.Fatalf("%s: instruction file: %v", key, err)
		}
		maps.Copy(s.fields, entries)
	}
	env, err := envelope.Parse(s.meta, s.instr, envelope.ParseOptions{})
	if err != nil {
		t.Fatalf("%s: parse the stored envelope: %v", key, err)
	}
	if env.Placement != p {
		t.Fatalf("%s: envelope placement %v, want %v", key, env.Placement, p)
	}
	s.env = env
	return s
}

// withEC is how an application hands the official clients its encryption
// context: a context value under the string key "EncryptionContext".
func withEC(ctx context.Context, ec map[string]string) context.Context {
	//lint:ignore SA1029 the official clients look the context up under this plain string key
	return context.WithValue(ctx, "EncryptionContext", ec)
}

// getEC decrypts bucket/key with an official client, passing ec as the
// expected encryption context.
func getEC(c officialClient, bucket, key string, ec map[string]string) ([]byte, error) {
	out, err := c.GetObject(withEC(context.Background(), ec), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	b := new(bytes.Buffer)
	_, err = b.ReadFrom(out.Body)
	return b.Bytes(), err
}

// TestRewrapKMSToHSMOfficialReads: objects written by the official clients
// under a KMS key (v3.2.0 writes V2, v4.0.0 writes V3; in metadata, or with
// the envelope moved into an instruction file since the Go clients write
// none) are rewrapped KMS -> HSM with rewrap.Rewrap and committed with
// package commit. The official clients then open them with a raw AES keyring
// holding the HSM key's exported value, and no longer with the KMS keyring;
// an application decrypting through the HSM (C_Decrypt with CKM_AES_GCM)
// gets the same plaintext. Rewrapped back HSM -> KMS, the official clients
// open them with the KMS keyring again. Content, IV, message ID, commitment
// and other metadata never change.
func TestRewrapKMSToHSMOfficialReads(t *testing.T) {
	st := newStack(t)
	hk := newHSMKey(t)
	bucket := st.bucket(t)
	kmsKey := st.key(t)
	ctx := t.Context()

	deps := &rewrap.Deps{AWS: st.cfg, PKCS11PoolSize: 2, PKCS11AcquireTimeout: 20 * time.Second}
	t.Cleanup(func() {
		if err := deps.Close(); err != nil {
			t.Errorf("rewrap.Deps.Close: %v", err)
		}
	})
	hsmKR, err := rewrap.Open(ctx, hk.spec(t), deps)
	if err != nil {
		t.Fatalf("rewrap.Open(%s): %v", hk.spec(t), err)
	}
	kmsSpec, err := rewrap.ParseSpec("kms:" + kmsKey)
	if err != nil {
		t.Fatal(err)
	}
	kmsKR, err := rewrap.Open(ctx, kmsSpec, deps)
	if err != nil {
		t.Fatalf("rewrap.Open(%s): %v", kmsSpec, err)
	}
	if hsmKR.ID() != hk.uri() || hsmKR.Kind() != rewrap.KindPKCS11 {
		t.Fatalf("HSM keyring ID %q kind %v, want %q pkcs11", hsmKR.ID(), hsmKR.Kind(), hk.uri())
	}
	cm := commit.New(st.s3, commit.Options{})
	aesKeys := keys{aes: hk.value}
	kmsKeys := keys{kmsKey: kmsKey}
	userEC := map[string]string{"department": "interop"}

	// migrate rewraps the stored object's data key from one key to the
	// other and commits it as the pipeline does: a guarded self-copy for
	// metadata, a guarded rewrite of the instruction file otherwise.
	migrate := func(t *testing.T, key string, p envelope.Placement, from, to rewrap.Keyring) rewrap.Result {
		t.Helper()
		obj, err := cm.Head(ctx, bucket, key, "")
		if err != nil {
			t.Fatalf("commit.Head: %v", err)
		}
		var instr *commit.Object
		var instrBody []byte
		ikey := envelope.InstructionKey(key, envelope.DefaultInstructionSuffix)
		if p == envelope.PlacementInstructionFile {
			if instr, instrBody, err = cm.ReadInstruction(ctx, bucket, ikey, ""); err != nil {
				t.Fatalf("commit.ReadInstruction: %v", err)
			}
		}
		env, err := envelope.Parse(obj.Metadata, instrBody, envelope.ParseOptions{})
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		w, cek := rewrap.FromEnvelope(env)
		res, err := rewrap.Rewrap(ctx, from, to, w, cek)
		if err != nil {
			t.Fatalf("rewrap.Rewrap %s -> %s: %v", from.ID(), to.ID(), err)
		}
		nenv, err := res.Apply(env)
		if err != nil {
			t.Fatalf("Result.Apply: %v", err)
		}
		if p == envelope.PlacementMetadata {
			meta, err := nenv.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cm.MetadataEnvelope(ctx, obj, meta); err != nil {
				t.Fatalf("commit.MetadataEnvelope: %v", err)
			}
			return res
		}
		objSide, body, err := nenv.InstructionFile()
		if err != nil {
			t.Fatal(err)
		}
		if err := commit.CheckObjectSide(obj, objSide); err != nil {
			t.Fatalf("commit.CheckObjectSide: %v", err)
		}
		if _, err := cm.WriteInstruction(ctx, instr, body); err != nil {
			t.Fatalf("commit.WriteInstruction: %v", err)
		}
		return res
	}

	// unchanged checks what a rewrap must leave alone.
	unchanged := func(t *testing.T, before, after stored) {
		t.Helper()
		if !bytes.Equal(before.body, after.body) {
			t.Error("the stored ciphertext changed")
		}
		b, a := before.env, after.env
		if b.Format != a.Format || b.CEKAlg != a.CEKAlg || !bytes.Equal(b.IV, a.IV) || !bytes.Equal(b.MessageID, a.MessageID) ||
			!bytes.Equal(b.KeyCommitment, a.KeyCommitment) || b.UnencryptedContentLength != a.UnencryptedContentLength {
			t.Errorf("content fields changed: %v %s iv=%x id=%x d=%x len=%d -> %v %s iv=%x id=%x d=%x len=%d",
				b.Format, b.CEKAlg, b.IV, b.MessageID, b.KeyCommitment, b.UnencryptedContentLength,
				a.Format, a.CEKAlg, a.IV, a.MessageID, a.KeyCommitment, a.UnencryptedContentLength)
		}
		if after.meta["owner"] != "team-interop" || aws.ToString(after.head.ContentType) != "application/x-test" {
			t.Errorf("other metadata changed: %v, content type %q", after.meta, aws.ToString(after.head.ContentType))
		}
		if before.instr != nil && !maps.Equal(before.meta, after.meta) {
			t.Errorf("an instruction-file rewrap changed the object's metadata:\n%v\n%v", before.meta, after.meta)
		}
		if before.instr != nil && (!maps.Equal(before.instrMeta, after.instrMeta) || !envelope.IsInstructionFile(after.instrMeta)) {
			t.Errorf("the instruction file's own metadata changed: %v -> %v", before.instrMeta, after.instrMeta)
		}
	}

	// opens checks that every reader opens the object with the plaintext
	// body, with and without the encryption context ec.
	opens := func(t *testing.T, key string, readers map[string]officialClient, ec map[string]string, body []byte) {
		t.Helper()
		for _, rname := range slices.Sorted(maps.Keys(readers)) {
			c := readers[rname]
			got, err := get(c, bucket, key)
			if err != nil {
				t.Errorf("official %s: %v", rname, err)
			} else if !bytes.Equal(got, body) {
				t.Errorf("official %s: plaintext differs", rname)
			}
			if ec == nil {
				continue
			}
			got, err = getEC(c, bucket, key, ec)
			if err != nil {
				t.Errorf("official %s with encryption context %v: %v", rname, ec, err)
			} else if !bytes.Equal(got, body) {
				t.Errorf("official %s with encryption context %v: plaintext differs", rname, ec)
			}
		}
	}

	// refuses checks that no reader opens the object.
	refuses := func(t *testing.T, key, what string, readers map[string]officialClient) {
		t.Helper()
		for _, rname := range slices.Sorted(maps.Keys(readers)) {
			if got, err := get(readers[rname], bucket, key); err == nil {
				t.Errorf("official %s with %s opened the object (%d bytes)", rname, what, len(got))
			} else {
				t.Logf("official %s with %s: %v", rname, what, err)
			}
		}
	}

	writers := []struct {
		name   string
		format envelope.Format
		client officialClient
	}{
		{"v3.2.0", envelope.V2, st.v3(t, kmsKey)},
		{"v4.0.0", envelope.V3, st.v4(t, kmsKey, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)},
	}
	for _, w := range writers {
		for _, p := range []envelope.Placement{envelope.PlacementMetadata, envelope.PlacementInstructionFile} {
			for _, bname := range slices.Sorted(maps.Keys(bodies)) {
				body := bodies[bname]
				t.Run(fmt.Sprintf("%s-%v/%v/%s", w.name, w.format, p, bname), func(t *testing.T) {
					key := fmt.Sprintf("%s/%v/%s", w.name, p, bname)
					if _, err := w.client.PutObject(withEC(ctx, userEC), &s3.PutObjectInput{Bucket: &bucket, Key: &key,
						Body: bytes.NewReader(body), Metadata: map[string]string{"owner": "team-interop"},
						ContentType: aws.String("application/x-test")}); err != nil {
						t.Fatalf("official %s PutObject: %v", w.name, err)
					}
					if p == envelope.PlacementInstructionFile {
						st.intoInstructionFile(t, bucket, key)
					}
					orig := st.readStored(t, bucket, key, p)
					if orig.env.Format != w.format || orig.env.WrapAlg != envelope.WrapKMSContext {
						t.Fatalf("official %s wrote %v %s, want %v kms+context", w.name, orig.env.Format, orig.env.WrapAlg, w.format)
					}
					opens(t, key, st.readers(t, kmsKeys, envelope.WrapKMSContext, w.format), userEC, body)
					if t.Failed() {
						t.FailNow()
					}

					// KMS -> HSM.
					res := migrate(t, key, p, kmsKR, hsmKR)
					if res.Method != "kms-decrypt+hsm-wrap" || res.FromKey != kmsKR.ID() || res.ToKey != hsmKR.ID() {
						t.Errorf("lineage %+v", res.Lineage)
					}
					onHSM := st.readStored(t, bucket, key, p)
					unchanged(t, orig, onHSM)
					checkHSMEnvelope(t, hk, onHSM, userEC)
					// Nothing names the HSM key: only a trial unwrap in
					// the HSM (or the ledger) tells.
					if m := rewrap.Classify(hsmKR, rewrap.Wrapped{Alg: onHSM.env.WrapAlg, Key: onHSM.env.WrappedKey, MatDesc: onHSM.env.MatDesc}); m != rewrap.MatchUnknown {
						t.Errorf("Classify of an HSM wrapping: %v, want unknown", m)
					}

					// (b) the official clients with a raw AES keyring
					// holding the exported key.
					// The clients compare a caller's encryption context with
					// the whole stored material description (less
					// aws:x-amz-cek-alg and kms_cmk_id): rotator adds
					// nothing to it, so readers open the object with the
					// context they passed before the migration as well as
					// without one.
					aesReaders := st.readers(t, aesKeys, envelope.WrapAESGCM, w.format)
					opens(t, key, aesReaders, userEC, body)
					refuses(t, key, "the KMS keyring", st.readers(t, kmsKeys, envelope.WrapKMSContext, w.format))
					// (a) an application decrypting through the HSM.
					if h, err := hk.find(); err != nil {
						t.Error(err)
					} else if got, err := openThroughHSM(hk.p11, hk.sh, h, onHSM.fields, onHSM.body); err != nil {
						t.Errorf("decrypt through the HSM: %v", err)
					} else if !bytes.Equal(got, body) {
						t.Error("decrypt through the HSM: plaintext differs")
					}

					// (c) HSM -> KMS.
					res = migrate(t, key, p, hsmKR, kmsKR)
					if res.Method != "hsm-unwrap+kms-encrypt" || res.FromKey != hsmKR.ID() || res.ToKey != kmsKR.ID() {
						t.Errorf("lineage back %+v", res.Lineage)
					}
					back := st.readStored(t, bucket, key, p)
					unchanged(t, orig, back)
					wantEC := maps.Clone(userEC)
					wantEC[envelope.ReservedContextKey] = string(orig.env.CEKAlg)
					if back.env.WrapAlg != envelope.WrapKMSContext || !maps.Equal(back.env.MatDesc, wantEC) {
						t.Errorf("back on KMS: %s with context %v, want kms+context with %v", back.env.WrapAlg, back.env.MatDesc, wantEC)
					}
					if bytes.Equal(back.env.WrappedKey, orig.env.WrappedKey) {
						t.Error("back on KMS: the original ciphertext blob was restored instead of a new KMS encryption")
					}
					opens(t, key, st.readers(t, kmsKeys, envelope.WrapKMSContext, w.format), userEC, body)
					refuses(t, key, "the AES keyring", aesReaders)
				})
			}
		}
	}
}

// checkHSMEnvelope checks what an HSM-migrated object stores: S3EC AES/GCM
// (x-amz-wrap-alg AES/GCM, or x-amz-w 02 with x-amz-m and no x-amz-t), a
// 60-byte wrapped key, and the user entries as material description,
// nothing else: no key name, module path or PIN.
func checkHSMEnvelope(t *testing.T, hk *hsmKey, s stored, userEC map[string]string) {
	t.Helper()
	f := s.fields
	var matDescJSON string
	if s.env.Format == envelope.V3 {
		if f["x-amz-w"] != "02" || f["x-amz-t"] != "" {
			t.Errorf("V3 on the HSM: x-amz-w %q x-amz-t %q, want 02 and none", f["x-amz-w"], f["x-amz-t"])
		}
		matDescJSON = f["x-amz-m"]
	} else {
		if f["x-amz-wrap-alg"] != "AES/GCM" || f["x-amz-cek-alg"] != "AES/GCM/NoPadding" {
			t.Errorf("V2 on the HSM: x-amz-wrap-alg %q x-amz-cek-alg %q, want AES/GCM and AES/GCM/NoPadding", f["x-amz-wrap-alg"], f["x-amz-cek-alg"])
		}
		matDescJSON = f["x-amz-matdesc"]
	}
	var md map[string]string
	if err := json.Unmarshal([]byte(matDescJSON), &md); err != nil {
		t.Errorf("material description %q: %v", matDescJSON, err)
	}
	want := maps.Clone(userEC)
	if !maps.Equal(md, want) || !maps.Equal(s.env.MatDesc, want) {
		t.Errorf("material description %s, want %v", matDescJSON, want)
	}
	if s.env.WrapAlg != envelope.WrapAESGCM || len(s.env.WrappedKey) != envelope.AESGCMWrappedSize {
		t.Errorf("wrapping %s, %d bytes; want AES/GCM, %d", s.env.WrapAlg, len(s.env.WrappedKey), envelope.AESGCMWrappedSize)
	}
	everything := fmt.Sprint(s.meta) + string(s.instr)
	for what, s := range map[string]string{"the PIN": hk.pin, "the module path": hk.module, "the PIN source": hk.pinSource,
		"module-path": "module-path", "pin-source": "pin-source", "pin-value": "pin-value"} {
		if s != "" && strings.Contains(everything, s) {
			t.Errorf("the stored envelope reveals %s", what) // never print the PIN itself
		}
	}
}
