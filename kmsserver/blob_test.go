package kmsserver

import (
	"bytes"
	"encoding/binary"
	"testing"
)

const testARN = "arn:aws:kms:us-east-1:111122223333:key/0b8c3f4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f"

var testMaterial = bytes.Repeat([]byte{0x42}, backingKeySize)

func TestBlobRoundTrip(t *testing.T) {
	ctx := map[string]string{"b": "2", "a": "1"}
	ct, err := seal(testARN, 3, testMaterial, []byte("secret"), ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseBlob(ct)
	if err != nil {
		t.Fatal(err)
	}
	if b.keyARN != testARN || b.version != 3 || len(b.nonce) != blobNonceSize || len(b.sealed) != len("secret")+blobTagSize {
		t.Fatalf("parsed %+v", b)
	}
	if want := 5 + len(testARN) + 4 + blobNonceSize + len("secret") + blobTagSize; len(ct) != want {
		t.Errorf("blob length %d, want %d", len(ct), want)
	}
	pt, err := open(b, testMaterial, map[string]string{"a": "1", "b": "2"})
	if err != nil || string(pt) != "secret" {
		t.Fatalf("open = %q, %v", pt, err)
	}
	for _, bad := range []map[string]string{nil, {"a": "1"}, {"a": "1", "b": "3"}, {"a": "1", "b": "2", "c": ""}} {
		if _, err := open(b, testMaterial, bad); err == nil {
			t.Errorf("open with context %v succeeded", bad)
		}
	}
	other := bytes.Repeat([]byte{0x43}, backingKeySize)
	if _, err := open(b, other, ctx); err == nil {
		t.Error("open with another backing key succeeded")
	}
	// The header is authenticated: a blob re-labelled with another version
	// (or ARN) fails even with the right material.
	relabelled := bytes.Clone(ct)
	binary.BigEndian.PutUint32(relabelled[5+len(testARN):], 4)
	rb, err := parseBlob(relabelled)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(rb, testMaterial, ctx); err == nil {
		t.Error("relabelled blob opened")
	}
}

func TestCanonicalContext(t *testing.T) {
	// Length prefixes keep different contexts apart.
	pairs := []map[string]string{
		nil,
		{"": ""},
		{"a": "bc"},
		{"ab": "c"},
		{"a": "b", "c": "d"},
		{"a": "b\x00c"},
	}
	seen := map[string]int{}
	for i, p := range pairs {
		enc := string(canonicalContext(p))
		if j, ok := seen[enc]; ok {
			t.Errorf("contexts %v and %v encode alike", pairs[j], p)
		}
		seen[enc] = i
	}
	if !bytes.Equal(canonicalContext(map[string]string{}), canonicalContext(nil)) {
		t.Error("empty and nil contexts differ")
	}
}

func TestParseBlobRejects(t *testing.T) {
	good, err := seal(testARN, 1, testMaterial, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"short":     good[:blobFixedSize-1],
		"truncated": good[:len(good)-len("x")-blobTagSize],
		"magic":     append([]byte("xx"), good[2:]...),
		"format":    append([]byte{'r', 'k', 2}, good[3:]...),
		"arn len 0": append([]byte{'r', 'k', 1, 0, 0}, good[5:]...),
		"arn len":   append([]byte{'r', 'k', 1, 0xff, 0xff}, good[5:]...),
	}
	zeroVersion := bytes.Clone(good)
	binary.BigEndian.PutUint32(zeroVersion[5+len(testARN):], 0)
	cases["version 0"] = zeroVersion
	badUTF8 := bytes.Clone(good)
	badUTF8[5] = 0xff
	cases["utf8"] = badUTF8
	for name, b := range cases {
		if _, err := parseBlob(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// FuzzParseBlob checks that the parser never panics and that whatever it
// accepts re-encodes to the same bytes.
func FuzzParseBlob(f *testing.F) {
	for _, pt := range [][]byte{{0}, []byte("hello"), bytes.Repeat([]byte{1}, 64)} {
		ct, err := seal(testARN, 1, testMaterial, pt, map[string]string{"k": "v"})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct)
		f.Add(ct[:len(ct)/2])
	}
	f.Add([]byte{})
	f.Add([]byte("rk\x01\x00\x01a\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBlob(data)
		if err != nil {
			return
		}
		if !bytes.Equal(blobHeader(b.keyARN, b.version), b.header) {
			t.Fatalf("header does not re-encode: %x", data)
		}
		re := append(append(append([]byte(nil), b.header...), b.nonce...), b.sealed...)
		if !bytes.Equal(re, data) {
			t.Fatalf("blob does not re-encode: %x", data)
		}
		_, _ = open(b, testMaterial, nil) // must fail cleanly, never panic
	})
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "kms:Decrypt", true},
		{"kms:*", "kms:Decrypt", true},
		{"kms:ReEncrypt*", "kms:ReEncryptFrom", true},
		{"kms:ReEncrypt*", "kms:ReEncryptTo", true},
		{"kms:ReEncrypt*", "kms:Encrypt", false},
		{"kms:*Encrypt*", "kms:ReEncryptTo", true},
		{"kms:Decrypt", "kms:Decrypt", true},
		{"kms:Decrypt", "kms:DecryptX", false},
		{"kms:?ecrypt", "kms:Decrypt", true},
		{"kms:Generate*WithoutPlaintext", "kms:GenerateDataKeyWithoutPlaintext", true},
		{"kms:Generate*WithoutPlaintext", "kms:GenerateDataKey", false},
		{"arn:aws:kms:*:111122223333:key/*", testARN, true},
		{"arn:aws:kms:*:444455556666:key/*", testARN, false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"", "", true},
		{"", "a", false},
	} {
		if got := glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestPolicyDecide: a policy with Allow statements denies what none of
// them grants (the implicit deny), as AWS evaluates a key policy; a policy
// of Deny statements only denies what they name.
func TestPolicyDecide(t *testing.T) {
	me := caller{account: "111122223333", arn: "arn:aws:iam::111122223333:user/me"}
	const grant = `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/me"},"Action":["kms:ReEncryptFrom","kms:DescribeKey"],"Resource":"*"},` +
		`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"kms:*","Resource":"*"}]}`
	for _, tc := range []struct {
		policy string
		action string
		want   verdict
	}{
		{defaultPolicy("111122223333"), "kms:Decrypt", allowed},
		{grant, "kms:ReEncryptFrom", allowed},
		{grant, "kms:DescribeKey", allowed},
		{grant, "kms:ReEncryptTo", deniedImplicit},
		{grant, "kms:Decrypt", deniedImplicit},
		{`{"Statement":{"Effect":"Allow","Action":"kms:Decrypt","Resource":"arn:aws:kms:*:*:key/other"}}`, "kms:Decrypt", deniedImplicit},
		{`{"Statement":[{"Effect":"Allow","Action":"kms:*"},{"Effect":"Deny","Action":"kms:Decrypt"}]}`, "kms:Decrypt", deniedExplicit},
		{`{"Statement":{"Effect":"Deny","Action":"kms:Encrypt"}}`, "kms:Decrypt", allowed},
		{defaultPolicy("444455556666"), "kms:Decrypt", allowed}, // delegated to another account's IAM
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"kms:Encrypt"},{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/x"},"Action":"kms:*"}]}`, "kms:Decrypt", allowed},
	} {
		p, err := parsePolicy(tc.policy)
		if err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		if got := p.decide(me, tc.action, testARN); got != tc.want {
			t.Errorf("%s decides %s: %v, want %v", tc.policy, tc.action, got, tc.want)
		}
	}
}

func TestPolicyDenies(t *testing.T) {
	me := caller{account: "111122223333", arn: "arn:aws:iam::111122223333:user/me"}
	for _, tc := range []struct {
		policy string
		action string
		want   bool
	}{
		{defaultPolicy("111122223333"), "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","Action":"kms:Decrypt"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Action":["kms:Encrypt","kms:Decrypt"]}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Action":"kms:Encrypt"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Allow","Action":"kms:Decrypt"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","NotAction":"kms:Decrypt"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","NotAction":"kms:Decrypt"}}`, "kms:Encrypt", true},
		{`{"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:*"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Principal":{"AWS":"111122223333"},"Action":"kms:*"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Principal":{"AWS":["arn:aws:iam::111122223333:user/me"]},"Action":"kms:*"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"kms:*"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","Principal":{"Service":"s3.amazonaws.com"},"Action":"kms:*"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"kms:*"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Action":"kms:*","Resource":"arn:aws:kms:*:111122223333:key/*"}}`, "kms:Decrypt", true},
		{`{"Statement":{"Effect":"Deny","Action":"kms:*","Resource":"arn:aws:kms:*:111122223333:alias/*"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","Action":"kms:*","NotResource":"` + testARN + `"}}`, "kms:Decrypt", false},
		{`{"Statement":{"Effect":"Deny","Action":"kms:*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}}`, "kms:Decrypt", true},
	} {
		p, err := parsePolicy(tc.policy)
		if err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		if got := p.denies(me, tc.action, testARN); got != tc.want {
			t.Errorf("%s denies %s: %v, want %v", tc.policy, tc.action, got, tc.want)
		}
	}
	for _, bad := range []string{
		``, `[]`, `{}`, `{"Statement":[]}`, `{"Statement":{"Effect":"Deny"}}`,
		`{"Statement":{"Effect":"Deny","Action":"a","NotAction":"b"}}`,
		`{"Statement":{"Effect":"deny","Action":"a"}}`,
		`{"Statement":{"Effect":"Deny","Action":"a","Principal":"me"}}`,
		`{"Statement":{"Effect":"Deny","Action":7}}`,
		`{"Statement":{"Effect":"Deny","Action":"a"}} {}`,
	} {
		if _, err := parsePolicy(bad); err == nil {
			t.Errorf("parsePolicy(%q) succeeded", bad)
		}
	}
}
