package reencrypt

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// checkpoint is the part-level state of one re-encryption, as the ledger
// keeps it (ledger.Upload.State). It holds only public or sealed values:
// ETags, offsets, the new envelope (whose data key is wrapped) and GHASH
// states sealed under keys derived from the content keys
// (gcmstream.Stream.MarshalPartial). Never a plaintext key.
type checkpoint struct {
	// The source object version the upload re-encrypts.
	SourceETag    string
	SourceVersion string
	Size          int64 // source object size (ciphertext and tag)
	PartSize      int64
	// NewEnvelope is the new envelope as metadata (Envelope.Metadata).
	NewEnvelope map[string]string
	// ToKey is the canonical id of the key that wraps the new data key.
	ToKey string
	// Instruction: the object's envelope lives in an instruction file.
	// Multipart: the new content is written as a multipart upload.
	Instruction, Multipart bool
	// Created is when the intent began (Unix milliseconds): uploads on
	// the key initiated before it are not this intent's.
	Created int64
	// UploadID is the multipart upload, "" until it is created.
	UploadID string

	// Phase is how far the writes went. ETagAfter and VersionAfter are
	// the object's once its new content landed (PhaseCompleted).
	Phase        Phase
	ETagAfter    string
	VersionAfter string
	// ExpectedETag is the ETag of the completed upload computed from the
	// parts' MD5 ETags ("" when they are not MD5s): positive evidence that
	// the object holds the new content.
	ExpectedETag string

	// Prefix is the number of parts 1..Prefix all uploaded; OldPrefix and
	// NewPrefix are the sealed Partials of their ciphertext in the old and
	// the new message.
	Prefix               int
	OldPrefix, NewPrefix []byte
	// Ahead are parts uploaded beyond the prefix (out of order).
	Ahead []aheadPart
	// Parts are the uploaded parts, prefix and ahead, by part number.
	Parts []donePart
}

type aheadPart struct {
	N        int
	Old, New []byte // sealed Partials
}

type donePart struct {
	N        int
	ETag     string
	Checksum string // base64 part checksum, "" when none
}

const checkpointMagic = "rrc2"

// maxCheckpointField bounds any one length-prefixed field when decoding.
const maxCheckpointField = 1 << 20

// Marshal encodes the checkpoint compactly: a plain S3 part ETag (a quoted
// MD5) takes 17 bytes, so 10,000 parts fit in a ledger item.
func (c *checkpoint) Marshal() []byte {
	var b []byte
	b = append(b, checkpointMagic...)
	b = appendString(b, c.SourceETag)
	b = appendString(b, c.SourceVersion)
	b = binary.AppendUvarint(b, uint64(c.Size))
	b = binary.AppendUvarint(b, uint64(c.PartSize))
	keys := make([]string, 0, len(c.NewEnvelope))
	for k := range c.NewEnvelope {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, c.NewEnvelope[k])
	}
	b = appendString(b, c.ToKey)
	var flags byte
	if c.Instruction {
		flags |= 1
	}
	if c.Multipart {
		flags |= 2
	}
	b = append(b, flags, byte(c.Phase))
	b = binary.AppendUvarint(b, uint64(c.Created))
	b = appendString(b, c.UploadID)
	b = appendString(b, c.ETagAfter)
	b = appendString(b, c.VersionAfter)
	b = appendString(b, c.ExpectedETag)
	b = binary.AppendUvarint(b, uint64(c.Prefix))
	b = appendString(b, string(c.OldPrefix))
	b = appendString(b, string(c.NewPrefix))
	b = binary.AppendUvarint(b, uint64(len(c.Ahead)))
	for _, a := range c.Ahead {
		b = binary.AppendUvarint(b, uint64(a.N))
		b = appendString(b, string(a.Old))
		b = appendString(b, string(a.New))
	}
	b = binary.AppendUvarint(b, uint64(len(c.Parts)))
	for _, p := range c.Parts {
		b = binary.AppendUvarint(b, uint64(p.N))
		if md5, ok := plainETag(p.ETag); ok {
			b = append(b, 1)
			b = append(b, md5...)
		} else {
			b = append(b, 0)
			b = appendString(b, p.ETag)
		}
		b = appendString(b, p.Checksum)
	}
	return b
}

// plainETag returns the 16 bytes of an ETag of the form "<32 lowercase hex>".
func plainETag(etag string) ([]byte, bool) {
	if len(etag) != 34 || etag[0] != '"' || etag[33] != '"' || strings.ToLower(etag) != etag {
		return nil, false
	}
	b, err := hex.DecodeString(etag[1:33])
	return b, err == nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCheckpoint = errors.New("reencrypt: invalid checkpoint")

// decoder reads the fields Marshal wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed %s", errCheckpoint, what)
	}
}

func (d *decoder) uvarint(what string, limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what, maxCheckpointField)
	return string(d.bytes(what, int(n)))
}

func (d *decoder) byte(what string) byte {
	b := d.bytes(what, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

// unmarshalCheckpoint decodes what Marshal wrote and checks its invariants.
func unmarshalCheckpoint(b []byte) (*checkpoint, error) {
	if !strings.HasPrefix(string(b), checkpointMagic) {
		return nil, fmt.Errorf("%w: unknown version (hint: a checkpoint written by another version of rotator; finish the run with 'rotator resume' of that version)", errCheckpoint)
	}
	d := &decoder{b: b[len(checkpointMagic):]}
	c := &checkpoint{}
	const maxSize = 5 << 40
	c.SourceETag = d.string("source etag")
	c.SourceVersion = d.string("source version")
	c.Size = int64(d.uvarint("size", maxSize))
	c.PartSize = int64(d.uvarint("part size", maxSize))
	n := d.uvarint("envelope", 64)
	c.NewEnvelope = make(map[string]string, n)
	for range n {
		k := d.string("envelope name")
		c.NewEnvelope[k] = d.string("envelope value")
	}
	c.ToKey = d.string("key")
	flags := d.byte("flags")
	if flags&^3 != 0 {
		d.fail("flags")
	}
	c.Instruction, c.Multipart = flags&1 != 0, flags&2 != 0
	c.Phase = Phase(d.byte("phase"))
	if c.Phase > PhaseCompleted {
		d.fail("phase")
	}
	c.Created = int64(d.uvarint("created", 1<<62))
	c.UploadID = d.string("upload id")
	c.ETagAfter = d.string("etag after")
	c.VersionAfter = d.string("version after")
	c.ExpectedETag = d.string("expected etag")
	c.Prefix = int(d.uvarint("prefix", maxParts))
	c.OldPrefix = []byte(d.string("old prefix"))
	c.NewPrefix = []byte(d.string("new prefix"))
	n = d.uvarint("ahead", maxParts)
	for range n {
		if d.err != nil {
			break
		}
		c.Ahead = append(c.Ahead, aheadPart{N: int(d.uvarint("ahead part", maxParts)),
			Old: []byte(d.string("ahead old")), New: []byte(d.string("ahead new"))})
	}
	n = d.uvarint("parts", maxParts)
	for range n {
		if d.err != nil {
			break
		}
		p := donePart{N: int(d.uvarint("part number", maxParts))}
		switch d.byte("etag kind") {
		case 1:
			p.ETag = `"` + hex.EncodeToString(d.bytes("etag", 16)) + `"`
		case 0:
			p.ETag = d.string("etag")
		default:
			d.fail("etag kind")
		}
		p.Checksum = d.string("checksum")
		c.Parts = append(c.Parts, p)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCheckpoint, len(d.b))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check verifies that part numbers are consistent: the prefix and the
// parts ahead are uploaded parts, each listed once.
func (c *checkpoint) check() error {
	if c.PartSize <= 0 || c.PartSize%16 != 0 {
		return fmt.Errorf("%w: part size %d", errCheckpoint, c.PartSize)
	}
	done := make(map[int]bool, len(c.Parts))
	for _, p := range c.Parts {
		if p.N < 1 || done[p.N] {
			return fmt.Errorf("%w: part %d listed twice or out of range", errCheckpoint, p.N)
		}
		done[p.N] = true
	}
	for n := 1; n <= c.Prefix; n++ {
		if !done[n] {
			return fmt.Errorf("%w: prefix part %d not uploaded", errCheckpoint, n)
		}
	}
	seen := map[int]bool{}
	for _, a := range c.Ahead {
		if a.N <= c.Prefix+1 || !done[a.N] || seen[a.N] {
			return fmt.Errorf("%w: part %d ahead of the prefix is inconsistent", errCheckpoint, a.N)
		}
		seen[a.N] = true
	}
	if len(c.Parts) != c.Prefix+len(c.Ahead) && c.Phase == PhaseUploading {
		return fmt.Errorf("%w: %d parts listed, %d accounted for", errCheckpoint, len(c.Parts), c.Prefix+len(c.Ahead))
	}
	if c.Phase == PhaseCompleted && !c.Instruction {
		return fmt.Errorf("%w: content landed without an instruction file to write", errCheckpoint)
	}
	if (c.Prefix == 0) != (len(c.OldPrefix) == 0) || len(c.OldPrefix) != len(c.NewPrefix) && (len(c.OldPrefix) == 0 || len(c.NewPrefix) == 0) {
		return fmt.Errorf("%w: prefix state does not match %d parts", errCheckpoint, c.Prefix)
	}
	return nil
}
