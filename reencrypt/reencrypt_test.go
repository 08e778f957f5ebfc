package reencrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

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
	ledger ledger.Ledger
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
	// versitygw v1.8.0 computes part checksums wrongly for copies; new
	// content goes up without a checksum algorithm here.
	f.commit = commit.New(f.s3, commit.Options{NoMultipartChecksum: true})
	l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.ledger = l
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
func (f *fixture) engine(run string) *reencrypt.Engine {
	return &reencrypt.Engine{Reader: countingReader{f.s3, &f.gets}, Writer: f.commit, Checkpoints: f.ledger,
		RunID: run, PartSize: 5 * mib, PartsInFlight: 3}
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

func (f *fixture) claim(t *testing.T, j reencrypt.Job, run string) {
	t.Helper()
	id := ledger.ObjectID{Bucket: j.Obj.Bucket, Key: j.Obj.Key, VersionID: j.Obj.VersionID}
	if err := f.ledger.Claim(ctx, id, run+"/w", time.Hour); err != nil {
		t.Fatal(err)
	}
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
					f.claim(t, j, "r1")
					oldWrapped := j.Env.WrappedKey
					res, err := f.engine("r1").Reencrypt(ctx, j)
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
					if _, err := f.ledger.GetUpload(ctx, "r1", ledger.ObjectID{Bucket: f.bucket, Key: key}); !errors.Is(err, ledger.ErrNotFound) {
						t.Errorf("checkpoint left behind: %v", err)
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
	f.claim(t, j, "r1")
	if _, err := f.engine("r1").Reencrypt(ctx, j); err != nil {
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
			f.claim(t, j, "r1")
			before := j.Obj.ETag
			_, err := f.engine("r1").Reencrypt(ctx, j)
			if !errors.Is(err, reencrypt.ErrAuthentication) {
				t.Fatalf("err = %v, want ErrAuthentication", err)
			}
			obj, _ := f.commit.Head(ctx, f.bucket, key, "")
			if obj.ETag != before {
				t.Errorf("object changed: ETag %s, was %s", obj.ETag, before)
			}
			if n := f.uploads(t); n != 0 {
				t.Errorf("%d multipart uploads left", n)
			}
			if _, err := f.ledger.GetUpload(ctx, "r1", ledger.ObjectID{Bucket: f.bucket, Key: key}); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("checkpoint left behind: %v", err)
			}
		})
	}
}

func TestReencryptChangedMidRunAborts(t *testing.T) {
	f := newFixture(t)
	f.put(t, "moving", envelope.V2, false, plaintext(16*mib))
	j := f.job(t, "moving")
	f.claim(t, j, "r1")
	e := f.engine("r1")
	e.PartsInFlight = 1
	other := []byte("someone else's bytes")
	e.AfterPart = func(n int) {
		if n == 1 {
			if _, err := f.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.bucket, Key: aws.String("moving"), Body: bytes.NewReader(other)}); err != nil {
				t.Error(err)
			}
		}
	}
	_, err := e.Reencrypt(ctx, j)
	if !errors.Is(err, commit.ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
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

func TestReencryptResumesFromLastPart(t *testing.T) {
	for _, instr := range []bool{false, true} {
		t.Run(fmt.Sprintf("instr=%v", instr), func(t *testing.T) {
			f := newFixture(t)
			plain := plaintext(26*mib + 5) // 6 parts of 5 MiB
			f.put(t, "big", envelope.V3, instr, plain)
			j := f.job(t, "big")
			f.claim(t, j, "r1")

			// Interrupted after the third part is checkpointed.
			e := f.engine("r1")
			e.PartsInFlight = 1
			cctx, cancel := context.WithCancel(ctx)
			e.AfterPart = func(n int) {
				if n == 3 {
					cancel()
				}
			}
			_, err := e.Reencrypt(cctx, j)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted call: err = %v, want context.Canceled", err)
			}
			if n := f.uploads(t); n != 1 {
				t.Fatalf("%d uploads after the interruption, want 1 kept for resume", n)
			}
			u, err := f.ledger.GetUpload(ctx, "r1", ledger.ObjectID{Bucket: f.bucket, Key: "big"})
			if err != nil {
				t.Fatalf("checkpoint: %v", err)
			}
			if bytes.Contains(u.State, plain[:64]) {
				t.Fatal("checkpoint holds plaintext")
			}
			// The object is untouched meanwhile.
			if got, _, err := f.open(t, "big", f.a); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("object changed by an interrupted re-encryption: %v", err)
			}

			// Resume: a fresh engine (a new process) with the same run.
			f.gets.Store(0)
			e2 := f.engine("r1")
			res, err := e2.Reencrypt(ctx, f.job(t, "big"))
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

func TestReencryptInstructionFileFinishedLater(t *testing.T) {
	for _, size := range []int{100, 12 * mib} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			f := newFixture(t)
			plain := plaintext(size)
			f.put(t, "ins", envelope.V2, true, plain)
			j := f.job(t, "ins")
			f.claim(t, j, "r1")
			e := f.engine("r1")
			w := &failInstr{Committer: f.commit}
			w.fail.Store(true)
			e.Writer = w
			_, err := e.Reencrypt(ctx, j)
			if !errors.Is(err, reencrypt.ErrInstructionNotWritten) {
				t.Fatalf("err = %v, want ErrInstructionNotWritten", err)
			}
			// The next call sees the new content with the old instruction
			// file and finishes from the checkpoint.
			res, err := e.Reencrypt(ctx, f.job(t, "ins"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Instr.ETagAfter == "" {
				t.Errorf("instruction file not written: %+v", res)
			}
			got, _, err := f.open(t, "ins", f.b)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("open under B: %v", err)
			}
		})
	}
}

// killAfterComplete completes the upload, then reports the run interrupted,
// as a kill -9 right after CompleteMultipartUpload would leave things: the
// new content landed, the checkpoint does not say so.
type killAfterComplete struct {
	*commit.Committer
	cancel context.CancelFunc
}

func (w *killAfterComplete) CompleteUpload(ctx context.Context, obj *commit.Object, id string, parts []types.CompletedPart) (commit.Result, error) {
	if _, err := w.Committer.CompleteUpload(ctx, obj, id, parts); err != nil {
		return commit.Result{}, err
	}
	w.cancel()
	return commit.Result{}, context.Canceled
}

func TestReencryptInstructionFileLandedUnrecorded(t *testing.T) {
	f := newFixture(t)
	plain := plaintext(12 * mib)
	f.put(t, "ins", envelope.V2, true, plain)
	j := f.job(t, "ins")
	f.claim(t, j, "r1")
	e := f.engine("r1")
	cctx, cancel := context.WithCancel(ctx)
	e.Writer = &killAfterComplete{Committer: f.commit, cancel: cancel}
	if _, err := e.Reencrypt(cctx, j); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// New content, old instruction file: unreadable until finished.
	if _, _, err := f.open(t, "ins", f.a); err == nil {
		t.Fatal("expected the half-written object not to open")
	}
	res, err := f.engine("r1").Reencrypt(ctx, f.job(t, "ins"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Instr.ETagAfter == "" {
		t.Errorf("instruction file not written")
	}
	got, _, err := f.open(t, "ins", f.b)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open under B: %v", err)
	}
}
