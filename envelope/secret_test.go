package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestDataKeyRedacted(t *testing.T) {
	k := NewDataKey([]byte("super-secret-key-material-000000"))
	secretHex := fmt.Sprintf("%x", k.Bytes())
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %q %x %X %d", k, k, k, k, k, k, k, k),
		fmt.Sprintf("%v", struct{ K *DataKey }{k}), fmt.Sprintf("%+v", []*DataKey{k}),
		fmt.Sprintf("%v %+v %#v %x", *k, *k, *k, *k), fmt.Sprintf("%+v", struct{ K DataKey }{*k}),
	} {
		if strings.Contains(s, "super") || strings.Contains(s, secretHex) || !strings.Contains(s, redacted) {
			t.Errorf("formatted key leaks or is not redacted: %q", s)
		}
	}
	j, _ := json.Marshal(map[string]any{"k": k})
	if string(j) != `{"k":"**redacted**"}` {
		t.Errorf("JSON: %s", j)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k)
	if strings.Contains(buf.String(), "super") || !strings.Contains(buf.String(), redacted) {
		t.Errorf("slog: %s", buf.String())
	}
	// Errors never carry key bytes.
	_, err := UnwrapKeyAESGCM(k.Bytes(), make([]byte, 60), ContentAESGCM)
	if err == nil || strings.Contains(err.Error(), "super") {
		t.Errorf("error: %v", err)
	}
}

func TestDataKeyEqualAndClear(t *testing.T) {
	src := []byte("0123456789abcdef0123456789abcdef")
	a, b := NewDataKey(src), NewDataKey(src)
	src[0] = 'X'
	if !a.Equal(b) || a.Bytes()[0] != '0' {
		t.Fatal("NewDataKey did not copy, or Equal failed")
	}
	if a.Equal(NewDataKey(src)) || a.Equal(NewDataKey(src[:16])) || a.Equal(nil) {
		t.Fatal("Equal true for different keys")
	}
	raw := a.Bytes()
	a.Clear()
	if !bytes.Equal(raw, make([]byte, 32)) || a.Len() != 0 || a.Bytes() != nil {
		t.Fatal("Clear left key bytes behind")
	}
	a.Clear()
	var nilKey *DataKey
	nilKey.Clear()
	if nilKey.Len() != 0 || nilKey.Bytes() != nil || fmt.Sprint(nilKey) != "<nil>" {
		t.Fatal("nil DataKey")
	}
	g, err := GenerateDataKey(detRand(1))
	if err != nil || g.Len() != DataKeySize {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	if _, err := GenerateDataKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("GenerateDataKey with empty source")
	}
}
