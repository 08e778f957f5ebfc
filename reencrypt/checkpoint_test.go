package reencrypt

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleCheckpoint() *checkpoint {
	return &checkpoint{
		SourceETag: `"0123456789abcdef0123456789abcdef"`, SourceVersion: "v1", Size: 1 << 30, PartSize: 16 << 20,
		NewEnvelope: map[string]string{"x-amz-key-v2": "AAAA", "x-amz-iv": "BBBB"}, ToKey: "arn:aws:kms:us-east-1:111122223333:key/k",
		Instruction: true, Multipart: true, Created: 1764800000000, UploadID: "upload-1", ExpectedETag: `"aa-3"`,
		Prefix: 2, OldPrefix: []byte("sealed-old"), NewPrefix: []byte("sealed-new"),
		Ahead: []aheadPart{{N: 4, Old: []byte("o4"), New: []byte("n4")}},
		Parts: []donePart{{N: 1, ETag: `"00112233445566778899aabbccddeeff"`}, {N: 2, ETag: "opaque-etag", Checksum: "AAAAAA=="},
			{N: 4, ETag: `"ffeeddccbbaa99887766554433221100"`}},
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	c := sampleCheckpoint()
	got, err := unmarshalCheckpoint(c.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
	// 10,000 parts with plain ETags fit in a ledger item.
	c.Parts = nil
	for n := 1; n <= 10000; n++ {
		c.Parts = append(c.Parts, donePart{N: n, ETag: `"0123456789abcdef0123456789abcdef"`})
	}
	c.Prefix, c.Ahead = 10000, nil
	if n := len(c.Marshal()); n > 250<<10 {
		t.Errorf("10,000 parts take %d bytes", n)
	}
}

func TestCheckpointRefusesInconsistent(t *testing.T) {
	for name, mod := range map[string]func(*checkpoint){
		"prefix part missing":  func(c *checkpoint) { c.Parts = c.Parts[1:] },
		"duplicate part":       func(c *checkpoint) { c.Parts = append(c.Parts, c.Parts[0]) },
		"ahead in prefix":      func(c *checkpoint) { c.Ahead[0].N = 2 },
		"odd part size":        func(c *checkpoint) { c.PartSize = 100 },
		"prefix without state": func(c *checkpoint) { c.OldPrefix = nil },
	} {
		c := sampleCheckpoint()
		mod(c)
		if _, err := unmarshalCheckpoint(c.Marshal()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b := sampleCheckpoint().Marshal()
	for i := range len(b) {
		if _, err := unmarshalCheckpoint(b[:i]); err == nil {
			t.Errorf("truncated to %d bytes: accepted", i)
		}
	}
}

func FuzzCheckpoint(f *testing.F) {
	f.Add(sampleCheckpoint().Marshal())
	f.Add([]byte(checkpointMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := unmarshalCheckpoint(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to a checkpoint that decodes the same.
		c2, err := unmarshalCheckpoint(c.Marshal())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(c.Marshal(), c2.Marshal()) {
			t.Fatal("unstable encoding")
		}
	})
}
