package ledger

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// testUploads covers re-encryption checkpoints: the claim guard, the size
// limit, replace, delete, per-run listing and odd keys.
func testUploads(t *testing.T, open func(...Option) Ledger) {
	ctx := context.Background()
	l := open()
	ids := []ObjectID{
		{Bucket: "b", Key: "plain"},
		{Bucket: "b", Key: "odd#%/ключ", VersionID: "v#1%"},
		{Bucket: "b", Key: "big", VersionID: "3"},
	}
	u := Upload{ID: ids[0], RunID: "r1", UploadID: "up-1", State: []byte("state-1")}
	if err := l.SaveUpload(ctx, u); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save without claim: %v, want ErrNotClaimed", err)
	}
	if err := l.Claim(ctx, ids[0], "r2/w", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveUpload(ctx, u); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("save under another run's claim: %v, want ErrNotClaimed", err)
	}
	if err := l.Release(ctx, ids[0], "r2/w"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := l.Claim(ctx, id, "r1/w", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.GetUpload(ctx, "r1", ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get before save: %v, want ErrNotFound", err)
	}
	if err := l.SaveUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	u.State = []byte("state-2")
	if err := l.SaveUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := l.GetUpload(ctx, "r1", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ids[0] || got.RunID != "r1" || got.UploadID != "up-1" || string(got.State) != "state-2" || got.UpdatedAt.IsZero() {
		t.Errorf("got %+v", got)
	}
	big := bytes.Repeat([]byte{0xa5}, MaxUploadStateBytes)
	if err := l.SaveUpload(ctx, Upload{ID: ids[2], RunID: "r1", State: append(big, 1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized state: %v, want ErrInvalid", err)
	}
	if err := l.SaveUpload(ctx, Upload{ID: ids[2], RunID: "r1", State: big}); err != nil {
		t.Fatalf("state of MaxUploadStateBytes: %v", err)
	}
	if got, err := l.GetUpload(ctx, "r1", ids[2]); err != nil || !bytes.Equal(got.State, big) {
		t.Fatalf("big state round trip: %v", err)
	}
	if err := l.SaveUpload(ctx, Upload{ID: ids[1], RunID: "r1", UploadID: "up-odd"}); err != nil {
		t.Fatal(err)
	}
	// Another run's checkpoints are not listed.
	other := ObjectID{Bucket: "b", Key: "other"}
	if err := l.Claim(ctx, other, "r10/w", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveUpload(ctx, Upload{ID: other, RunID: "r10"}); err != nil {
		t.Fatal(err)
	}
	seen := map[ObjectID]bool{}
	err = l.Uploads(ctx, "r1", func(u Upload) error {
		seen[u.ID] = true
		return l.DeleteUpload(ctx, u.RunID, u.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || !seen[ids[0]] || !seen[ids[1]] || !seen[ids[2]] {
		t.Errorf("run r1 lists %v", seen)
	}
	for _, id := range ids {
		if _, err := l.GetUpload(ctx, "r1", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after delete: %v", id, err)
		}
	}
	if err := l.DeleteUpload(ctx, "r1", ids[0]); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := l.GetUpload(ctx, "r10", other); err != nil {
		t.Errorf("run r10's checkpoint: %v", err)
	}
}
