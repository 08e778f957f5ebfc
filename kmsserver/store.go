package kmsserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Key states.
const (
	stateEnabled         = "Enabled"
	stateDisabled        = "Disabled"
	statePendingDeletion = "PendingDeletion"
)

const (
	defaultRotationDays = 365
	maxOnDemandRotation = 25
)

var (
	keyIDPattern     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	accountPattern   = regexp.MustCompile(`^[0-9]{12}$`)
	regionPattern    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	aliasNamePattern = regexp.MustCompile(`^[a-zA-Z0-9:/_-]+$`)
)

// backingKey is one version of a key's cryptographic material.
type backingKey struct {
	MaterialID string    `json:"material_id"`
	Material   []byte    `json:"material"`
	Created    time.Time `json:"created"`
}

// key is a KMS key. Its exported fields are what the state file stores.
type key struct {
	ID                   string       `json:"id"`
	Account              string       `json:"account"`
	Region               string       `json:"region"`
	Description          string       `json:"description,omitempty"`
	Created              time.Time    `json:"created"`
	State                string       `json:"state"`
	DeletionDate         time.Time    `json:"deletion_date,omitzero"`
	PendingWindowInDays  int32        `json:"pending_window_in_days,omitempty"`
	RotationEnabled      bool         `json:"rotation_enabled,omitempty"`
	RotationPeriodInDays int32        `json:"rotation_period_in_days,omitempty"`
	NextRotation         time.Time    `json:"next_rotation,omitzero"`
	OnDemandRotations    int          `json:"on_demand_rotations,omitempty"`
	Policy               string       `json:"policy"`
	Versions             []backingKey `json:"versions"`

	policy *policyDoc
}

func keyARN(account, region, id string) string {
	return "arn:aws:kms:" + region + ":" + account + ":key/" + id
}

func aliasARN(account, region, name string) string {
	return "arn:aws:kms:" + region + ":" + account + ":" + name
}

func (k *key) arn() string { return keyARN(k.Account, k.Region, k.ID) }

func (k *key) current() (uint32, *backingKey) {
	return uint32(len(k.Versions)), &k.Versions[len(k.Versions)-1]
}

func (k *key) version(v uint32) *backingKey {
	if v == 0 || int(v) > len(k.Versions) {
		return nil
	}
	return &k.Versions[v-1]
}

type keyRef struct{ account, region, id string }

type aliasRef struct{ account, region, name string }

type alias struct {
	Name     string    `json:"name"`
	Account  string    `json:"account"`
	Region   string    `json:"region"`
	TargetID string    `json:"target_key_id"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

func (a *alias) arn() string { return aliasARN(a.Account, a.Region, a.Name) }

// store holds keys and aliases; the Handler's mutex guards it.
type store struct {
	keys    map[keyRef]*key
	aliases map[aliasRef]*alias
}

func newStore() *store {
	return &store{keys: map[keyRef]*key{}, aliases: map[aliasRef]*alias{}}
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newBackingKey(material []byte, now time.Time) (backingKey, error) {
	if material == nil {
		material = make([]byte, backingKeySize)
		if _, err := rand.Read(material); err != nil {
			return backingKey{}, err
		}
	}
	if len(material) != backingKeySize {
		return backingKey{}, fmt.Errorf("key material must be %d bytes, not %d", backingKeySize, len(material))
	}
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return backingKey{}, err
	}
	return backingKey{MaterialID: hex.EncodeToString(id), Material: material, Created: now.UTC()}, nil
}

// lookupKey finds a key by account, region and ID.
func (s *store) lookupKey(account, region, id string) *key {
	return s.keys[keyRef{account, region, id}]
}

// aliasesOf lists the aliases that point at k, sorted by name.
func (s *store) aliasesOf(k *key) []*alias {
	var out []*alias
	for _, a := range s.aliases {
		if a.Account == k.Account && a.Region == k.Region && a.TargetID == k.ID {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// expire deletes keys whose deletion date has passed, with their aliases.
// It reports whether anything was deleted.
func (s *store) expire(now time.Time) bool {
	deleted := false
	for ref, k := range s.keys {
		if k.State == statePendingDeletion && !now.Before(k.DeletionDate) {
			for _, a := range s.aliasesOf(k) {
				delete(s.aliases, aliasRef{a.Account, a.Region, a.Name})
			}
			delete(s.keys, ref)
			deleted = true
		}
	}
	return deleted
}

// nextExpiry is the earliest deletion date of a key pending deletion, or the
// zero time.
func (s *store) nextExpiry() time.Time {
	var next time.Time
	for _, k := range s.keys {
		if k.State == statePendingDeletion && (next.IsZero() || k.DeletionDate.Before(next)) {
			next = k.DeletionDate
		}
	}
	return next
}

// stateFile is the persisted form of a store.
type stateFile struct {
	Format  int      `json:"format"`
	Keys    []*key   `json:"keys"`
	Aliases []*alias `json:"aliases"`
}

const stateFormat = 1

func (s *store) marshal() ([]byte, error) {
	f := stateFile{Format: stateFormat, Keys: []*key{}, Aliases: []*alias{}}
	for _, k := range s.keys {
		f.Keys = append(f.Keys, k)
	}
	for _, a := range s.aliases {
		f.Aliases = append(f.Aliases, a)
	}
	sort.Slice(f.Keys, func(i, j int) bool { return f.Keys[i].arn() < f.Keys[j].arn() })
	sort.Slice(f.Aliases, func(i, j int) bool { return f.Aliases[i].arn() < f.Aliases[j].arn() })
	return json.MarshalIndent(f, "", "  ")
}

// loadState reads a state file written by save. A missing file is an empty
// store.
func loadState(path string) (*store, error) {
	s := newStore()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("state file %s: %v", path, err)
	}
	if f.Format != stateFormat {
		return nil, fmt.Errorf("state file %s: unknown format %d", path, f.Format)
	}
	for _, k := range f.Keys {
		if !keyIDPattern.MatchString(k.ID) || len(k.Versions) == 0 {
			return nil, fmt.Errorf("state file %s: bad key %q", path, k.ID)
		}
		for _, v := range k.Versions {
			if len(v.Material) != backingKeySize {
				return nil, fmt.Errorf("state file %s: key %s: bad key material", path, k.ID)
			}
		}
		p, err := parsePolicy(k.Policy)
		if err != nil {
			return nil, fmt.Errorf("state file %s: key %s: %v", path, k.ID, err)
		}
		k.policy = p
		s.keys[keyRef{k.Account, k.Region, k.ID}] = k
	}
	for _, a := range f.Aliases {
		if s.lookupKey(a.Account, a.Region, a.TargetID) == nil {
			return nil, fmt.Errorf("state file %s: alias %s points at a missing key", path, a.Name)
		}
		s.aliases[aliasRef{a.Account, a.Region, a.Name}] = a
	}
	return s, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, renamed over path, so a reader (or a restart after the server is
// killed) sees the old or the new content, never a mix. It does not fsync: a
// test server's state need not survive a power loss, and syncing every
// mutation would cost milliseconds under the store's lock.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Seed is the content of a seed file: keys to create at start-up. See the
// package documentation for the JSON schema.
type Seed struct {
	Keys []SeedKey `json:"keys"`
}

// SeedKey describes one key of a seed file, or a key added with
// Handler.AddKey. Empty fields take the defaults described in the package
// documentation.
type SeedKey struct {
	ID              string          `json:"id,omitempty"`
	Account         string          `json:"account,omitempty"`
	Region          string          `json:"region,omitempty"`
	Description     string          `json:"description,omitempty"`
	Material        []byte          `json:"material,omitempty"`
	State           string          `json:"state,omitempty"`
	RotationEnabled bool            `json:"rotation_enabled,omitempty"`
	Aliases         []string        `json:"aliases,omitempty"`
	Policy          json.RawMessage `json:"policy,omitempty"`
}

// readSeed parses a seed file strictly: unknown fields are errors.
func readSeed(path string) (*Seed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var s Seed
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("seed file %s: %v", path, err)
	}
	return &s, nil
}

// seedID derives a stable key ID for a seed key without one, so that loading
// the same seed again (for example next to a state file) finds the same key.
func seedID(sk SeedKey, index int) string {
	h := sha256.New()
	fmt.Fprintf(h, "kmsserver seed\x00%s\x00%s\x00", sk.Account, sk.Region)
	if len(sk.Aliases) > 0 {
		fmt.Fprintf(h, "alias\x00%s", sk.Aliases[0])
	} else {
		fmt.Fprintf(h, "index\x00%d", index)
	}
	var b [16]byte
	copy(b[:], h.Sum(nil))
	return formatUUID(b)
}

// seedPolicy accepts a policy given as a JSON object or as a string holding
// one.
func seedPolicy(raw json.RawMessage) (string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "", nil
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return "", err
		}
		return str, nil
	}
	return s, nil
}

// checkAliasName applies the rules CreateAlias applies to a new alias name.
func checkAliasName(name string) *apiError {
	var v validator
	v.length("aliasName", name, len(name), 1, 256, true)
	if !aliasNamePattern.MatchString(name) {
		v.add("'"+name+"'", "aliasName", "satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")
	}
	if e := v.err(); e != nil {
		return e
	}
	if !strings.HasPrefix(name, "alias/") || len(name) == len("alias/") {
		return errf(ErrInvalidAliasName, "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
	}
	if strings.HasPrefix(name, "alias/aws/") {
		return errf(ErrInvalidAliasName, "Alias must not begin with 'alias/aws/': the prefix is reserved for AWS managed keys")
	}
	return nil
}
