package reencrypt

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/gcmstream"
)

// multipart re-encrypts an object in parts (every object whose envelope
// lives in an instruction file, and larger objects), from where the
// checkpoint stands.
func (r *run) multipart(ctx context.Context) (Result, error) {
	ps := r.ck.PartSize
	parts := max(1, int((r.textLen+ps-1)/ps))
	r.olds, r.news, r.done = map[int]gcmstream.Partial{}, map[int]gcmstream.Partial{}, map[int]types.CompletedPart{}
	resumed := len(r.ck.Parts)
	if err := r.restore(); err != nil {
		return Result{}, err
	}
	if r.ck.Phase == PhaseUploading {
		if r.ck.UploadID == "" {
			meta, _, err := r.metadata()
			if err != nil {
				return Result{}, err
			}
			id, err := r.e.Writer.CreateUpload(ctx, r.job.Obj, meta)
			if err != nil {
				return Result{}, err
			}
			r.mu.Lock()
			r.ck.UploadID = id
			err = r.saveLocked(ctx)
			r.mu.Unlock()
			if err != nil {
				return Result{}, err
			}
		}
		if err := r.upload(ctx, ps, parts); err != nil {
			return Result{}, err
		}
	}
	// Every part is uploaded and the old tag verified; the completion is
	// recorded as sent before it is sent.
	if err := r.setPhase(ctx, PhaseCompleting); err != nil {
		return Result{}, err
	}
	list := make([]types.CompletedPart, 0, len(r.ck.Parts))
	for _, p := range r.ck.Parts {
		cp := types.CompletedPart{PartNumber: aws.Int32(int32(p.N)), ETag: aws.String(p.ETag)}
		setChecksum(&cp, p.Checksum, r.job.Obj)
		list = append(list, cp)
	}
	cr, err := r.e.Writer.CompleteUpload(ctx, r.job.Obj, r.ck.UploadID, list)
	if err != nil {
		return Result{}, err
	}
	if err := r.contentLanded(ctx, cr); err != nil {
		return Result{}, err
	}
	return Result{NewEnv: r.newEnv, Commit: cr, Parts: parts, Resumed: resumed, Bytes: r.textLen + tagSize}, nil
}

// restore loads the Partials and parts of the checkpoint. A part number
// beyond the prefix and the parts ahead (the last part) has no Partial:
// it was uploaded after the old tag verified.
func (r *run) restore() error {
	ck := r.ck
	var err error
	if ck.Phase == PhaseUploading && ck.Prefix > 0 {
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
	if ck.Phase == PhaseUploading {
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
	}
	for _, p := range ck.Parts {
		cp := types.CompletedPart{PartNumber: aws.Int32(int32(p.N)), ETag: aws.String(p.ETag)}
		setChecksum(&cp, p.Checksum, r.job.Obj)
		r.done[p.N] = cp
	}
	return nil
}

// upload processes every part not done yet, then the last part, and
// verifies the old tag.
func (r *run) upload(ctx context.Context, ps int64, parts int) error {
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
			cp, err := r.e.Writer.UploadPart(gctx, obj, r.ck.UploadID, n, buf)
			if err != nil {
				return err
			}
			return r.record(gctx, n, op, np, cp)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The last part: the rest of the ciphertext, then the tag.
	off := int64(parts-1) * ps
	ln := total - off
	oldLen := r.oldLen(off, ln, true)
	buf, release, err := r.buffer(ctx, max(ln+tagSize, oldLen))
	if err != nil {
		return err
	}
	defer release()
	if err := r.get(ctx, buf[:oldLen], off); err != nil {
		return err
	}
	var oldTag []byte
	if !r.cbc {
		oldTag = append([]byte(nil), buf[ln:ln+tagSize]...)
	}
	op, np, err := r.reencrypt(ctx, buf, int(oldLen), int(ln), off)
	if err != nil {
		return err
	}
	buf = buf[:ln+tagSize]
	oldTotal, newTotal := op, np
	if r.ck.Prefix > 0 {
		if oldTotal, err = r.old.Combine(r.oldPrefix, op); err != nil {
			return err
		}
		if newTotal, err = r.new.Combine(r.newPrefix, np); err != nil {
			return err
		}
	}
	if err := r.verifyOld(oldTotal, oldTag); err != nil {
		return err
	}
	tag, err := r.new.Tag(newTotal)
	if err != nil {
		return err
	}
	copy(buf[ln:], tag[:])
	cp, err := r.e.Writer.UploadPart(ctx, obj, r.ck.UploadID, parts, buf)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done[parts] = cp
	r.ck.Parts = append(r.ck.Parts, donePart{N: parts, ETag: aws.ToString(cp.ETag), Checksum: checksumOf(cp)})
	r.ck.ExpectedETag = expectedETag(r.ck.Parts)
	return nil // setPhase saves it
}

// expectedETag returns the ETag S3 gives the completed upload of parts
// when every part ETag is the MD5 of the part (no SSE-KMS or SSE-C): the
// MD5 of the parts' MD5s, "-" and the number of parts. "" otherwise.
func expectedETag(parts []donePart) string {
	h := md5.New()
	for _, p := range parts {
		b, ok := plainETag(p.ETag)
		if !ok {
			return ""
		}
		h.Write(b)
	}
	return fmt.Sprintf("%q", hex.EncodeToString(h.Sum(nil))+"-"+strconv.Itoa(len(parts)))
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
	if err := r.saveLocked(ctx); err != nil {
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
