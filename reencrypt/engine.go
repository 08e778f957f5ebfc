package reencrypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/semaphore"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/gcmstream"
	"github.com/rotator-dev/rotator/ledger"
	"github.com/rotator-dev/rotator/rewrap"
)

// Sizes and defaults.
const (
	// MinPartSize and maxParts are S3's multipart limits.
	MinPartSize = commit.MinPartSize
	maxParts    = commit.MaxParts
	// DefaultPartSize is the preferred part size.
	DefaultPartSize = 16 << 20
	// DefaultPartsInFlight is the number of parts of one object read,
	// re-encrypted and uploaded at once.
	DefaultPartsInFlight = 4
	// DefaultMemory bounds the part buffers of all objects in flight.
	DefaultMemory = 128 << 20
	tagSize       = gcmstream.TagSize
)

// Reader is the object read the engine uses: ranged GETs.
type Reader interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Writer is the part of commit.Committer the engine writes through.
type Writer interface {
	ContentMetadata(obj *commit.Object, envelopeMeta map[string]string) (map[string]string, error)
	CreateUpload(ctx context.Context, obj *commit.Object, meta map[string]string) (string, error)
	UploadPart(ctx context.Context, obj *commit.Object, uploadID string, n int, body []byte) (types.CompletedPart, error)
	CompleteUpload(ctx context.Context, obj *commit.Object, uploadID string, parts []types.CompletedPart) (commit.Result, error)
	AbortUpload(ctx context.Context, obj *commit.Object, uploadID string) error
	PutContent(ctx context.Context, obj *commit.Object, meta map[string]string, body []byte) (commit.Result, error)
	WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error)
	Head(ctx context.Context, bucket, key, versionID string) (*commit.Object, error)
}

var _ Writer = (*commit.Committer)(nil)

// Checkpoints is the part of the ledger that keeps part-level checkpoints.
type Checkpoints interface {
	SaveUpload(ctx context.Context, u ledger.Upload) error
	GetUpload(ctx context.Context, runID string, id ledger.ObjectID) (ledger.Upload, error)
	DeleteUpload(ctx context.Context, runID string, id ledger.ObjectID) error
}

// Engine re-encrypts objects. Set its fields before the first call; it is
// safe for concurrent use by many workers, which share its memory budget.
type Engine struct {
	Reader Reader
	Writer Writer
	// Checkpoints keeps part-level checkpoints under RunID; nil keeps none
	// (an interrupted object starts over, its upload aborted).
	Checkpoints Checkpoints
	RunID       string
	// PartSize is the preferred part size (default DefaultPartSize); it is
	// rounded up to a multiple of 16, raised to MinPartSize and, for objects
	// above PartSize x 10,000, to what keeps the upload within 10,000 parts.
	PartSize int64
	// PartsInFlight bounds the parts of one object processed at once
	// (default DefaultPartsInFlight).
	PartsInFlight int
	// Memory bounds the bytes of part buffers held by all objects at once
	// (default DefaultMemory). A part larger than Memory takes all of it.
	Memory int64
	// Crypto is the AES-GCM engine run on each part (its zero value uses
	// every core with 1 MiB chunks).
	Crypto gcmstream.Engine
	// Rand is the source of data keys, IVs and message IDs (default
	// crypto/rand).
	Rand io.Reader

	// AfterPart, when set, is called after each part's checkpoint is saved
	// (tests use it to stop a run at a part boundary).
	AfterPart func(n int)

	once sync.Once
	mem  *semaphore.Weighted
	bufs sync.Pool
}

func (e *Engine) init() {
	e.once.Do(func() {
		if e.Memory <= 0 {
			e.Memory = DefaultMemory
		}
		e.mem = semaphore.NewWeighted(e.Memory)
	})
}

func (e *Engine) rand() io.Reader {
	if e.Rand != nil {
		return e.Rand
	}
	return rand.Reader
}

func (e *Engine) inFlight() int {
	if e.PartsInFlight > 0 {
		return e.PartsInFlight
	}
	return DefaultPartsInFlight
}

// PartSizeFor returns the part size the engine uses for an object of size
// bytes.
func (e *Engine) PartSizeFor(size int64) int64 { return e.partSize(size) }

// partSize returns the part size for an object of size bytes.
func (e *Engine) partSize(size int64) int64 {
	ps := e.PartSize
	if ps <= 0 {
		ps = DefaultPartSize
	}
	ps = max(ps, MinPartSize)
	if need := (size + maxParts - 1) / maxParts; ps < need {
		const mib = 1 << 20
		ps = (need + mib - 1) / mib * mib
	}
	return (ps + 15) / 16 * 16
}

// Job is one object to re-encrypt, as classified.
type Job struct {
	// Obj is the object as read at classify time; every read and write is
	// guarded by its ETag.
	Obj *commit.Object
	// Instr is the instruction file when the envelope lives there.
	Instr *commit.Object
	// Env is the object's envelope.
	Env *envelope.Envelope
	// From unwraps the old data key; To wraps the new one (and unwraps it
	// again when a checkpoint is resumed).
	From rewrap.Unwrapper
	To   rewrap.Keyring
	// Format is the new object's format: 0 keeps the object's (V1 is
	// always upgraded to V2), envelope.V3 upgrades to key-committing.
	Format envelope.Format
	// Prepare, when set, is called with the new envelope after the old
	// content authenticated and before the write that makes the new content
	// visible (the ledger's prepared event).
	Prepare func(ctx context.Context, newEnv *envelope.Envelope) error
}

// Result is what a re-encryption did.
type Result struct {
	// NewEnv is the new envelope (its data key wrapped under To).
	NewEnv *envelope.Envelope
	// Commit is the write that made the new content visible (for an
	// instruction-file object, the object's; the instruction file's ETags
	// are in Instr).
	Commit commit.Result
	Instr  commit.Result
	// Parts is the number of parts (1 for a single PutObject), Resumed the
	// number taken from a checkpoint without reading them again.
	Parts, Resumed int
	// Bytes is the object size written.
	Bytes int64
}

// Errors.
var (
	// ErrAuthentication: the old object's tag does not verify: its content
	// (or envelope) was altered, or the data key is not the one it was
	// encrypted with. Nothing was committed; the object is left untouched.
	ErrAuthentication = errors.New("the object's content does not authenticate under its data key (corrupted or tampered): left untouched")
	// ErrUnsupported: the object's format cannot be re-encrypted.
	ErrUnsupported = errors.New("cannot re-encrypt this object")
	// ErrInstructionNotWritten: the new content landed but its instruction
	// file could not be written: the object cannot be decrypted until it
	// is. The checkpoint keeps the new envelope; resume writes it.
	ErrInstructionNotWritten = errors.New("the object was re-encrypted but its new instruction file was not written (run 'rotator resume' to write it)")
)

// targetFormat returns the format of the new object.
func targetFormat(env *envelope.Envelope, want envelope.Format) envelope.Format {
	if want == envelope.V3 || env.Format == envelope.V3 {
		return envelope.V3
	}
	return envelope.V2
}

// Reencrypt re-encrypts one object under a fresh data key wrapped by
// job.To: it reads the object with ranged GETs, decrypts and re-encrypts
// each part in memory, uploads the parts, and commits (PutObject or
// CompleteMultipartUpload, If-Match the ETag read at classify time) only
// after the old tag verified. On failure the upload is aborted and the
// object left as it was. With Checkpoints, each uploaded part is recorded,
// and a later call for the same object version and run resumes after the
// last recorded part without reading earlier parts again.
func (e *Engine) Reencrypt(ctx context.Context, job Job) (Result, error) {
	e.init()
	env := job.Env
	r := &run{e: e, job: job, id: ledger.ObjectID{Bucket: job.Obj.Bucket, Key: job.Obj.Key, VersionID: job.Obj.VersionID}}
	defer r.close()
	switch {
	case env.CEKAlg == envelope.ContentAESGCM && env.Format == envelope.V2,
		env.CEKAlg == envelope.ContentCommitKey && env.Format == envelope.V3:
		if job.Obj.Size < tagSize {
			return Result{}, fmt.Errorf("%w: the object has %d bytes, less than an AES-GCM tag: it is not S3 Encryption Client content (left untouched)", ErrAuthentication, job.Obj.Size)
		}
	case isCBC(env):
		r.cbc = true
	default:
		return Result{}, fmt.Errorf("%w: %v content %q", ErrUnsupported, env.Format, env.CEKAlg)
	}
	// A checkpoint whose new content landed needs neither the old data key
	// nor the old content's length: look for one first.
	if ck, up, err := r.loadCheckpoint(ctx); err != nil {
		return Result{}, err
	} else if ck != nil && ck.Completed {
		// Only the instruction file is left to write. (The envelope read
		// now mixes the new content's metadata with the old instruction
		// file: the old data key is not needed, nor usable.)
		return r.completed(ctx, ck)
	} else if ck != nil {
		r.resumeCk, r.resumeUp = ck, up
	}
	if err := r.openOld(ctx); err != nil {
		return Result{}, err
	}
	// textLen: the content's plaintext (and new ciphertext) length.
	r.textLen = job.Obj.Size - tagSize
	if r.cbc {
		var err error
		if r.textLen, err = r.cbcPlainLength(ctx, job.Obj.Size); err != nil {
			return Result{}, err
		}
	}
	ps := e.partSize(r.textLen)
	ck, up := r.resumeCk, r.resumeUp
	if ck != nil && ck.PartSize != ps {
		// Another part size (the settings changed): start over.
		if err := r.forgetStale(ctx, up); err != nil {
			return Result{}, err
		}
		ck, up = nil, ""
	}
	if r.textLen+tagSize <= ps {
		if ck != nil {
			if err := r.forgetStale(ctx, up); err != nil {
				return Result{}, err
			}
		}
		return r.single(ctx, ps)
	}
	return r.multipart(ctx, ps, ck, up)
}

// run is the state of one Reencrypt call.
type run struct {
	e   *Engine
	job Job
	id  ledger.ObjectID

	old    oldMessage
	new    *gcmstream.Stream
	newEnv *envelope.Envelope
	// cbc: the old content is legacy AES-CBC; textLen is its plaintext
	// length (the new ciphertext's), without the tag.
	cbc     bool
	textLen int64
	// A checkpoint found for this object version, to resume.
	resumeCk *checkpoint
	resumeUp string

	mu   sync.Mutex
	ck   *checkpoint
	up   string // upload id
	olds map[int]gcmstream.Partial
	news map[int]gcmstream.Partial
	done map[int]types.CompletedPart
	// prefix Partials of parts 1..ck.Prefix
	oldPrefix, newPrefix gcmstream.Partial
}

func (r *run) close() {
	if r.old != nil {
		r.old.Close()
	}
	if r.new != nil {
		r.new.Close()
	}
}

// openOld unwraps the old data key and sets up the old message.
func (r *run) openOld(ctx context.Context) error {
	w, cek := rewrap.FromEnvelope(r.job.Env)
	dek, err := r.job.From.Unwrap(ctx, w, cek)
	if err != nil {
		return err
	}
	defer dek.Clear()
	ck, err := r.job.Env.ContentKey(dek)
	if err != nil {
		return err
	}
	defer ck.Clear()
	if r.cbc {
		r.old, err = openCBC(ck.Bytes(), r.job.Env.ContentIV())
		return err
	}
	r.old, err = gcmstream.New(ck.Bytes(), r.job.Env.ContentIV(), r.job.Env.ContentAAD())
	return err
}

// openNew makes a fresh data key, wraps it under To and sets up the new
// message, or (resuming) unwraps the checkpoint's.
func (r *run) openNew(ctx context.Context, resume map[string]string) error {
	var dek *envelope.DataKey
	if resume != nil {
		env, err := envelope.Parse(resume, nil, envelope.ParseOptions{MaxMetadataBytes: -1})
		if err != nil {
			return fmt.Errorf("reencrypt: checkpoint envelope: %w", err)
		}
		w, cek := rewrap.FromEnvelope(env)
		if dek, err = r.job.To.Unwrap(ctx, w, cek); err != nil {
			return err
		}
		r.newEnv = env
	} else {
		var err error
		if dek, err = envelope.GenerateDataKey(r.e.rand()); err != nil {
			return err
		}
		format := targetFormat(r.job.Env, r.job.Format)
		env, err := envelope.NewContent(format, dek, r.textLen, r.e.rand())
		if err != nil {
			dek.Clear()
			return err
		}
		oldW, _ := rewrap.FromEnvelope(r.job.Env)
		w, err := r.job.To.Wrap(ctx, dek, env.CEKAlg, rewrap.UserEntries(oldW.MatDesc))
		if err != nil {
			dek.Clear()
			return err
		}
		if r.newEnv, err = env.WithWrappedKey(w.Key, w.Alg, w.MatDesc); err != nil {
			dek.Clear()
			return err
		}
	}
	defer dek.Clear()
	ck, err := r.newEnv.ContentKey(dek)
	if err != nil {
		return err
	}
	defer ck.Clear()
	if r.new != nil {
		r.new.Close()
	}
	r.new, err = gcmstream.New(ck.Bytes(), r.newEnv.ContentIV(), r.newEnv.ContentAAD())
	return err
}

// metadata returns the new object's user metadata and, for an
// instruction-file object, the new instruction file's body.
func (r *run) metadata() (map[string]string, []byte, error) {
	if r.job.Instr == nil {
		m, err := r.newEnv.Metadata()
		if err != nil {
			return nil, nil, err
		}
		meta, err := r.e.Writer.ContentMetadata(r.job.Obj, m)
		return meta, nil, err
	}
	side, body, err := r.newEnv.InstructionFile()
	if err != nil {
		return nil, nil, err
	}
	meta, err := r.e.Writer.ContentMetadata(r.job.Obj, side)
	return meta, body, err
}

// buffer takes n bytes of the memory budget and returns a buffer.
func (r *run) buffer(ctx context.Context, n int64) ([]byte, func(), error) {
	w := min(n, r.e.Memory)
	if err := r.e.mem.Acquire(ctx, w); err != nil {
		return nil, nil, err
	}
	var b []byte
	if p, _ := r.e.bufs.Get().(*[]byte); p != nil && int64(cap(*p)) >= n {
		b = (*p)[:n]
	} else {
		b = make([]byte, n)
	}
	return b, func() {
		clear(b)
		r.e.bufs.Put(&b)
		r.e.mem.Release(w)
	}, nil
}

// get reads bytes [off, off+len(buf)) of the object version into buf.
func (r *run) get(ctx context.Context, buf []byte, off int64) error {
	if len(buf) == 0 {
		return nil
	}
	obj := r.job.Obj
	in := &s3.GetObjectInput{
		Bucket:  aws.String(obj.Bucket),
		Key:     aws.String(obj.Key),
		IfMatch: aws.String(obj.ETag),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(len(buf))-1)),
	}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	out, err := r.e.Reader.GetObject(ctx, in)
	if err != nil {
		return readError(obj, off, len(buf), err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return &commit.Error{Op: "get range", Bucket: obj.Bucket, Key: obj.Key, VersionID: obj.VersionID,
			Err: fmt.Errorf("bytes %d-%d: %w", off, off+int64(len(buf))-1, err)}
	}
	return nil
}

// reencrypt re-encrypts in place the old ciphertext at offset off of the
// content, buf[:oldLen], into the new ciphertext buf[:n], and returns the
// Partials of the old and the new ciphertext. n == oldLen but for the last
// part of AES-CBC content, whose padding is dropped.
func (r *run) reencrypt(ctx context.Context, buf []byte, oldLen, n int, off int64) (gcmstream.Partial, gcmstream.Partial, error) {
	if !r.cbc {
		w := window{buf: buf[:n], base: off}
		return r.e.Crypto.ReencryptRange(ctx, r.old.(*gcmstream.Stream), r.new, w, w, off, int64(n))
	}
	defer clear(buf[n:oldLen]) // padding
	if err := r.cbcDecrypt(ctx, buf[:oldLen], off); err != nil {
		return gcmstream.Partial{}, gcmstream.Partial{}, err
	}
	np, err := r.e.Crypto.SealAt(ctx, r.new, buf[:n], buf[:n], off)
	return gcmstream.Partial{}, np, err
}

// oldLen returns how many bytes of old content the part at off of n bytes
// of new ciphertext (without the tag) is read from.
func (r *run) oldLen(off int64, n int64, last bool) int64 {
	switch {
	case !last:
		return n
	case r.cbc:
		return r.job.Obj.Size - off // the padding too
	default:
		return n + tagSize
	}
}

// window is a buffer seen as the bytes [base, base+len(buf)) of a message.
type window struct {
	buf  []byte
	base int64
}

func (w window) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, w.buf[off-w.base:]), nil
}

func (w window) WriteAt(p []byte, off int64) (int, error) {
	return copy(w.buf[off-w.base:], p), nil
}

// verifyOld checks the old tag against the whole old message.
func (r *run) verifyOld(total gcmstream.Partial, tag []byte) error {
	if err := r.old.Verify(total, tag); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	return nil
}

// single re-encrypts an object that fits in one part: one GET, one
// PutObject. Nothing needs a checkpoint: an interrupted call starts over.
func (r *run) single(ctx context.Context, ps int64) (Result, error) {
	n := r.textLen
	size := n + tagSize // of the new object
	if err := r.openNew(ctx, nil); err != nil {
		return Result{}, err
	}
	oldLen := r.oldLen(0, n, true)
	buf, release, err := r.buffer(ctx, max(size, oldLen))
	if err != nil {
		return Result{}, err
	}
	defer release()
	if err := r.get(ctx, buf[:oldLen], 0); err != nil {
		return Result{}, err
	}
	var oldTag []byte
	if !r.cbc {
		oldTag = append([]byte(nil), buf[n:size]...)
	}
	op, np, err := r.reencrypt(ctx, buf, int(oldLen), int(n), 0)
	if err != nil {
		return Result{}, err
	}
	buf = buf[:size]
	if err := r.verifyOld(op, oldTag); err != nil {
		return Result{}, err
	}
	tag, err := r.new.Tag(np)
	if err != nil {
		return Result{}, err
	}
	copy(buf[n:], tag[:])
	meta, _, err := r.metadata()
	if err != nil {
		return Result{}, err
	}
	if r.job.Prepare != nil {
		if err := r.job.Prepare(ctx, r.newEnv); err != nil {
			return Result{}, err
		}
	}
	if r.job.Instr != nil {
		// The instruction file is written after the object: a checkpoint
		// keeps the new envelope in between.
		r.ck = r.newCheckpoint(ps)
		if err := r.save(ctx); err != nil {
			return Result{}, err
		}
	}
	cr, err := r.e.Writer.PutContent(ctx, r.job.Obj, meta, buf)
	if err != nil {
		if landed, lerr := r.landed(ctx, err); !landed {
			r.forget(ctx)
			return Result{}, errors.Join(err, lerr)
		}
		cur, _ := r.e.Writer.Head(ctx, r.job.Obj.Bucket, r.job.Obj.Key, "")
		if cur != nil {
			cr = commit.Result{ETagBefore: r.job.Obj.ETag, VersionBefore: r.job.Obj.VersionID, ETagAfter: cur.ETag, VersionAfter: cur.VersionID}
		}
	}
	return r.finish(ctx, Result{NewEnv: r.newEnv, Commit: cr, Parts: 1, Bytes: size})
}

// readError classifies a failed ranged GET like the commit package does.
func readError(obj *commit.Object, off int64, n int, err error) error {
	e := &commit.Error{Op: "get range", Bucket: obj.Bucket, Key: obj.Key, VersionID: obj.VersionID,
		Err: fmt.Errorf("bytes %d-%d: %w", off, off+int64(n)-1, err)}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "PreconditionFailed":
			e.Kind = commit.ErrChanged
		case "NoSuchKey", "NoSuchVersion":
			e.Kind = commit.ErrGone
		case "AccessDenied":
			e.Kind = commit.ErrAccessDenied
			e.Hint = "re-encryption reads objects with s3:GetObject (s3:GetObjectVersion in versioned buckets)"
		case "InvalidObjectState":
			e.Kind = commit.ErrUnsupported
			e.Hint = "the object is archived: restore it first"
		}
	}
	var re *awshttp.ResponseError
	if e.Kind == nil && errors.As(err, &re) && re.HTTPStatusCode() == 412 {
		e.Kind = commit.ErrChanged
	}
	return e
}
