package interop

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aws/amazon-s3-encryption-client-go/v4/commitment"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestOfficialClientsOnStack checks the oracle itself: both official clients
// write and read through versitygw and the KMS test server, and a client on
// another key is refused the way AWS refuses it.
func TestOfficialClientsOnStack(t *testing.T) {
	st := newStack(t)
	bucket := st.bucket(t)
	keyA, keyB := st.key(t), st.key(t)
	body := []byte("the quick brown fox jumps over the lazy dog")

	v3a := st.v3(t, keyA)
	v4a := st.v4(t, keyA, commitment.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
	v4aAllow := st.v4(t, keyA, commitment.REQUIRE_ENCRYPT_ALLOW_DECRYPT)
	put(t, v3a, bucket, "v2-object", body, nil)
	put(t, v4a, bucket, "v3-object", body, nil)

	_, meta, _ := st.raw(t, bucket, "v2-object")
	if meta["x-amz-key-v2"] == "" || meta["x-amz-wrap-alg"] != "kms+context" {
		t.Errorf("v3.2.0 did not write a V2 envelope: %v", meta)
	}
	_, meta, _ = st.raw(t, bucket, "v3-object")
	if meta["x-amz-3"] == "" || meta["x-amz-c"] != "115" || meta["x-amz-w"] != "12" {
		t.Errorf("v4.0.0 did not write a V3 envelope: %v", meta)
	}

	for _, tc := range []struct {
		name   string
		client officialClient
		key    string
	}{
		{"v3 reads V2", v3a, "v2-object"},
		{"v3 reads V3", v3a, "v3-object"},
		{"v4 reads V3", v4a, "v3-object"},
		{"v4 allow-decrypt reads V2", v4aAllow, "v2-object"},
	} {
		got, err := get(tc.client, bucket, tc.key)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if !bytes.Equal(got, body) {
			t.Errorf("%s: plaintext differs", tc.name)
		}
	}

	if _, err := get(v4a, bucket, "v2-object"); err == nil {
		t.Error("v4 with REQUIRE_ENCRYPT_REQUIRE_DECRYPT read a V2 object")
	}
	var ike *types.IncorrectKeyException
	if _, err := get(st.v3(t, keyB), bucket, "v2-object"); !errors.As(err, &ike) {
		t.Errorf("v3 on key B reading an object under key A: got %v, want IncorrectKeyException", err)
	}
}
