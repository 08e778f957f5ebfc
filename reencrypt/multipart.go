package reencrypt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/gcmstream"
	"github.com/rotator-dev/rotator/ledger"
)

// loadCheckpoint returns this run's checkpoint of the object, if any and
// still valid for the object as classified. A checkpoint for another state
// of the object (it changed since) is dropped and its upload aborted.
func (r *run) loadCheckpoint(ctx context.Context) (*checkpoint, string, error) {
	if r.e.Checkpoints == nil {
		return nil, "", nil
	}
	u, err := r.e.Checkpoints.GetUpload(ctx, r.e.RunID, r.id)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("ledger: read the checkpoint of %s: %w", r.id, err)
	}
	ck, err := unmarshalCheckpoint(u.State)
	if err != nil {
		// Never dropped blindly: it may hold the only copy of the new
		// envelope of content that already landed.
		return nil, "", fmt.Errorf("ledger: the checkpoint of %s is unreadable, left in place (run %s): %w", r.id, r.e.RunID, err)
	}
	switch {
	case ck.Completed && r.job.Obj.ETag == ck.ETagAfter && r.job.Instr != nil:
		return ck, u.UploadID, nil
	case !ck.Completed && ck.SourceETag == r.job.Obj.ETag && ck.Size == r.job.Obj.Size && ck.ToKey == r.job.To.ID():
		return ck, u.UploadID, nil // the caller checks the part size
	case r.job.Instr != nil && ck.SourceETag != r.job.Obj.ETag && ck.ToKey == r.job.To.ID():
		// The object changed since the checkpoint: maybe by our own write,
		// interrupted before it was recorded. Its content tells.
		if err := r.openNew(ctx, ck.NewEnvelope); err != nil {
			return nil, "", err
		}
		if r.authenticates(ctx, r.job.Obj, r.new) == nil {
			ck.Completed, ck.ETagAfter, ck.VersionAfter = true, r.job.Obj.ETag, r.job.Obj.VersionID
			return ck, u.UploadID, nil
		}
	}
	// Stale: the object changed, or the run's settings did.
	if u.UploadID != "" {
		if aerr := r.e.Writer.AbortUpload(ctx, r.job.Obj, u.UploadID); aerr != nil {
			return nil, "", aerr
		}
	}
	if derr := r.e.Checkpoints.DeleteUpload(ctx, r.e.RunID, r.id); derr != nil {
		return nil, "", fmt.Errorf("ledger: drop the stale checkpoint of %s: %w", r.id, derr)
	}
	return nil, "", nil
}

func (r *run) newCheckpoint(ps int64) *checkpoint {
	m, _ := r.newEnv.Metadata() // validated when it was built
	return &checkpoint{SourceETag: r.job.Obj.ETag, SourceVersion: r.job.Obj.VersionID, Size: r.job.Obj.Size,
		PartSize: ps, NewEnvelope: m, ToKey: r.job.To.ID()}
}

// save stores the checkpoint; the caller holds r.mu or is alone.
func (r *run) save(ctx context.Context) error {
	if r.e.Checkpoints == nil || r.ck == nil {
		return nil
	}
	err := r.e.Checkpoints.SaveUpload(context.WithoutCancel(ctx), ledger.Upload{ID: r.id, RunID: r.e.RunID, UploadID: r.up, State: r.ck.Marshal()})
	if err != nil {
		return fmt.Errorf("ledger: checkpoint %s: %w", r.id, err)
	}
	return nil
}

// forget aborts the upload and drops the checkpoint after a definite
// failure: nothing of this attempt is kept.
func (r *run) forget(ctx context.Context) error {
	var errs []error
	if r.up != "" {
		errs = append(errs, r.e.Writer.AbortUpload(ctx, r.job.Obj, r.up))
	}
	if r.e.Checkpoints != nil {
		if err := r.e.Checkpoints.DeleteUpload(context.WithoutCancel(ctx), r.e.RunID, r.id); err != nil {
			errs = append(errs, fmt.Errorf("ledger: drop the checkpoint of %s: %w", r.id, err))
		}
	}
	return errors.Join(errs...)
}

// keep reports whether a failure leaves the upload for a later resume:
// only an interruption does (the run was canceled); any other failure
// aborts it.
func (r *run) keep(ctx context.Context, err error) bool {
	return r.e.Checkpoints != nil && ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// landed finds out, after a failed commit write, whether it landed anyway
// (a retry after a lost response fails its own guard): the current
// version carries the new wrapped key (metadata envelope) or its content
// authenticates under the new content key (instruction-file objects).
func (r *run) landed(ctx context.Context, werr error) (bool, error) {
	if !errors.Is(werr, commit.ErrChanged) && !errors.Is(werr, commit.ErrUploadGone) {
		var ce *commit.Error
		if errors.As(werr, &ce) && ce.Kind != nil {
			return false, nil // a definite refusal
		}
	}
	ctx = context.WithoutCancel(ctx)
	cur, err := r.e.Writer.Head(ctx, r.job.Obj.Bucket, r.job.Obj.Key, "")
	if err != nil || cur.ETag == r.job.Obj.ETag || cur.Size != r.textLen+tagSize {
		return false, nil
	}
	if r.job.Instr == nil {
		env, err := envelope.Parse(cur.Metadata, nil, envelope.ParseOptions{MaxMetadataBytes: -1})
		return err == nil && string(env.WrappedKey) == string(r.newEnv.WrappedKey), nil
	}
	return r.authenticates(ctx, cur, r.new) == nil, nil
}

// authenticates reads obj (its current state) in parts and checks that its
// content is a message of s with a valid tag. No plaintext is produced.
func (r *run) authenticates(ctx context.Context, obj *commit.Object, s *gcmstream.Stream) error {
	if obj.Size < tagSize {
		return ErrAuthentication
	}
	save := r.job.Obj
	r.job.Obj = obj
	defer func() { r.job.Obj = save }()
	n := obj.Size - tagSize
	ps := r.e.partSize(n)
	h := s.NewHasher()
	for off := int64(0); off < n; off += ps {
		ln := min(ps, n-off)
		buf, release, err := r.buffer(ctx, ln)
		if err != nil {
			return err
		}
		err = r.get(ctx, buf, off)
		if err == nil {
			_, err = h.Write(buf)
		}
		release()
		if err != nil {
			return err
		}
	}
	tag := make([]byte, tagSize)
	if err := r.get(ctx, tag, n); err != nil {
		return err
	}
	if err := h.Verify(tag); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	return nil
}

// finish writes the instruction file of an instruction-file object (after
// the object) and drops the checkpoint.
func (r *run) finish(ctx context.Context, res Result) (Result, error) {
	if r.job.Instr != nil {
		if r.ck != nil {
			r.ck.Completed, r.ck.ETagAfter, r.ck.VersionAfter = true, res.Commit.ETagAfter, res.Commit.VersionAfter
			if err := r.save(ctx); err != nil {
				return res, fmt.Errorf("%w: %w", ErrInstructionNotWritten, err)
			}
		}
		_, body, err := r.newEnv.InstructionFile()
		if err == nil {
			res.Instr, err = r.e.Writer.WriteInstruction(context.WithoutCancel(ctx), r.job.Instr, body)
		}
		if err != nil {
			return res, fmt.Errorf("%w: %w", ErrInstructionNotWritten, err)
		}
	}
	if r.e.Checkpoints != nil && (r.ck != nil || r.up != "") {
		if err := r.e.Checkpoints.DeleteUpload(context.WithoutCancel(ctx), r.e.RunID, r.id); err != nil {
			return res, fmt.Errorf("ledger: drop the checkpoint of %s: %w", r.id, err)
		}
	}
	return res, nil
}

// completed finishes an object whose new content landed before an
// interruption: it writes the instruction file from the checkpoint's
// envelope.
func (r *run) completed(ctx context.Context, ck *checkpoint) (Result, error) {
	env, err := envelope.Parse(ck.NewEnvelope, nil, envelope.ParseOptions{MaxMetadataBytes: -1})
	if err != nil {
		return Result{}, fmt.Errorf("reencrypt: checkpoint envelope: %w", err)
	}
	r.newEnv, r.ck = env, ck
	res := Result{NewEnv: env, Bytes: r.job.Obj.Size, Parts: max(1, len(ck.Parts)), Resumed: len(ck.Parts),
		Commit: commit.Result{ETagBefore: ck.SourceETag, VersionBefore: ck.SourceVersion, ETagAfter: ck.ETagAfter, VersionAfter: ck.VersionAfter}}
	return r.finish(ctx, res)
}

// multipart re-encrypts a large object part by part.
func (r *run) multipart(ctx context.Context, ps int64, ck *checkpoint, up string) (Result, error) {
	obj := r.job.Obj
	total := r.textLen
	parts := int((total + ps - 1) / ps)
	r.olds, r.news, r.done = map[int]gcmstream.Partial{}, map[int]gcmstream.Partial{}, map[int]types.CompletedPart{}
	resumed := 0
	if ck != nil {
		if err := r.openNew(ctx, ck.NewEnvelope); err != nil {
			return Result{}, err
		}
		if err := r.restore(ck); err != nil {
			// An unreadable state (another data key): start over.
			if ferr := r.forgetStale(ctx, up); ferr != nil {
				return Result{}, ferr
			}
			return r.e.Reencrypt(ctx, r.job)
		}
		r.ck, r.up = ck, up
		resumed = len(ck.Parts)
	} else {
		if err := r.openNew(ctx, nil); err != nil {
			return Result{}, err
		}
		meta, _, err := r.metadata()
		if err != nil {
			return Result{}, err
		}
		if r.up, err = r.e.Writer.CreateUpload(ctx, obj, meta); err != nil {
			return Result{}, err
		}
		r.ck = r.newCheckpoint(ps)
		if err := r.save(ctx); err != nil {
			return Result{}, errors.Join(err, r.forget(ctx))
		}
	}
	res, err := r.upload(ctx, ps, parts)
	if err != nil {
		if r.keep(ctx, err) {
			return Result{}, err
		}
		if landed, _ := r.landed(ctx, err); landed {
			return r.finishLanded(ctx, parts, resumed)
		}
		return Result{}, errors.Join(err, r.forget(ctx))
	}
	res.Resumed = resumed
	return r.finish(ctx, res)
}

// forgetStale drops a checkpoint that cannot be used.
func (r *run) forgetStale(ctx context.Context, up string) error {
	r.up = up
	err := r.forget(ctx)
	r.up = ""
	return err
}

// finishLanded completes the result of a commit whose response was lost.
func (r *run) finishLanded(ctx context.Context, parts, resumed int) (Result, error) {
	cur, err := r.e.Writer.Head(context.WithoutCancel(ctx), r.job.Obj.Bucket, r.job.Obj.Key, "")
	if err != nil {
		return Result{}, err
	}
	res := Result{NewEnv: r.newEnv, Parts: parts, Resumed: resumed, Bytes: r.textLen + tagSize,
		Commit: commit.Result{ETagBefore: r.job.Obj.ETag, VersionBefore: r.job.Obj.VersionID, ETagAfter: cur.ETag, VersionAfter: cur.VersionID, Parts: parts}}
	return r.finish(ctx, res)
}

// restore loads the Partials and parts of a checkpoint.
func (r *run) restore(ck *checkpoint) error {
	var err error
	if ck.Prefix > 0 {
		if r.oldPrefix, err = r.old.UnmarshalPartial(ck.OldPrefix); err != nil {
			return err
		}
		if r.newPrefix, err = r.new.UnmarshalPartial(ck.NewPrefix); err != nil {
			return err
		}
		if n := int64(ck.Prefix) * ck.PartSize; r.newPrefix.Offset() != 0 || r.newPrefix.Len() != n ||
			!r.cbc && (r.oldPrefix.Offset() != 0 || r.oldPrefix.Len() != n) {
			return fmt.Errorf("%w: prefix state covers another range", errCheckpoint)
		}
	}
	for _, a := range ck.Ahead {
		op, err := r.old.UnmarshalPartial(a.Old)
		if err != nil {
			return err
		}
		np, err := r.new.UnmarshalPartial(a.New)
		if err != nil {
			return err
		}
		r.olds[a.N], r.news[a.N] = op, np
	}
	for _, p := range ck.Parts {
		cp := types.CompletedPart{PartNumber: aws.Int32(int32(p.N)), ETag: aws.String(p.ETag)}
		setChecksum(&cp, p.Checksum, r.job.Obj)
		r.done[p.N] = cp
	}
	return nil
}

// upload processes every part not done yet, then the last part, verifies
// the old tag and completes the upload.
func (r *run) upload(ctx context.Context, ps int64, parts int) (Result, error) {
	obj := r.job.Obj
	total := r.textLen
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.e.inFlight())
	// The parts done before this call; workers add to r.done under r.mu.
	r.mu.Lock()
	todo := make([]int, 0, parts)
	for n := 1; n < parts; n++ {
		if _, ok := r.done[n]; !ok {
			todo = append(todo, n)
		}
	}
	r.mu.Unlock()
	for _, n := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			off := int64(n-1) * ps
			buf, release, err := r.buffer(gctx, ps)
			if err != nil {
				return err
			}
			defer release()
			if err := r.get(gctx, buf, off); err != nil {
				return err
			}
			op, np, err := r.reencrypt(gctx, buf, int(ps), int(ps), off)
			if err != nil {
				return err
			}
			cp, err := r.e.Writer.UploadPart(gctx, obj, r.up, n, buf)
			if err != nil {
				return err
			}
			return r.record(gctx, n, op, np, cp)
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	// The last part: the rest of the ciphertext, then the tag.
	off := int64(parts-1) * ps
	ln := total - off
	oldLen := r.oldLen(off, ln, true)
	buf, release, err := r.buffer(ctx, max(ln+tagSize, oldLen))
	if err != nil {
		return Result{}, err
	}
	defer release()
	if err := r.get(ctx, buf[:oldLen], off); err != nil {
		return Result{}, err
	}
	var oldTag []byte
	if !r.cbc {
		oldTag = append([]byte(nil), buf[ln:ln+tagSize]...)
	}
	op, np, err := r.reencrypt(ctx, buf, int(oldLen), int(ln), off)
	if err != nil {
		return Result{}, err
	}
	buf = buf[:ln+tagSize]
	oldTotal, newTotal := op, np
	if r.ck.Prefix > 0 {
		if oldTotal, err = r.old.Combine(r.oldPrefix, op); err != nil {
			return Result{}, err
		}
		if newTotal, err = r.new.Combine(r.newPrefix, np); err != nil {
			return Result{}, err
		}
	}
	if err := r.verifyOld(oldTotal, oldTag); err != nil {
		return Result{}, err
	}
	tag, err := r.new.Tag(newTotal)
	if err != nil {
		return Result{}, err
	}
	copy(buf[ln:], tag[:])
	cp, err := r.e.Writer.UploadPart(ctx, obj, r.up, parts, buf)
	if err != nil {
		return Result{}, err
	}
	r.done[parts] = cp
	if r.job.Prepare != nil {
		if err := r.job.Prepare(ctx, r.newEnv); err != nil {
			return Result{}, err
		}
	}
	list := make([]types.CompletedPart, 0, len(r.done))
	for _, p := range r.done {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return *list[i].PartNumber < *list[j].PartNumber })
	cr, err := r.e.Writer.CompleteUpload(context.WithoutCancel(ctx), obj, r.up, list)
	if err != nil {
		return Result{}, err
	}
	return Result{NewEnv: r.newEnv, Commit: cr, Parts: parts, Bytes: r.textLen + tagSize}, nil
}

// record adds an uploaded part to the checkpoint, folding the parts that
// now follow the prefix into it, and saves it.
func (r *run) record(ctx context.Context, n int, op, np gcmstream.Partial, cp types.CompletedPart) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done[n] = cp
	r.olds[n], r.news[n] = op, np
	for {
		next := r.ck.Prefix + 1
		o, ok := r.olds[next]
		if !ok {
			break
		}
		if r.ck.Prefix == 0 {
			r.oldPrefix, r.newPrefix = o, r.news[next]
		} else {
			var err error
			if r.oldPrefix, err = r.old.Combine(r.oldPrefix, o); err != nil {
				return err
			}
			if r.newPrefix, err = r.new.Combine(r.newPrefix, r.news[next]); err != nil {
				return err
			}
		}
		delete(r.olds, next)
		delete(r.news, next)
		r.ck.Prefix = next
	}
	if r.e.Checkpoints == nil {
		return nil
	}
	var err error
	if r.ck.Prefix > 0 {
		if r.ck.OldPrefix, err = r.old.MarshalPartial(r.oldPrefix); err != nil {
			return err
		}
		if r.ck.NewPrefix, err = r.new.MarshalPartial(r.newPrefix); err != nil {
			return err
		}
	}
	r.ck.Ahead = r.ck.Ahead[:0]
	for m, o := range r.olds {
		ob, err := r.old.MarshalPartial(o)
		if err != nil {
			return err
		}
		nb, err := r.new.MarshalPartial(r.news[m])
		if err != nil {
			return err
		}
		r.ck.Ahead = append(r.ck.Ahead, aheadPart{N: m, Old: ob, New: nb})
	}
	slices.SortFunc(r.ck.Ahead, func(a, b aheadPart) int { return a.N - b.N })
	r.ck.Parts = r.ck.Parts[:0]
	for m, p := range r.done {
		r.ck.Parts = append(r.ck.Parts, donePart{N: m, ETag: aws.ToString(p.ETag), Checksum: checksumOf(p)})
	}
	slices.SortFunc(r.ck.Parts, func(a, b donePart) int { return a.N - b.N })
	if err := r.save(ctx); err != nil {
		return err
	}
	if r.e.AfterPart != nil {
		r.e.AfterPart(n)
	}
	return nil
}

// checksumOf returns the one checksum a completed part carries, or "".
func checksumOf(p types.CompletedPart) string {
	for _, c := range []*string{p.ChecksumCRC32, p.ChecksumCRC32C, p.ChecksumCRC64NVME, p.ChecksumSHA1, p.ChecksumSHA256} {
		if c != nil {
			return *c
		}
	}
	return ""
}

// setChecksum puts a recorded part checksum back in the field of the
// object's upload algorithm.
func setChecksum(p *types.CompletedPart, sum string, obj *commit.Object) {
	if sum == "" {
		return
	}
	switch obj.ChecksumAlgorithm {
	case types.ChecksumAlgorithmCrc32:
		p.ChecksumCRC32 = &sum
	case types.ChecksumAlgorithmCrc32c:
		p.ChecksumCRC32C = &sum
	case types.ChecksumAlgorithmCrc64nvme:
		p.ChecksumCRC64NVME = &sum
	case types.ChecksumAlgorithmSha1:
		p.ChecksumSHA1 = &sum
	case types.ChecksumAlgorithmSha256:
		p.ChecksumSHA256 = &sum
	}
}
