package reencrypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/semaphore"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/gcmstream"
	"github.com/rotator-dev/rotator/internal/awsx"
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
	ListUploads(ctx context.Context, bucket, key string) ([]commit.Upload, error)
	PutContent(ctx context.Context, obj *commit.Object, meta map[string]string, body []byte) (commit.Result, error)
	WriteInstruction(ctx context.Context, instr *commit.Object, body []byte) (commit.Result, error)
}

var _ Writer = (*commit.Committer)(nil)

// Engine re-encrypts objects. Set its fields before the first call; it is
// safe for concurrent use by many workers, which share its memory budget.
type Engine struct {
	Reader Reader
	Writer Writer
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
	// Now is the clock of checkpoints (default time.Now).
	Now func() time.Time

	// AfterPart, when set, is called after each part's checkpoint is saved
	// (tests use it to stop a run at a part boundary).
	AfterPart func(n int)

	once sync.Once
	mem  *semaphore.Weighted
	bufs sync.Pool

	statMu  sync.Mutex
	held    int64 // budget bytes held now
	maxHeld int64 // the most ever held at once
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

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) inFlight() int {
	if e.PartsInFlight > 0 {
		return e.PartsInFlight
	}
	return DefaultPartsInFlight
}

// PeakMemory returns the most bytes of the memory budget ever held at once
// by this engine's part buffers (never more than Memory).
func (e *Engine) PeakMemory() int64 {
	e.statMu.Lock()
	defer e.statMu.Unlock()
	return e.maxHeld
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
	// Obj is the object as read after its claim; every read and write is
	// guarded by its ETag.
	Obj *commit.Object
	// Instr is the instruction file when the envelope lives there.
	Instr *commit.Object
	// Env is the object's envelope.
	Env *envelope.Envelope
	// From unwraps the old data key; To wraps the new one (and unwraps it
	// again when an intent is resumed).
	From rewrap.Unwrapper
	To   rewrap.Keyring
	// Format is the new object's format: 0 keeps the object's (V1 is
	// always upgraded to V2), envelope.V3 upgrades to key-committing.
	Format envelope.Format
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
	// ErrLength: the object's size is not what its envelope records
	// (x-amz-unencrypted-content-length plus the tag): a truncated or
	// extended body. Left untouched.
	ErrLength = errors.New("the object's size does not match the plaintext length its envelope records (truncated or extended): left untouched")
)

// targetFormat returns the format of the new object.
func targetFormat(env *envelope.Envelope, want envelope.Format) envelope.Format {
	if want == envelope.V3 || env.Format == envelope.V3 {
		return envelope.V3
	}
	return envelope.V2
}

// Intent is one re-encryption between Begin (or Resume) and the end of
// its writes: the new envelope and the checkpoint the ledger keeps
// (State). It holds open content streams; Close clears them.
type Intent struct {
	// NewEnv is the new envelope; its data key is wrapped under To.
	NewEnv *envelope.Envelope
	ck     *checkpoint
	r      *run // nil for an intent resumed from its state until Write
}

// Phase is how far an intent's writes went.
type Phase int

// Phases of an intent.
const (
	// PhaseUploading: the write that makes the new content visible was
	// never sent (parts may be uploaded): the object is as it was.
	PhaseUploading Phase = iota
	// PhaseCompleting: that write was sent (CompleteMultipartUpload or
	// PutObject); whether it landed is known only from the object.
	PhaseCompleting
	// PhaseCompleted: the new content landed; the new instruction file is
	// still to be written (instruction-file objects only).
	PhaseCompleted
)

func (p Phase) String() string {
	switch p {
	case PhaseUploading:
		return "uploading"
	case PhaseCompleting:
		return "completing"
	case PhaseCompleted:
		return "content landed, instruction file pending"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// State is the checkpoint to save in the ledger (ledger.Upload.State): no
// plaintext key, only the wrapped new data key and sealed GHASH states.
func (in *Intent) State() []byte { return in.ck.Marshal() }

// UploadID is the multipart upload the intent writes, "" when none.
func (in *Intent) UploadID() string { return in.ck.UploadID }

// Phase is how far the writes went.
func (in *Intent) Phase() Phase { return in.ck.Phase }

// Instruction reports whether the object's envelope lives in an
// instruction file.
func (in *Intent) Instruction() bool { return in.ck.Instruction }

// ToKey is the canonical id of the key that wraps the new data key.
func (in *Intent) ToKey() string { return in.ck.ToKey }

// Source is the object version the intent re-encrypts, as the checkpoint
// recorded it: ETag, version id and size.
func (in *Intent) Source() (etag, versionID string, size int64) {
	return in.ck.SourceETag, in.ck.SourceVersion, in.ck.Size
}

// NeedsCheckpoint reports whether the intent must be saved in the ledger
// before Write: an object written in parts (its parts and upload are
// recovery state) or whose envelope lives in an instruction file (the
// new envelope exists nowhere else until its file is written). A
// single-part object with the envelope in its metadata lands in one write
// that carries its envelope: the ledger's prepared event is enough.
func (in *Intent) NeedsCheckpoint() bool {
	return in.ck.Instruction || in.ck.Multipart
}

// Close clears the intent's content streams.
func (in *Intent) Close() {
	if in.r != nil {
		in.r.close()
	}
}

// Begin starts the re-encryption of job: it unwraps the old data key (a
// wrong key fails here), checks the object's size against its envelope,
// makes a fresh data key, wraps it under job.To and builds the new
// envelope. Nothing is written anywhere. The caller records the intent
// (its new envelope's fingerprint, and State when NeedsCheckpoint) before
// it calls Write.
func (e *Engine) Begin(ctx context.Context, job Job) (*Intent, error) {
	e.init()
	r, err := e.newRun(job)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	if err := r.openOld(ctx); err != nil {
		return nil, err
	}
	if err := r.measure(ctx); err != nil {
		return nil, err
	}
	if err := r.openNew(ctx, nil); err != nil {
		return nil, err
	}
	ps := e.partSize(r.textLen)
	ck := &checkpoint{SourceETag: job.Obj.ETag, SourceVersion: job.Obj.VersionID, Size: job.Obj.Size,
		PartSize: ps, NewEnvelope: r.newEnvMeta(), ToKey: job.To.ID(), Instruction: job.Instr != nil,
		Multipart: job.Instr != nil || r.textLen+tagSize > ps, Created: e.now().UnixMilli()}
	r.ck = ck
	ok = true
	return &Intent{NewEnv: r.newEnv, ck: ck, r: r}, nil
}

// Resume loads an intent from the state a Write saved (ledger.Upload).
func (e *Engine) Resume(u ledger.Upload) (*Intent, error) {
	e.init()
	ck, err := unmarshalCheckpoint(u.State)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint of %s (run %s) is unreadable; it is left in place: %w", u.ID, u.RunID, err)
	}
	if ck.UploadID == "" {
		ck.UploadID = u.UploadID
	}
	env, err := envelope.Parse(ck.NewEnvelope, nil, envelope.ParseOptions{MaxMetadataBytes: -1})
	if err != nil {
		return nil, fmt.Errorf("the checkpoint of %s (run %s) holds an unreadable envelope; it is left in place: %w", u.ID, u.RunID, err)
	}
	return &Intent{NewEnv: env, ck: ck}, nil
}

// newRun checks the job's content algorithm and starts a run.
func (e *Engine) newRun(job Job) (*run, error) {
	env := job.Env
	r := &run{e: e, job: job, id: ledger.ObjectID{Bucket: job.Obj.Bucket, Key: job.Obj.Key, VersionID: job.Obj.VersionID}}
	switch {
	case env.CEKAlg == envelope.ContentAESGCM && env.Format == envelope.V2,
		env.CEKAlg == envelope.ContentCommitKey && env.Format == envelope.V3:
		if job.Obj.Size < tagSize {
			return nil, fmt.Errorf("%w: the object has %d bytes, less than an AES-GCM tag: it is not S3 Encryption Client content (left untouched)", ErrAuthentication, job.Obj.Size)
		}
	case isCBC(env):
		r.cbc = true
	default:
		return nil, fmt.Errorf("%w: %v content %q", ErrUnsupported, env.Format, env.CEKAlg)
	}
	return r, nil
}

// measure sets the content's plaintext length and checks it against the
// length the envelope records, when it records one.
func (r *run) measure(ctx context.Context) error {
	r.textLen = r.job.Obj.Size - tagSize
	if r.cbc {
		var err error
		if r.textLen, err = r.cbcPlainLength(ctx, r.job.Obj.Size); err != nil {
			return err
		}
	}
	if n := r.job.Env.UnencryptedContentLength; n >= 0 && n != r.textLen {
		return fmt.Errorf("%w: %d bytes of plaintext recorded, the object holds %d", ErrLength, n, r.textLen)
	}
	return nil
}

// run is the state of one intent's writes.
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

	mu   sync.Mutex
	ck   *checkpoint
	olds map[int]gcmstream.Partial
	news map[int]gcmstream.Partial
	done map[int]types.CompletedPart
	// prefix Partials of parts 1..ck.Prefix
	oldPrefix, newPrefix gcmstream.Partial
	// save persists the checkpoint (the ledger); nil keeps none.
	save func(context.Context) error
}

func (r *run) close() {
	if r.old != nil {
		r.old.Close()
		r.old = nil
	}
	if r.new != nil {
		r.new.Close()
		r.new = nil
	}
}

func (r *run) newEnvMeta() map[string]string {
	m, _ := r.newEnv.Metadata() // validated when it was built
	return m
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
// message, or (resuming) unwraps the checkpoint's with to.
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
	if !r.ck.Instruction {
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

// buffer takes n bytes of the memory budget and returns a buffer. A
// caller never takes a second buffer while it holds one: the budget
// cannot deadlock.
func (r *run) buffer(ctx context.Context, n int64) ([]byte, func(), error) {
	return r.e.buffer(ctx, n)
}

func (e *Engine) buffer(ctx context.Context, n int64) ([]byte, func(), error) {
	e.init()
	w := min(n, e.Memory)
	if err := e.mem.Acquire(ctx, w); err != nil {
		return nil, nil, err
	}
	e.statMu.Lock()
	e.held += w
	e.maxHeld = max(e.maxHeld, e.held)
	e.statMu.Unlock()
	var b []byte
	if p, _ := e.bufs.Get().(*[]byte); p != nil && int64(cap(*p)) >= n {
		b = (*p)[:n]
	} else {
		b = make([]byte, n)
	}
	return b, func() {
		clear(b)
		e.bufs.Put(&b)
		e.statMu.Lock()
		e.held -= w
		e.statMu.Unlock()
		e.mem.Release(w)
	}, nil
}

// get reads bytes [off, off+len(buf)) of the object version into buf.
func (r *run) get(ctx context.Context, buf []byte, off int64) error {
	return r.e.get(ctx, r.job.Obj, buf, off)
}

func (e *Engine) get(ctx context.Context, obj *commit.Object, buf []byte, off int64) error {
	if len(buf) == 0 {
		return nil
	}
	in := &s3.GetObjectInput{
		Bucket:  aws.String(obj.Bucket),
		Key:     aws.String(obj.Key),
		IfMatch: aws.String(obj.ETag),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(len(buf))-1)),
	}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	out, err := awsx.GetObject(ctx, e.Reader, in)
	if err != nil {
		return readError(obj, off, len(buf), err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return readError(obj, off, len(buf), err)
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

// Write makes the intent's writes: for an object of one part with its
// envelope in the metadata, one PutObject (If-Match); otherwise a
// multipart upload (parts re-encrypted in parallel, each recorded through
// save), completed (If-Match) only after the old tag verified, then, for
// an instruction-file object, the new instruction file (If-Match). Before
// each write whose outcome decides what the object holds, the phase is
// recorded through save, which must make it durable (the ledger) before
// Write goes on; save is not called for an intent that does not
// NeedsCheckpoint.
//
// A resumed intent goes on where it stopped: parts already uploaded are
// not read again; a completion that was sent is sent again (with the
// same parts; if it had landed, its retry fails its guard and the caller
// finds out from the object); an intent whose content landed only writes
// its instruction file. job is the object as read now (for a resumed
// intent it is the object still as the checkpoint recorded it, else the
// caller must not resume) and job.To must unwrap the intent's new data key.
//
// Any error leaves the object either as it was or holding the new
// content: the caller decides which from the object (see Content), never
// from the error.
func (e *Engine) Write(ctx context.Context, job Job, in *Intent, save func(context.Context) error) (Result, error) {
	e.init()
	r := in.r
	if r == nil {
		if in.ck.Phase == PhaseCompleted {
			// Only the instruction file is left: no content key needed.
			r = &run{e: e, job: job, newEnv: in.NewEnv}
		} else {
			var err error
			if r, err = e.newRun(job); err != nil {
				return Result{}, err
			}
			if err := r.openNew(ctx, in.ck.NewEnvelope); err != nil {
				r.close()
				return Result{}, err
			}
		}
		r.ck = in.ck
		r.id = ledger.ObjectID{Bucket: job.Obj.Bucket, Key: job.Obj.Key, VersionID: in.ck.SourceVersion}
		in.r = r
	}
	r.job.Obj = job.Obj
	r.job.Instr = job.Instr
	r.save = nil
	if in.NeedsCheckpoint() {
		r.save = save
	}
	var res Result
	var err error
	switch in.ck.Phase {
	case PhaseUploading, PhaseCompleting:
		res, err = r.content(ctx)
	case PhaseCompleted:
		res = r.landedResult()
	}
	if err != nil || !in.ck.Instruction {
		return res, err
	}
	return r.finishInstruction(ctx, res)
}

// MarkLanded records that the object holds the intent's new content, with
// etag and versionID: found from the object after the response of its
// completion was lost (instruction-file objects: the new instruction file
// is what is left to write).
func (in *Intent) MarkLanded(etag, versionID string) {
	if in.ck.Instruction {
		in.ck.Phase, in.ck.ETagAfter, in.ck.VersionAfter = PhaseCompleted, etag, versionID
	}
}

// content writes the new content, from where the checkpoint stands.
func (r *run) content(ctx context.Context) (Result, error) {
	if r.ck.Phase == PhaseUploading && r.old == nil {
		// Resumed before the content landed: the old message is needed
		// again (parts still to re-encrypt, and the old tag).
		if err := r.openOld(ctx); err != nil {
			return Result{}, err
		}
		if err := r.measure(ctx); err != nil {
			return Result{}, err
		}
	} else if r.textLen == 0 && r.ck.Phase == PhaseCompleting {
		r.textLen = r.plainLenFromEnvelope()
	}
	if !r.ck.Multipart {
		return r.single(ctx)
	}
	return r.multipart(ctx)
}

// plainLenFromEnvelope returns the new ciphertext's length without the
// tag, from the new envelope (a resumed completion reads no content).
func (r *run) plainLenFromEnvelope() int64 {
	if n := r.newEnv.UnencryptedContentLength; n >= 0 {
		return n
	}
	return r.ck.Size - tagSize
}

// setPhase records a new phase through save.
func (r *run) setPhase(ctx context.Context, p Phase) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ck.Phase = p
	return r.saveLocked(ctx)
}

// saveLocked saves the checkpoint; the caller holds r.mu or is alone.
func (r *run) saveLocked(ctx context.Context) error {
	if r.save == nil {
		return nil
	}
	return r.save(ctx)
}

// landedResult is the result of an intent whose content landed earlier.
func (r *run) landedResult() Result {
	return Result{NewEnv: r.newEnv, Bytes: r.ck.Size, Parts: max(1, len(r.ck.Parts)), Resumed: len(r.ck.Parts),
		Commit: commit.Result{ETagBefore: r.ck.SourceETag, VersionBefore: r.ck.SourceVersion, ETagAfter: r.ck.ETagAfter, VersionAfter: r.ck.VersionAfter}}
}

// contentLanded records that the new content landed (instruction-file
// objects, whose envelope is written next).
func (r *run) contentLanded(ctx context.Context, cr commit.Result) error {
	if !r.ck.Instruction {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ck.Phase, r.ck.ETagAfter, r.ck.VersionAfter = PhaseCompleted, cr.ETagAfter, cr.VersionAfter
	return r.saveLocked(ctx)
}

// finishInstruction writes the new instruction file of an object whose
// content landed.
func (r *run) finishInstruction(ctx context.Context, res Result) (Result, error) {
	_, body, err := r.newEnv.InstructionFile()
	if err != nil {
		return res, err
	}
	if r.job.Instr == nil {
		return res, fmt.Errorf("reencrypt %s: the instruction file was not read", r.id)
	}
	res.Instr, err = r.e.Writer.WriteInstruction(ctx, r.job.Instr, body)
	return res, err
}

// single re-encrypts an object of one part with its envelope in the
// metadata: one GET, one PutObject.
func (r *run) single(ctx context.Context) (Result, error) {
	n := r.textLen
	size := n + tagSize // of the new object
	oldLen := r.oldLen(0, n, true)
	meta, _, err := r.metadata()
	if err != nil {
		return Result{}, err
	}
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
	r.ck.Phase = PhaseCompleting
	cr, err := r.e.Writer.PutContent(ctx, r.job.Obj, meta, buf)
	if err != nil {
		return Result{}, err
	}
	return Result{NewEnv: r.newEnv, Commit: cr, Parts: 1, Bytes: size}, nil
}

// readError classifies a failed ranged GET like the commit package does.
func readError(obj *commit.Object, off int64, n int, err error) error {
	return commit.ReadError("get range", obj.Bucket, obj.Key, obj.VersionID, fmt.Errorf("bytes %d-%d: %w", off, off+int64(n)-1, err))
}
