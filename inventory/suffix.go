package inventory

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// partFilter is the filter of one partition. With Options.ReportUnpaired it
// also tells instruction files (KEY+suffix where the object KEY exists)
// from keys that merely end with the suffix (an object whose own key ends
// in it, or an instruction file left behind by a deleted object), in
// bounded memory:
//
//   - Within a partition whose keys come in order, every key between KEY
//     and KEY+suffix starts with KEY. So the keys seen so far that are
//     prefixes of the current key form a chain, kept as their lengths (at
//     most one per byte of the key): KEY was listed before KEY+suffix iff
//     its length is in the chain. Out of order (a CSV list), the chain
//     still never claims a key that was not seen.
//   - When KEY is not in the chain (another partition or data file, an
//     unordered list, or no such object), one ranged GET of KEY's first
//     byte tells whether it exists; the answer is kept for the versions
//     that follow.
type partFilter struct {
	filter
	bucket, last string // the last key seen (a list may change buckets)
	chain        []int  // lengths of the keys seen that are prefixes of last, ascending
	known        struct {
		bucket, key string
		exists      bool
	}
}

// partition returns the filter of one partition.
func (f filter) partition() *partFilter { return &partFilter{filter: f} }

// keep reports whether the item for bucket and key goes into the stream,
// and whether it goes as a key that ends with the exclude suffix although
// no object KEY exists (Item.UnpairedSuffix).
func (p *partFilter) keep(ctx context.Context, bucket, key string) (keep, unpaired bool, err error) {
	if !p.reportUnpaired {
		return p.filter.keep(bucket, key), false, nil
	}
	p.see(bucket, key)
	base, ok := strings.CutSuffix(key, p.suffix)
	if p.suffix == "" || !ok {
		return p.shard.keeps(bucket, key), false, nil
	}
	if p.listed(base) {
		p.excluded.Add(1)
		return false, false, nil
	}
	if !p.shard.keeps(bucket, key) {
		return false, false, nil // another shard tells
	}
	if p.known.bucket != bucket || p.known.key != base {
		exists, err := p.exists(ctx, bucket, base)
		if err != nil {
			return false, false, err
		}
		p.known.bucket, p.known.key, p.known.exists = bucket, base, exists
	}
	if p.known.exists {
		p.excluded.Add(1)
		return false, false, nil
	}
	return true, true, nil
}

// see records bucket/key as the last key seen.
func (p *partFilter) see(bucket, key string) {
	if bucket != p.bucket {
		p.bucket, p.chain = bucket, p.chain[:0]
	}
	for n := len(p.chain); n > 0; n-- {
		if l := p.chain[n-1]; l <= len(key) && key[:l] == p.last[:l] {
			break // the shorter ones are prefixes of this one, so of key too
		}
		p.chain = p.chain[:n-1]
	}
	if n := len(p.chain); n == 0 || p.chain[n-1] != len(key) {
		p.chain = append(p.chain, len(key)) // another version of the same key adds nothing
	}
	p.last = key
}

// listed reports whether base, a prefix of the last key seen (in the same
// bucket), was seen before it.
func (p *partFilter) listed(base string) bool {
	for _, l := range p.chain {
		if l == len(base) {
			return true
		}
	}
	return false
}

// exists tells whether the object bucket/key exists now, by a GET of its
// first byte. Without an S3 client, or when S3 will not say (a 403 for a
// missing key when s3:ListBucket is not granted), it reports false: the
// key is then reported rather than skipped in silence.
func (p *partFilter) exists(ctx context.Context, bucket, key string) (bool, error) {
	if p.client == nil || key == "" {
		return false, nil
	}
	out, err := p.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String("bytes=0-0")})
	if err == nil {
		out.Body.Close()
		return true, nil
	}
	switch apiCode(err) {
	case codeNoSuchKey, codeNotFound, codeAccessDenied, codeForbidden:
		return false, nil
	case codeInvalidRange, "InvalidObjectState":
		return true, nil // an empty object, an archived one
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return false, (&Error{Op: "look up", Bucket: bucket, Prefix: key, Err: err}).classify("telling instruction files from objects needs s3:GetObject")
}
