package reencrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/awsx"
	"github.com/rotator-dev/rotator/internal/sample"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/kmsserver"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/reencrypt"
	"github.com/rotator-dev/rotator/rewrap"
)

var ctx = context.Background()

const mib = 1 << 20

// fixture is a bucket, an in-process KMS test server with keys A and B, a
// committer and an embedded ledger.
type fixture struct {
	s3     *s3.Client
	bucket string
	kms    *kms.Client
	arnA   string
	a, b   rewrap.Keyring
	commit *commit.Committer
	gets   atomic.Int64 // bytes read by the engine's ranged GETs
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testenv.Need(t, testenv.S3)
	f := &fixture{s3: awsx.S3(testenv.AWSConfig(t)), bucket: testenv.Name(t)}
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &f.bucket}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(f.s3, f.bucket) })
	srv := kmsserver.NewTestServer(t, kmsserver.Options{})
	f.kms = srv.Client("")
	deps := &rewrap.Deps{AWS: srv.AWSConfig("")}
	t.Cleanup(func() { deps.Close() })
	f.arnA = createKey(t, f.kms, "A")
	f.a = openKey(t, deps, "kms:"+f.arnA)
	f.b = openKey(t, deps, "kms:"+createKey(t, f.kms, "B"))
	f.commit = commit.New(f.s3, commit.Options{})
	return f
}

func createKey(t *testing.T, c *kms.Client, desc string) string {
	t.Helper()
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(desc)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.Arn
}

func openKey(t *testing.T, d *rewrap.Deps, spec string) rewrap.Keyring {
	t.Helper()
	s, err := rewrap.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	k, err := rewrap.Open(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// put writes an object as the official clients lay it out, under key A
// (kms+context with a user entry), with decoration to check it is kept.
func (f *fixture) put(t *testing.T, key string, format envelope.Format, instr bool, plain []byte) {
	t.Helper()
	dk, err := f.kms.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &f.arnA, KeySpec: "AES_256",
		EncryptionContext: kmsContext(format)})
	if err != nil {
		t.Fatal(err)
	}
	dek := envelope.NewDataKey(dk.Plaintext)
	clear(dk.Plaintext)
	defer dek.Clear()
	env, body, err := envelope.EncryptContent(format, dek, plain, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if env, err = env.WithWrappedKey(dk.CiphertextBlob, envelope.WrapKMSContext, kmsContext(format)); err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"owner": "team-x"}
	if instr {
		side, ib, err := env.InstructionFile()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range side {
			meta[k] = v
		}
		ik := key + envelope.DefaultInstructionSuffix
		if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &ik, Body: bytes.NewReader(ib)}); err != nil {
			t.Fatal(err)
		}
	} else {
		m, err := env.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			meta[k] = v
		}
	}
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &key, Body: bytes.NewReader(body),
		Metadata: meta, ContentType: aws.String("text/x-test"), Tagging: aws.String("team=x&tier=1")}); err != nil {
		t.Fatal(err)
	}
}

func kmsContext(format envelope.Format) map[string]string {
	cek := string(envelope.ContentAESGCM)
	if format == envelope.V3 {
		cek = "115"
	}
	return map[string]string{"app": "billing", envelope.ReservedContextKey: cek}
}

// job classifies an object as the pipeline does.
func (f *fixture) job(t *testing.T, key string) reencrypt.Job {
	t.Helper()
	obj, err := f.commit.Head(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	j := reencrypt.Job{Obj: obj, From: f.a, To: f.b}
	var body []byte
	if envelope.NeedsInstructionFile(obj.Metadata) {
		if j.Instr, body, err = f.commit.ReadInstruction(ctx, f.bucket, key+envelope.DefaultInstructionSuffix, ""); err != nil {
			t.Fatal(err)
		}
	}
	if j.Env, err = envelope.Parse(obj.Metadata, body, envelope.ParseOptions{}); err != nil {
		t.Fatal(err)
	}
	return j
}

// open decrypts an object with keyring k, in memory, as a reader would.
func (f *fixture) open(t *testing.T, key string, k rewrap.Keyring) ([]byte, *envelope.Envelope, error) {
	t.Helper()
	return sample.Open(ctx, f.s3, f.bucket, key, k)
}

// engine returns an engine with 5 MiB parts reading through a counter.
func (f *fixture) engine() *reencrypt.Engine {
	return &reencrypt.Engine{Reader: countingReader{f.s3, &f.gets}, Writer: f.commit, PartSize: 5 * mib, PartsInFlight: 3}
}

// saved is the checkpoint a Write saved, where the ledger would keep it.
type saved struct {
	state    []byte
	uploadID string
	saves    int
}

func (s *saved) save(in *reencrypt.Intent) func(context.Context) error {
	return func(context.Context) error {
		if s != nil {
			s.state, s.uploadID = in.State(), in.UploadID()
			s.saves++
		}
		return nil
	}
}

// reencryptWith re-encrypts j with e as the commit protocol drives the
// engine (Begin, then Write), keeping the checkpoint in st (nil: none).
func (f *fixture) reencryptWith(ctx context.Context, e *reencrypt.Engine, j reencrypt.Job, st *saved) (reencrypt.Result, *reencrypt.Intent, error) {
	in, err := e.Begin(ctx, j)
	if err != nil {
		return reencrypt.Result{}, nil, err
	}
	_ = st.save(in)(ctx)
	res, err := e.Write(ctx, j, in, st.save(in))
	return res, in, err
}

// resumeWith goes on from the checkpoint in st with e (a new process).
func (f *fixture) resumeWith(ctx context.Context, e *reencrypt.Engine, j reencrypt.Job, st *saved) (reencrypt.Result, *reencrypt.Intent, error) {
	in, err := e.Resume(ledger.Upload{ID: ledger.ObjectID{Bucket: j.Obj.Bucket, Key: j.Obj.Key}, RunID: "r1", UploadID: st.uploadID, State: st.state})
	if err != nil {
		return reencrypt.Result{}, nil, err
	}
	res, err := e.Write(ctx, j, in, st.save(in))
	return res, in, err
}

type countingReader struct {
	c *s3.Client
	n *atomic.Int64
}

func (r countingReader) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := r.c.GetObject(ctx, in, opts...)
	if err == nil {
		r.n.Add(aws.ToInt64(out.ContentLength))
	}
	return out, err
}

func (f *fixture) uploads(t *testing.T) int {
	t.Helper()
	out, err := f.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &f.bucket})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

func plaintext(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// checkKept verifies the decoration survived.
func (f *fixture) checkKept(t *testing.T, key string) {
	t.Helper()
	obj, err := f.commit.Head(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if obj.ContentType != "text/x-test" || obj.Metadata["owner"] != "team-x" {
		t.Errorf("%s: content type %q, metadata %v: not kept", key, obj.ContentType, obj.Metadata)
	}
	tags, err := f.commit.Tags(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range tags {
		got[*tg.Key] = *tg.Value
	}
	if got["team"] != "x" || got["tier"] != "1" || len(got) != 2 {
		t.Errorf("%s: tags %v, want team=x tier=1", key, got)
	}
}

func TestReencryptSizesFormatsPlacements(t *testing.T) {
	f := newFixture(t)
	sizes := []int{0, 1, 15, 16, 17, 5*mib - 1, 5 * mib, 5*mib + 1, 16*mib + 7}
	for _, format := range []envelope.Format{envelope.V2, envelope.V3} {
		for _, instr := range []bool{false, true} {
			for _, size := range sizes {
				name := fmt.Sprintf("%v/instr=%v/%d", format, instr, size)
				t.Run(name, func(t *testing.T) {
					key := "obj/" + name
					plain := plaintext(size)
					f.put(t, key, format, instr, plain)
					j := f.job(t, key)
					oldWrapped := j.Env.WrappedKey
					res, _, err := f.reencryptWith(ctx, f.engine(), j, nil)
					if err != nil {
						t.Fatal(err)
					}
					wantParts := 1
					if size+16 > 5*mib {
						wantParts = (size + 5*mib - 1) / (5 * mib)
					}
					if res.Parts != wantParts {
						t.Errorf("parts = %d, want %d", res.Parts, wantParts)
					}
					got, env, err := f.open(t, key, f.b)
					if err != nil {
						t.Fatalf("open under B: %v", err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("plaintext differs after re-encryption")
					}
					if bytes.Equal(env.WrappedKey, oldWrapped) || env.Format != format {
						t.Errorf("format %v (want %v), wrapped key replaced: %v", env.Format, format, !bytes.Equal(env.WrappedKey, oldWrapped))
					}
					if env.MatDesc["app"] != "billing" {
						t.Errorf("encryption context not kept: %v", env.MatDesc)
					}
					if _, _, err := f.open(t, key, f.a); err == nil {
						t.Errorf("still opens under A")
					}
					f.checkKept(t, key)
					if n := f.uploads(t); n != 0 {
						t.Errorf("%d multipart uploads left", n)
					}
				})
			}
		}
	}
}

func TestReencryptUpgradesToV3(t *testing.T) {
	f := newFixture(t)
	plain := plaintext(11*mib + 3)
	f.put(t, "up", envelope.V2, false, plain)
	j := f.job(t, "up")
	j.Format = envelope.V3
	if _, _, err := f.reencryptWith(ctx, f.engine(), j, nil); err != nil {
		t.Fatal(err)
	}
	got, env, err := f.open(t, "up", f.b)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %v (equal %v)", err, bytes.Equal(got, plain))
	}
	if env.Format != envelope.V3 || env.MatDesc[envelope.ReservedContextKey] != "115" {
		t.Errorf("format %v, context %v: want V3 with aws:x-amz-cek-alg 115", env.Format, env.MatDesc)
	}
}

// corrupt flips one byte of the object's body at off, keeping its metadata.
func (f *fixture) corrupt(t *testing.T, key string, off int) {
	t.Helper()
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if off < 0 {
		off += len(body)
	}
	body[off] ^= 0x01
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &key, Body: bytes.NewReader(body),
		Metadata: out.Metadata, ContentType: out.ContentType}); err != nil {
		t.Fatal(err)
	}
}

func TestReencryptBadTagAborts(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		size int
		off  int
	}{
		{"single/tag", 1000, -1},
		{"multipart/tag", 12 * mib, -1},
		{"multipart/first-part", 12 * mib, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "bad/" + tc.name
			f.put(t, key, envelope.V2, false, plaintext(tc.size))
			f.corrupt(t, key, tc.off)
			j := f.job(t, key)
			before := j.Obj.ETag
			e := f.engine()
			_, in, err := f.reencryptWith(ctx, e, j, &saved{})
			if !errors.Is(err, reencrypt.ErrAuthentication) {
				t.Fatalf("err = %v, want ErrAuthentication", err)
			}
			// What the protocol does with an attempt given up.
			if err := e.Abort(ctx, in, f.bucket, key); err != nil {
				t.Fatal(err)
			}
			obj, _ := f.commit.Head(ctx, f.bucket, key, "")
			if obj.ETag != before {
				t.Errorf("object changed: ETag %s, was %s", obj.ETag, before)
			}
			if n := f.uploads(t); n != 0 {
				t.Errorf("%d multipart uploads left", n)
			}
		})
	}
}

func TestReencryptChangedMidRunAborts(t *testing.T) {
	f := newFixture(t)
	f.put(t, "moving", envelope.V2, false, plaintext(16*mib))
	j := f.job(t, "moving")
	e := f.engine()
	e.PartsInFlight = 1
	other := []byte("someone else's bytes")
	e.AfterPart = func(n int) {
		if n == 1 {
			if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String("moving"), Body: bytes.NewReader(other)}); err != nil {
				t.Error(err)
			}
		}
	}
	_, in, err := f.reencryptWith(ctx, e, j, &saved{})
	if !errors.Is(err, commit.ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
	}
	cur, err := f.commit.Head(ctx, f.bucket, "moving", "")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.Content(ctx, in, cur, f.b); err != nil || c != reencrypt.ContentOther {
		t.Fatalf("Content = %v, %v; want someone else's", c, err)
	}
	if err := e.Abort(ctx, in, f.bucket, "moving"); err != nil {
		t.Fatal(err)
	}
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.bucket, Key: aws.String("moving")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, other) {
		t.Errorf("the other writer's object was overwritten")
	}
	if n := f.uploads(t); n != 0 {
		t.Errorf("%d multipart uploads left", n)
	}
}

// keyRand is a deterministic source of data keys, IVs and message ids, so
// that a test knows the new data key and can look for it.
type keyRand struct{ n byte }

func (r *keyRand) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

func TestReencryptResumesFromLastPart(t *testing.T) {
	for _, instr := range []bool{false, true} {
		t.Run(fmt.Sprintf("instr=%v", instr), func(t *testing.T) {
			f := newFixture(t)
			plain := plaintext(26*mib + 5) // 6 parts of 5 MiB
			f.put(t, "big", envelope.V3, instr, plain)
			j := f.job(t, "big")

			// Interrupted after the third part is checkpointed.
			e := f.engine()
			e.PartsInFlight = 1
			e.Rand = &keyRand{}
			// The new data key is the first 32 bytes the engine draws.
			newDEK := make([]byte, envelope.DataKeySize)
			_, _ = (&keyRand{}).Read(newDEK)
			cctx, cancel := context.WithCancel(ctx)
			e.AfterPart = func(n int) {
				if n == 3 {
					cancel()
				}
			}
			st := &saved{}
			_, _, err := f.reencryptWith(cctx, e, j, st)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted call: err = %v, want context.Canceled", err)
			}
			if n := f.uploads(t); n != 1 {
				t.Fatalf("%d uploads after the interruption, want 1 kept for resume", n)
			}
			// The checkpoint holds no plaintext, no new data key, nor the
			// V3 content key derived from it: only the wrapped data key.
			if bytes.Contains(st.state, plain[:64]) {
				t.Fatal("checkpoint holds plaintext")
			}
			if bytes.Contains(st.state, newDEK) || bytes.Contains(st.state, newDEK[:16]) || bytes.Contains(st.state, newDEK[16:]) {
				t.Fatal("checkpoint holds the new data key (or half of it)")
			}
			in, err := e.Resume(ledger.Upload{State: st.state, UploadID: st.uploadID})
			if err != nil {
				t.Fatal(err)
			}
			ck, _, err := envelope.DeriveV3(envelope.NewDataKey(newDEK), in.NewEnv.MessageID)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(st.state, ck.Bytes()) {
				t.Fatal("checkpoint holds the content key")
			}
			// The object is untouched meanwhile.
			if got, _, err := f.open(t, "big", f.a); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("object changed by an interrupted re-encryption: %v", err)
			}

			// Resume: a fresh engine (a new process) from the checkpoint.
			f.gets.Store(0)
			res, _, err := f.resumeWith(ctx, f.engine(), f.job(t, "big"), st)
			if err != nil {
				t.Fatal(err)
			}
			if res.Resumed != 3 || res.Parts != 6 {
				t.Errorf("resumed %d of %d parts, want 3 of 6", res.Resumed, res.Parts)
			}
			// Only parts 4 to 6 (and the tag) were read again.
			if read, want := f.gets.Load(), int64(len(plain)+16-3*5*mib); read != want {
				t.Errorf("resume read %d bytes, want %d (parts 4-6 only)", read, want)
			}
			got, _, err := f.open(t, "big", f.b)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("open under B after resume: %v", err)
			}
			if n := f.uploads(t); n != 0 {
				t.Errorf("%d uploads left", n)
			}
		})
	}
}

// failInstr fails the first WriteInstruction, as a crash between the
// object write and the instruction file write would leave things.
type failInstr struct {
	*commit.Committer
	fail atomic.Bool
}

func (w *failInstr) WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error) {
	if w.fail.CompareAndSwap(true, false) {
		return commit.Result{}, errors.New("injected: connection reset")
	}
	return w.Committer.WriteInstruction(ctx, instr, body)
}

// TestReencryptContentEvidence: after the content of an instruction-file
// object landed and its instruction file did not, the checkpoint says so
// (phase completed) and Content recognises the new content by its ETag
// and, when someone re-uploads the same bytes under another ETag, by
// authenticating it under the new key; the original object is old
// content and anything else someone else's. A resumed Write then writes
// only the instruction file.
func TestReencryptContentEvidence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		format envelope.Format
	}{{"single-v2", 100, envelope.V2}, {"multipart-v2", 12 * mib, envelope.V2}, {"single-v3", 100, envelope.V3}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			plain := plaintext(tc.size)
			f.put(t, "ins", tc.format, true, plain)
			j := f.job(t, "ins")
			e := f.engine()
			w := &failInstr{Committer: f.commit}
			w.fail.Store(true)
			e.Writer = w
			st := &saved{}
			if _, in, err := f.reencryptWith(ctx, e, j, st); err == nil {
				t.Fatal("the instruction file write did not fail")
			} else if in.Phase() != reencrypt.PhaseCompleted {
				t.Fatalf("phase %v after the content landed", in.Phase())
			}
			e = f.engine()
			in, err := e.Resume(ledger.Upload{State: st.state, UploadID: st.uploadID})
			if err != nil {
				t.Fatal(err)
			}
			if in.Phase() != reencrypt.PhaseCompleted || !in.Instruction() {
				t.Fatalf("checkpoint: phase %v, instruction %v", in.Phase(), in.Instruction())
			}
			cur, err := f.commit.Head(ctx, f.bucket, "ins", "")
			if err != nil {
				t.Fatal(err)
			}
			if c, err := e.Content(ctx, in, cur, nil); err != nil || c != reencrypt.ContentNew {
				t.Fatalf("Content of the landed content = %v, %v", c, err)
			}
			if c, err := e.Content(ctx, in, j.Obj, nil); err != nil || c != reencrypt.ContentOld {
				t.Fatalf("Content of the original = %v, %v", c, err)
			}
			// The same bytes under another ETag (a single PUT): only the
			// tag under the new key can tell.
			body := f.rawBody(t, "ins")
			out, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String("ins"), Body: bytes.NewReader(body), Metadata: cur.Metadata})
			if err != nil {
				t.Fatal(err)
			}
			copied, err := f.commit.Head(ctx, f.bucket, "ins", "")
			if err != nil {
				t.Fatal(err)
			}
			if tc.format == envelope.V2 && tc.size > 5*mib && aws.ToString(out.ETag) == cur.ETag {
				t.Fatal("the copy kept the multipart ETag")
			}
			if _, err := e.Content(ctx, in, copied, nil); tc.format == envelope.V2 && tc.size > 5*mib && err == nil {
				t.Fatal("Content decided without evidence or a key")
			}
			if c, err := e.Content(ctx, in, copied, f.b); err != nil || c != reencrypt.ContentNew {
				t.Fatalf("Content of a copy of the new content = %v, %v", c, err)
			}
			other := f.otherObject(t, "ins")
			if c, err := e.Content(ctx, in, other, f.b); err != nil || c != reencrypt.ContentOther {
				t.Fatalf("Content of someone else's object = %v, %v", c, err)
			}
			// Put the landed content back and finish: only the instruction
			// file is written.
			if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String("ins"), Body: bytes.NewReader(body), Metadata: cur.Metadata}); err != nil {
				t.Fatal(err)
			}
			j2 := f.jobRaw(t, "ins")
			if _, err := e.Write(ctx, j2, in, st.save(in)); err != nil {
				t.Fatal(err)
			}
			got, _, err := f.open(t, "ins", f.b)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("open under B: %v", err)
			}
		})
	}
}

// otherObject writes someone else's bytes over key and returns its state.
func (f *fixture) otherObject(t *testing.T, key string) *commit.Object {
	t.Helper()
	if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: &key, Body: bytes.NewReader(plaintext(300))}); err != nil {
		t.Fatal(err)
	}
	obj, err := f.commit.Head(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// jobRaw reads an object and its instruction file without parsing the
// envelope (a half-written object's does not parse).
func (f *fixture) jobRaw(t *testing.T, key string) reencrypt.Job {
	t.Helper()
	obj, err := f.commit.Head(ctx, f.bucket, key, "")
	if err != nil {
		t.Fatal(err)
	}
	j := reencrypt.Job{Obj: obj, To: f.b}
	if j.Instr, _, err = f.commit.ReadInstruction(ctx, f.bucket, key+envelope.DefaultInstructionSuffix, ""); err != nil {
		t.Fatal(err)
	}
	return j
}
