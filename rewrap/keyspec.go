package rewrap

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
)

// Kind is the kind of a wrapping key.
type Kind int

// Kinds of wrapping keys.
const (
	KindKMS    Kind = iota + 1 // an AWS KMS key
	KindPKCS11                 // a secret key in an HSM, reached through PKCS#11
	KindAES                    // a local AES-256 key (S3EC raw AES keyring)
	KindRSA                    // a local RSA key pair (S3EC raw RSA keyring)
)

func (k Kind) String() string {
	switch k {
	case KindKMS:
		return "kms"
	case KindPKCS11:
		return "pkcs11"
	case KindAES:
		return "aes"
	case KindRSA:
		return "rsa"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Spec is a parsed key spec, as written on the command line or in config:
//
//	kms:<key id | key ARN | alias/NAME | alias ARN>
//	pkcs11:token=T;object=LABEL?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/pin
//	aes:/path/to/32-byte-key-file
//	rsa:/path/to/key.pem
//
// A Spec never holds a secret: PINs and key material are named by a file or
// an environment variable and read when the key is opened.
type Spec struct {
	Kind Kind
	// KMSKeyID is the key as the user named it (key id, key ARN, alias name
	// or alias ARN), for KindKMS.
	KMSKeyID string
	// PKCS11 is the parsed URI, for KindPKCS11.
	PKCS11 *PKCS11URI
	// Path is the key file, for KindAES and KindRSA.
	Path string
}

// Examples of good specs, quoted in errors.
const (
	exampleKMS    = "kms:alias/s3-data-2026 or kms:arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	examplePKCS11 = "pkcs11:token=rotator;object=kek-2026?module-path=/opt/cloudhsm/lib/libcloudhsm_pkcs11.so&pin-source=file:/etc/rotator/hsm.pin"
	exampleAES    = "aes:/etc/rotator/kek.key (a file holding 32 raw bytes, or 64 hex digits, or their base64)"
	exampleRSA    = "rsa:/etc/rotator/kek.pem (a PEM private key for unwrapping, or a public key for wrapping only)"
)

// ErrBadSpec is returned (wrapped) for every key spec that does not parse.
var ErrBadSpec = errors.New("bad key spec")

// SpecError describes a key spec that does not parse, with an example of a
// good one.
type SpecError struct {
	Spec    string
	Reason  string
	Example string
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("key spec %q: %s (example: %s)", RedactSpec(e.Spec), e.Reason, e.Example)
}

// RedactSpec returns spec fit to print: the value of every attribute whose
// name mentions a PIN (pin-value, pin-source, and misspellings of them) is
// replaced by **redacted**, unless it is a well-formed pin-source
// (file:/path or env:NAME), which names a secret without being one. A PIN
// typed where its source belongs (pin-source=1234abcd) is thus never echoed,
// whatever else is wrong with the spec.
func RedactSpec(spec string) string {
	var b strings.Builder
	for spec != "" {
		end := strings.IndexAny(spec, ";&?")
		if end < 0 {
			end = len(spec)
		}
		b.WriteString(redactAttr(spec[:end]))
		if end < len(spec) {
			b.WriteByte(spec[end])
			end++
		}
		spec = spec[end:]
	}
	return b.String()
}

// redactAttr redacts one name=value attribute of a spec (the first may
// carry the kind prefix, as in pkcs11:pin-source=...).
func redactAttr(attr string) string {
	name, val, ok := strings.Cut(attr, "=")
	lname := strings.ToLower(name)
	if !strings.Contains(lname, "pin") {
		return attr
	}
	if !ok {
		return redacted // pin-source:1234, or the PIN alone
	}
	if lname[strings.LastIndex(lname, ":")+1:] == "pin-source" {
		if v, err := url.PathUnescape(val); err == nil && wellFormedSecretSource(v) {
			return attr
		}
	}
	return name + "=" + redacted
}

const redacted = "**redacted**"

// wellFormedSecretSource reports whether source is file:/PATH (an absolute
// path, as in a file URI) or env:NAME (NAME a portable environment
// variable name). Anything else may be the secret itself, typed by mistake
// (file:1234abcd too), and must not be printed.
func wellFormedSecretSource(source string) bool {
	if p, ok := strings.CutPrefix(source, "file:"); ok {
		return strings.HasPrefix(p, "/") && !strings.ContainsAny(p, "\x00\n\r")
	}
	if n, ok := strings.CutPrefix(source, "env:"); ok {
		return validEnvName(n)
	}
	return false
}

// validEnvName reports whether n is a POSIX environment variable name:
// letters, digits and '_', not starting with a digit.
func validEnvName(n string) bool {
	if n == "" || (n[0] >= '0' && n[0] <= '9') {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (e *SpecError) Unwrap() error { return ErrBadSpec }

// ParseSpec parses a key spec.
func ParseSpec(s string) (Spec, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Spec{}, &SpecError{s, "missing kind prefix (kms:, pkcs11:, aes: or rsa:)", exampleKMS}
	}
	switch strings.ToLower(scheme) {
	case "kms":
		return parseKMS(s, rest)
	case "pkcs11":
		u, err := ParsePKCS11URI(s)
		if err != nil {
			return Spec{}, err
		}
		return Spec{Kind: KindPKCS11, PKCS11: u}, nil
	case "aes":
		if rest == "" {
			return Spec{}, &SpecError{s, "missing key file path", exampleAES}
		}
		return Spec{Kind: KindAES, Path: rest}, nil
	case "rsa":
		if rest == "" {
			return Spec{}, &SpecError{s, "missing key file path", exampleRSA}
		}
		return Spec{Kind: KindRSA, Path: rest}, nil
	default:
		return Spec{}, &SpecError{s, fmt.Sprintf("unknown kind %q: want kms, pkcs11, aes or rsa", scheme), exampleKMS}
	}
}

func parseKMS(s, id string) (Spec, error) {
	bad := func(reason string) (Spec, error) { return Spec{}, &SpecError{s, reason, exampleKMS} }
	switch {
	case id == "":
		return bad("missing key id, key ARN, alias/NAME or alias ARN")
	case strings.ContainsAny(id, " \t\r\n"):
		return bad("white space in key id")
	case strings.HasPrefix(id, "arn:"):
		// arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME
		parts := strings.SplitN(id, ":", 6)
		if len(parts) != 6 || parts[2] != "kms" || parts[1] == "" || parts[3] == "" || parts[4] == "" {
			return bad("malformed KMS ARN: want arn:aws:kms:REGION:ACCOUNT:key/ID or ...:alias/NAME")
		}
		res := parts[5]
		if !(strings.HasPrefix(res, "key/") && len(res) > len("key/")) &&
			!(strings.HasPrefix(res, "alias/") && len(res) > len("alias/")) {
			return bad("malformed KMS ARN resource: want key/ID or alias/NAME")
		}
	case strings.HasPrefix(id, "alias/"):
		if len(id) == len("alias/") {
			return bad("empty alias name")
		}
	case strings.Contains(id, "/") || strings.Contains(id, ":"):
		return bad("not a key id, key ARN, alias/NAME or alias ARN")
	}
	return Spec{Kind: KindKMS, KMSKeyID: id}, nil
}

// String returns the spec as it was meant, without secrets; it parses back
// to the same Spec.
func (s Spec) String() string {
	switch s.Kind {
	case KindKMS:
		return "kms:" + s.KMSKeyID
	case KindPKCS11:
		return s.PKCS11.String()
	case KindAES:
		return "aes:" + s.Path
	case KindRSA:
		return "rsa:" + s.Path
	}
	return ""
}

// PKCS11URI is a PKCS#11 URI (RFC 7512) naming a secret key in a token.
// Only the attributes rotator uses are fields; PIN values are refused.
type PKCS11URI struct {
	Token  string // token label (path attribute "token")
	Object string // key label (path attribute "object")
	ID     []byte // CKA_ID (path attribute "id"), optional
	Serial string // token serial (path attribute "serial"), optional
	SlotID string // slot id (path attribute "slot-id"), optional

	ModulePath string // query attribute "module-path"
	// PINSource names where the user PIN is read from: "file:/path" (RFC
	// 7512) or "env:NAME" (rotator's extension). Empty means the caller's
	// default (ROTATOR_PKCS11_PIN_FILE).
	PINSource string

	// Other holds attributes rotator does not interpret (kept so String
	// round-trips).
	Other map[string]string
}

// queryAttrs are the RFC 7512 attributes that belong after '?'.
var queryAttrs = map[string]bool{"module-name": true, "module-path": true, "pin-source": true, "pin-value": true}

// ParsePKCS11URI parses an RFC 7512 PKCS#11 URI.
func ParsePKCS11URI(s string) (*PKCS11URI, error) {
	bad := func(reason string) (*PKCS11URI, error) { return nil, &SpecError{s, reason, examplePKCS11} }
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return bad("not a pkcs11: URI")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &PKCS11URI{}
	seen := map[string]bool{}
	set := func(name, raw string) error {
		if seen[name] {
			return fmt.Errorf("attribute %q given twice", name)
		}
		seen[name] = true
		v, err := url.PathUnescape(raw)
		if err != nil {
			return fmt.Errorf("attribute %q: bad percent-encoding", name)
		}
		switch name {
		case "token":
			u.Token = v
		case "object":
			u.Object = v
		case "id":
			u.ID = []byte(v)
		case "serial":
			u.Serial = v
		case "slot-id":
			u.SlotID = v
		case "type":
			if v != "secret-key" {
				return fmt.Errorf("type=%s: rotator wraps with secret keys only (type=secret-key)", v)
			}
		case "module-path":
			u.ModulePath = v
		case "pin-source":
			if !wellFormedSecretSource(v) {
				// Never echo v: it may be the PIN itself.
				return errors.New("pin-source: want file:/path or env:NAME naming where the PIN is kept (an absolute path), never the PIN itself")
			}
			u.PINSource = v
		case "pin-value":
			return errors.New("pin-value is refused: a PIN must not appear in a URI or flag; use pin-source=file:/path or pin-source=env:NAME")
		default:
			if u.Other == nil {
				u.Other = map[string]string{}
			}
			u.Other[name] = v
		}
		return nil
	}
	for _, group := range []struct {
		text, sep string
		query     bool
	}{{path, ";", false}, {query, "&", true}} {
		if group.text == "" {
			continue
		}
		for _, attr := range strings.Split(group.text, group.sep) {
			name, val, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return bad(fmt.Sprintf("attribute %q is not name=value", redactAttr(attr)))
			}
			name = strings.ToLower(name)
			if queryAttrs[name] && !group.query && name != "pin-value" {
				return bad(fmt.Sprintf("attribute %q belongs in the query part, after '?'", name))
			}
			if err := set(name, val); err != nil {
				return bad(err.Error())
			}
		}
	}
	if u.Object == "" {
		return bad("missing object=LABEL naming the key")
	}
	if u.Token == "" && u.Serial == "" && u.SlotID == "" {
		return bad("missing token=LABEL (or serial= or slot-id=) naming the token")
	}
	return u, nil
}

// KeyURI returns the URI that names the key without module path or PIN
// source: what rotator writes into material descriptions and the ledger.
func (u *PKCS11URI) KeyURI() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	sep := ""
	add := func(name, v string) {
		if v == "" {
			return
		}
		b.WriteString(sep + name + "=" + escape(v))
		sep = ";"
	}
	add("token", u.Token)
	add("serial", u.Serial)
	add("slot-id", u.SlotID)
	add("object", u.Object)
	add("id", string(u.ID))
	return b.String()
}

// String returns the whole URI (module path and PIN source included, never a
// PIN).
func (u *PKCS11URI) String() string {
	s := u.KeyURI()
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+escape(u.ModulePath))
	}
	if u.PINSource != "" {
		q = append(q, "pin-source="+escape(u.PINSource))
	}
	names := make([]string, 0, len(u.Other))
	for n := range u.Other {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		q = append(q, n+"="+escape(u.Other[n]))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// escape percent-encodes everything but RFC 7512's unreserved characters and
// the few it allows unencoded in values (':', '/', '@', '&' outside queries are
// escaped for safety).
func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '/', c == '@', c == '[', c == ']':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ReadSecret reads a secret named by source: "file:/path" (trailing newline
// trimmed) or "env:NAME". A secret is never accepted as a literal.
func ReadSecret(source string) ([]byte, error) {
	switch {
	case !wellFormedSecretSource(source):
		// Do not echo source: it may be the secret itself.
		return nil, errors.New("read secret: want a source of the form file:/path or env:NAME (secrets are never accepted as literal values)")
	case strings.HasPrefix(source, "file:"):
		p := strings.TrimPrefix(source, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w (hint: the file named by %s must exist and be readable)", err, source)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	default: // env:NAME
		name := strings.TrimPrefix(source, "env:")
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("read secret: environment variable %s is not set", name)
		}
		return []byte(v), nil
	}
}
