package inventory

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// fakeS3 is an in-memory S3 of one bucket with the listing semantics this
// package relies on (prefix, delimiter, StartAfter, continuation, key and
// version markers, MaxKeys), for tests that need no server: ordering
// corner cases, cancellation and goroutine leaks.
type fakeS3 struct {
	mu      sync.Mutex
	entries []fakeEntry // by key, then newest first
	files   map[string][]byte
	// hook runs before every list request; an error fails the request.
	hook     func(ctx context.Context) error
	requests atomic.Int64
}

type fakeEntry struct {
	key, version string
	dm, latest   bool
	modified     time.Time
}

var _ S3 = (*fakeS3)(nil)

// put adds a version of key on top of the existing ones.
func (f *fakeS3) put(key string, dm bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for i := range f.entries {
		if f.entries[i].key == key {
			f.entries[i].latest = false
			n++
		}
	}
	v := key + "#v" + strconv.Itoa(n)
	f.entries = append(f.entries, fakeEntry{key: key, version: v, dm: dm, latest: true, modified: time.Unix(1e9+int64(n), 0)})
	sort.SliceStable(f.entries, func(i, j int) bool {
		a, b := f.entries[i], f.entries[j]
		if a.key != b.key {
			return a.key < b.key
		}
		return a.modified.After(b.modified)
	})
	return v
}

func (f *fakeS3) before(ctx context.Context) error {
	f.requests.Add(1)
	if f.hook != nil {
		if err := f.hook(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// walk returns the elements after the markers: entries, or common prefixes
// (as entries with an empty version and cp set).
func (f *fakeS3) walk(prefix, delim string, skip func(e fakeEntry) bool, max int) (out []fakeEntry, cps []bool, truncated bool) {
	lastCP := ""
	for _, e := range f.entries {
		if !strings.HasPrefix(e.key, prefix) || skip(e) {
			continue
		}
		if delim != "" {
			if i := strings.Index(e.key[len(prefix):], delim); i >= 0 {
				cp := e.key[:len(prefix)+i+len(delim)]
				if cp == lastCP {
					continue
				}
				if len(out) == max {
					return out, cps, true
				}
				lastCP = cp
				out = append(out, fakeEntry{key: cp})
				cps = append(cps, true)
				continue
			}
		}
		if len(out) == max {
			return out, cps, true
		}
		out = append(out, e)
		cps = append(cps, false)
	}
	return out, cps, false
}

func (f *fakeS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if err := f.before(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix, delim := aws.ToString(in.Prefix), aws.ToString(in.Delimiter)
	after, token := aws.ToString(in.StartAfter), aws.ToString(in.ContinuationToken)
	max := int(aws.ToInt32(in.MaxKeys))
	if max == 0 {
		max = 1000
	}
	// Tokens: "k KEY" after a key, "p PREFIX" after a common prefix.
	tokenCP := strings.HasPrefix(token, "p ")
	if token != "" {
		token = token[2:]
	}
	skip := func(e fakeEntry) bool {
		if !e.latest || e.dm || e.key <= after || token != "" && e.key <= token {
			return true
		}
		return tokenCP && strings.HasPrefix(e.key, token)
	}
	els, cps, truncated := f.walk(prefix, delim, skip, max)
	out := &s3.ListObjectsV2Output{IsTruncated: aws.Bool(truncated), ContinuationToken: in.ContinuationToken}
	for i, e := range els {
		if cps[i] {
			out.CommonPrefixes = append(out.CommonPrefixes, types.CommonPrefix{Prefix: aws.String(e.key)})
			continue
		}
		out.Contents = append(out.Contents, types.Object{Key: aws.String(e.key), Size: aws.Int64(1), ETag: aws.String(`"e"`), LastModified: aws.Time(e.modified)})
	}
	if truncated {
		kind := "k "
		if cps[len(cps)-1] {
			kind = "p "
		}
		out.NextContinuationToken = aws.String(kind + els[len(els)-1].key)
	}
	return out, nil
}

func (f *fakeS3) ListObjectVersions(ctx context.Context, in *s3.ListObjectVersionsInput, _ ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error) {
	if err := f.before(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix, delim := aws.ToString(in.Prefix), aws.ToString(in.Delimiter)
	km, vm := aws.ToString(in.KeyMarker), aws.ToString(in.VersionIdMarker)
	max := int(aws.ToInt32(in.MaxKeys))
	if max == 0 {
		max = 1000
	}
	passed := km == "" || vm == ""
	skip := func(e fakeEntry) bool {
		switch {
		case km == "":
			return false
		case vm == "":
			return e.key <= km || delim != "" && strings.HasSuffix(km, delim) && strings.HasPrefix(e.key, km)
		case e.key < km:
			return true
		case e.key > km:
			return false
		case !passed:
			passed = e.version == vm
			return true
		}
		return false
	}
	els, cps, truncated := f.walk(prefix, delim, skip, max)
	out := &s3.ListObjectVersionsOutput{IsTruncated: aws.Bool(truncated)}
	for i, e := range els {
		switch {
		case cps[i]:
			out.CommonPrefixes = append(out.CommonPrefixes, types.CommonPrefix{Prefix: aws.String(e.key)})
		case e.dm:
			out.DeleteMarkers = append(out.DeleteMarkers, types.DeleteMarkerEntry{Key: aws.String(e.key), VersionId: aws.String(e.version),
				IsLatest: aws.Bool(e.latest), LastModified: aws.Time(e.modified)})
		default:
			out.Versions = append(out.Versions, types.ObjectVersion{Key: aws.String(e.key), VersionId: aws.String(e.version),
				IsLatest: aws.Bool(e.latest), Size: aws.Int64(1), ETag: aws.String(`"e"`), LastModified: aws.Time(e.modified)})
		}
	}
	if truncated {
		last := els[len(els)-1]
		out.NextKeyMarker = aws.String(last.key)
		if last.version != "" {
			out.NextVersionIdMarker = aws.String(last.version)
		}
	}
	return out, nil
}

func (f *fakeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	data, ok := f.files[aws.ToString(in.Bucket)+"/"+aws.ToString(in.Key)]
	f.mu.Unlock()
	if !ok {
		return nil, &smithy.GenericAPIError{Code: codeNoSuchKey, Message: "no such key"}
	}
	if r := aws.ToString(in.Range); r != "" {
		from, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(r, "bytes="), "-"))
		if err != nil || from >= len(data) {
			return nil, &smithy.GenericAPIError{Code: codeInvalidRange, Message: "bad range " + r}
		}
		data = data[from:]
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(data)), ContentLength: aws.Int64(int64(len(data)))}, nil
}
