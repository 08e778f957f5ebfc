package envelope

import (
	"errors"
	"strings"
)

// ErrNoWrappedKey: the metadata (or instruction file) holds no wrapped
// data key field.
var ErrNoWrappedKey = errors.New("envelope: no wrapped data key")

// WrappedKeyOf returns the wrapped data key an object's envelope holds:
// from the instruction file when instruction is not nil, else from the
// user metadata (names with or without x-amz-meta-, any case). It reads
// only the wrapped key field (x-amz-3, x-amz-key-v2 or x-amz-key), so it
// also answers for an object whose envelope is half written (new content
// beside an old instruction file), where Parse fails: the commit protocol
// uses it as evidence of which wrapped key an object holds.
func WrappedKeyOf(meta map[string]string, instruction []byte) ([]byte, error) {
	fields := map[string]string{}
	if instruction != nil {
		m, err := parseInstructionJSON(instruction)
		if err != nil {
			return nil, err
		}
		fields = m
	} else {
		for k, v := range meta {
			fields[strings.TrimPrefix(strings.ToLower(k), MetaPrefix)] = v
		}
	}
	for _, name := range []string{FieldV3Key, FieldKeyV2, FieldKeyV1} {
		if v, ok := fields[name]; ok {
			if strings.TrimSpace(v) == "" {
				return nil, ferr(name, ErrNoWrappedKey, "empty")
			}
			b, err := decodeB64(v)
			if err != nil {
				return nil, ferr(name, ErrBadBase64, err.Error())
			}
			return b, nil
		}
	}
	return nil, ErrNoWrappedKey
}
