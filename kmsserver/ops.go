package kmsserver

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

const symmetricDefault = "SYMMETRIC_DEFAULT"

// Value sets of the enums the server validates, from the SDK's model.
var (
	encryptionAlgorithms = enumValues(types.EncryptionAlgorithmSpec("").Values())
	dataKeySpecs         = enumValues(types.DataKeySpec("").Values())
	keySpecs             = enumValues(types.KeySpec("").Values())
	cmkSpecs             = enumValues(types.CustomerMasterKeySpec("").Values())
	keyUsages            = enumValues(types.KeyUsageType("").Values())
	origins              = enumValues(types.OriginType("").Values())
	dryRunModifiers      = enumValues(types.DryRunModifierType("").Values())
)

func enumValues[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// wiper is a response holding plaintext, cleared once it has been written.
type wiper interface{ wipe() }

func (h *Handler) mutate(fn func() (any, *apiError)) (any, *apiError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	resp, e := fn()
	if e != nil {
		return nil, e
	}
	h.expiry = h.st.nextExpiry()
	if err := h.persistLocked(); err != nil {
		return nil, errf(ErrKMSInternal, "kmsserver: %v", err)
	}
	return resp, nil
}

// decodeValid decodes an operation's request body into req and validates
// it with check: every operation's first step.
func decodeValid(body []byte, req any, check func(v *validator)) *apiError {
	if e := decode(body, req); e != nil {
		return e
	}
	var v validator
	check(&v)
	return v.err()
}

func keyIDValid(v *validator, member string, id *string) {
	if v.required(member, id != nil) {
		v.strLen(member, id, 1, 2048)
	}
}

func isDryRun(p *bool) bool { return p != nil && *p }

func dryRunError() *apiError {
	return errf(ErrDryRunOperation, "The request would have succeeded, but the DryRun option is set.")
}

func checkAlgorithm(k *key, alg *string) *apiError {
	if alg != nil && *alg != symmetricDefault {
		return errf(ErrInvalidKeyUsage, "%s is not a valid encryption algorithm for %s: a symmetric encryption key supports only SYMMETRIC_DEFAULT", *alg, k.arn())
	}
	return nil
}

func invalidCiphertext() *apiError {
	return errf(ErrInvalidCiphertext, "the ciphertext is not valid, or does not match the key or the encryption context")
}

// --- key metadata -----------------------------------------------------------

type keyMetadata struct {
	AWSAccountId                string
	KeyId                       string
	Arn                         string
	CreationDate                *epochTime
	Enabled                     bool
	Description                 string
	KeyUsage                    string
	KeyState                    string
	DeletionDate                *epochTime `json:",omitempty"`
	PendingDeletionWindowInDays *int32     `json:",omitempty"`
	Origin                      string
	KeyManager                  string
	CustomerMasterKeySpec       string
	KeySpec                     string
	EncryptionAlgorithms        []string
	MultiRegion                 bool
	CurrentKeyMaterialId        string
}

func metadata(k *key) keyMetadata {
	_, cur := k.current()
	m := keyMetadata{
		AWSAccountId:          k.Account,
		KeyId:                 k.ID,
		Arn:                   k.arn(),
		CreationDate:          epoch(k.Created),
		Enabled:               k.State == stateEnabled,
		Description:           k.Description,
		KeyUsage:              "ENCRYPT_DECRYPT",
		KeyState:              k.State,
		Origin:                "AWS_KMS",
		KeyManager:            "CUSTOMER",
		CustomerMasterKeySpec: symmetricDefault,
		KeySpec:               symmetricDefault,
		EncryptionAlgorithms:  []string{symmetricDefault},
		CurrentKeyMaterialId:  cur.MaterialID,
	}
	if k.State == statePendingDeletion {
		m.DeletionDate = epoch(k.DeletionDate)
		w := k.PendingWindowInDays
		m.PendingDeletionWindowInDays = &w
	}
	return m
}

type keyMetadataResp struct{ KeyMetadata keyMetadata }

// --- CreateKey, DescribeKey, ListKeys ----------------------------------------

type createKeyReq struct {
	Description                    *string
	KeySpec                        *string
	CustomerMasterKeySpec          *string
	KeyUsage                       *string
	Origin                         *string
	MultiRegion                    *bool
	CustomKeyStoreId               *string
	XksKeyId                       *string
	Policy                         *string
	BypassPolicyLockoutSafetyCheck bool
	Tags                           []struct{ TagKey, TagValue *string }
}

func (h *Handler) createKey(c *call, body []byte) (any, *apiError) {
	var req createKeyReq
	if e := decodeValid(body, &req, func(v *validator) {
		v.strLen("description", req.Description, 0, 8192)
		v.enum("keySpec", req.KeySpec, keySpecs)
		v.enum("customerMasterKeySpec", req.CustomerMasterKeySpec, cmkSpecs)
		v.enum("keyUsage", req.KeyUsage, keyUsages)
		v.enum("origin", req.Origin, origins)
		v.strLen("policy", req.Policy, 1, 131072)
		v.strLen("customKeyStoreId", req.CustomKeyStoreId, 1, 64)
		for _, t := range req.Tags {
			if v.required("tags.member.tagKey", t.TagKey != nil) {
				v.strLen("tags.member.tagKey", t.TagKey, 1, 128)
			}
			if v.required("tags.member.tagValue", t.TagValue != nil) {
				v.strLen("tags.member.tagValue", t.TagValue, 0, 256)
			}
		}
	}); e != nil {
		return nil, e
	}
	spec := symmetricDefault
	if req.KeySpec != nil {
		spec = *req.KeySpec
	}
	if req.CustomerMasterKeySpec != nil {
		if req.KeySpec != nil && *req.KeySpec != *req.CustomerMasterKeySpec {
			return nil, errf(ErrValidation, "KeySpec and CustomerMasterKeySpec differ; use KeySpec only (CustomerMasterKeySpec is deprecated)")
		}
		spec = *req.CustomerMasterKeySpec
	}
	if spec != symmetricDefault {
		return nil, errf(ErrUnsupportedOperation, "KeySpec %s is not supported by this test server: it implements only SYMMETRIC_DEFAULT keys", spec)
	}
	if req.KeyUsage != nil && *req.KeyUsage != "ENCRYPT_DECRYPT" {
		return nil, errf(ErrValidation, "KeyUsage %s is not compatible with KeySpec SYMMETRIC_DEFAULT", *req.KeyUsage)
	}
	if req.Origin != nil && *req.Origin != "AWS_KMS" {
		return nil, errf(ErrUnsupportedOperation, "Origin %s is not supported by this test server: it implements only AWS_KMS keys", *req.Origin)
	}
	if req.CustomKeyStoreId != nil || req.XksKeyId != nil {
		return nil, errf(ErrUnsupportedOperation, "custom key stores are not supported by this test server")
	}
	if req.MultiRegion != nil && *req.MultiRegion {
		return nil, errf(ErrUnsupportedOperation, "multi-Region keys are not supported by this test server")
	}
	policy := defaultPolicy(c.account)
	if req.Policy != nil {
		policy = *req.Policy
	}
	pd, err := parsePolicy(policy)
	if err != nil {
		return nil, errf(ErrMalformedPolicy, "%v", err)
	}
	if e := lockoutCheck(c, pd, keyARN(c.account, c.region, "*"), req.BypassPolicyLockoutSafetyCheck); e != nil {
		return nil, e
	}
	bk, err := newBackingKey(nil, c.now)
	if err != nil {
		return nil, errf(ErrKMSInternal, "generate key material: %v", err)
	}
	k := &key{
		ID: newUUID(), Account: c.account, Region: c.region, Created: c.now,
		State: stateEnabled, Policy: policy, policy: pd, Versions: []backingKey{bk},
	}
	if req.Description != nil {
		k.Description = *req.Description
	}
	return h.mutate(func() (any, *apiError) {
		h.st.keys[keyRef{k.Account, k.Region, k.ID}] = k
		return keyMetadataResp{metadata(k)}, nil
	})
}

// authorized resolves the key a request names (id, in the forms
// accepted) and checks that the caller may do action with it. The caller
// holds h.mu.
func (h *Handler) authorized(c *call, id string, forms idForms, action string) (*key, *apiError) {
	k, e := h.resolve(c, id, forms)
	if e != nil {
		return nil, e
	}
	if e := authorize(c, k, action); e != nil {
		return nil, e
	}
	return k, nil
}

// lockoutCheck refuses a policy that would not allow the caller
// kms:PutKeyPolicy (an explicit or an implicit deny), as KMS's policy
// lockout safety check does.
func lockoutCheck(c *call, pd *policyDoc, arn string, bypass bool) *apiError {
	if !bypass && pd.decide(c.caller(), "kms:PutKeyPolicy", arn) != allowed {
		return errf(ErrMalformedPolicy, "The new key policy will not allow you to update the key policy in the future.")
	}
	return nil
}

type keyIDReq struct {
	KeyId       *string
	GrantTokens []string
}

func (h *Handler) describeKey(c *call, body []byte) (any, *apiError) {
	var req keyIDReq
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		v.grantTokens(req.GrantTokens)
	}); e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	k, e := h.authorized(c, *req.KeyId, keyOrName, "kms:DescribeKey")
	if e != nil {
		return nil, e
	}
	return keyMetadataResp{metadata(k)}, nil
}

type listReq struct {
	KeyId  *string
	Limit  *int32
	Marker *string
}

func (v *validator) list(req *listReq, maxLimit int32) {
	v.intRange("limit", req.Limit, 1, maxLimit)
	v.strLen("marker", req.Marker, 1, 1024)
}

// window is where a List request's page starts (after the name its
// marker holds) and how long it is (its Limit, defaultLimit without one).
func (req *listReq) window(defaultLimit int) (after string, limit int, e *apiError) {
	after, e = decodeMarker(req.Marker)
	if e != nil {
		return "", 0, e
	}
	limit = defaultLimit
	if req.Limit != nil {
		limit = int(*req.Limit)
	}
	return after, limit, nil
}

func encodeMarker(last string) string { return base64.RawURLEncoding.EncodeToString([]byte(last)) }

func decodeMarker(m *string) (string, *apiError) {
	if m == nil {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(*m)
	if err != nil || len(b) == 0 {
		return "", errf(ErrInvalidMarker, "Invalid marker %s", *m)
	}
	return string(b), nil
}

// page cuts a sorted list of names after marker; it reports the next marker
// when there is more.
func page(names []string, after string, limit int) (lo, hi int, next string) {
	lo = sort.SearchStrings(names, after)
	if after != "" && lo < len(names) && names[lo] == after {
		lo++
	}
	hi = min(lo+limit, len(names))
	if hi < len(names) {
		next = encodeMarker(names[hi-1])
	}
	return lo, hi, next
}

type keyListEntry struct{ KeyId, KeyArn string }

type listKeysResp struct {
	Keys       []keyListEntry
	Truncated  bool
	NextMarker string `json:",omitempty"`
}

func (h *Handler) listKeys(c *call, body []byte) (any, *apiError) {
	var req listReq
	if e := decodeValid(body, &req, func(v *validator) {
		v.list(&req, 1000)
	}); e != nil {
		return nil, e
	}
	after, limit, e := req.window(100)
	if e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	var ids []string
	for ref := range h.st.keys {
		if ref.account == c.account && ref.region == c.region {
			ids = append(ids, ref.id)
		}
	}
	sort.Strings(ids)
	lo, hi, next := page(ids, after, limit)
	resp := listKeysResp{Keys: []keyListEntry{}, Truncated: next != "", NextMarker: next}
	for _, id := range ids[lo:hi] {
		resp.Keys = append(resp.Keys, keyListEntry{KeyId: id, KeyArn: keyARN(c.account, c.region, id)})
	}
	return resp, nil
}

// --- aliases ------------------------------------------------------------------

type aliasReq struct {
	AliasName   *string
	TargetKeyId *string
}

func (h *Handler) createAlias(c *call, body []byte) (any, *apiError) {
	var req aliasReq
	if e := decodeValid(body, &req, func(v *validator) {
		v.required("aliasName", req.AliasName != nil)
		keyIDValid(v, "targetKeyId", req.TargetKeyId)
	}); e != nil {
		return nil, e
	}
	if e := checkAliasName(*req.AliasName); e != nil {
		return nil, e
	}
	return h.mutate(func() (any, *apiError) {
		k, e := h.resolve(c, *req.TargetKeyId, keyOnly)
		if e != nil {
			return nil, e
		}
		if k.Account != c.account || k.Region != c.region {
			return nil, errf(ErrNotFound, "Key '%s' does not exist in account %s region %s: an alias and its key must be in the same account and region", k.arn(), c.account, c.region)
		}
		if e := authorize(c, k, "kms:CreateAlias"); e != nil {
			return nil, e
		}
		if e := notPendingDeletion(k); e != nil {
			return nil, e
		}
		ref := aliasRef{c.account, c.region, *req.AliasName}
		if h.st.aliases[ref] != nil {
			return nil, errf(ErrAlreadyExists, "An alias with the name %s already exists", aliasARN(c.account, c.region, *req.AliasName))
		}
		h.st.aliases[ref] = &alias{Name: *req.AliasName, Account: c.account, Region: c.region, TargetID: k.ID, Created: c.now, Updated: c.now}
		return struct{}{}, nil
	})
}

func (h *Handler) deleteAlias(c *call, body []byte) (any, *apiError) {
	var req aliasReq
	if e := decodeValid(body, &req, func(v *validator) {
		if v.required("aliasName", req.AliasName != nil) {
			v.strLen("aliasName", req.AliasName, 1, 256)
		}
	}); e != nil {
		return nil, e
	}
	name := *req.AliasName
	if !strings.HasPrefix(name, "alias/") {
		return nil, errf(ErrInvalidAliasName, "Alias must start with the prefix \"alias/\"")
	}
	return h.mutate(func() (any, *apiError) {
		ref := aliasRef{c.account, c.region, name}
		a := h.st.aliases[ref]
		if a == nil {
			return nil, errf(ErrNotFound, "Alias %s is not found.", aliasARN(c.account, c.region, name))
		}
		if k := h.st.lookupKey(a.Account, a.Region, a.TargetID); k != nil {
			if e := authorize(c, k, "kms:DeleteAlias"); e != nil {
				return nil, e
			}
		}
		delete(h.st.aliases, ref)
		return struct{}{}, nil
	})
}

type aliasListEntry struct {
	AliasName       string
	AliasArn        string
	TargetKeyId     string
	CreationDate    *epochTime
	LastUpdatedDate *epochTime
}

type listAliasesResp struct {
	Aliases    []aliasListEntry
	Truncated  bool
	NextMarker string `json:",omitempty"`
}

func (h *Handler) listAliases(c *call, body []byte) (any, *apiError) {
	var req listReq
	if e := decodeValid(body, &req, func(v *validator) {
		v.list(&req, 100)
		v.strLen("keyId", req.KeyId, 1, 2048)
	}); e != nil {
		return nil, e
	}
	after, limit, e := req.window(50)
	if e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	account, region, target := c.account, c.region, ""
	if req.KeyId != nil {
		k, e := h.resolve(c, *req.KeyId, keyOnly)
		if e != nil {
			return nil, e
		}
		account, region, target = k.Account, k.Region, k.ID
	}
	byName := map[string]*alias{}
	var names []string
	for ref, a := range h.st.aliases {
		if ref.account == account && ref.region == region && (target == "" || a.TargetID == target) {
			byName[a.Name] = a
			names = append(names, a.Name)
		}
	}
	sort.Strings(names)
	lo, hi, next := page(names, after, limit)
	resp := listAliasesResp{Aliases: []aliasListEntry{}, Truncated: next != "", NextMarker: next}
	for _, n := range names[lo:hi] {
		a := byName[n]
		resp.Aliases = append(resp.Aliases, aliasListEntry{
			AliasName: a.Name, AliasArn: a.arn(), TargetKeyId: a.TargetID,
			CreationDate: epoch(a.Created), LastUpdatedDate: epoch(a.Updated),
		})
	}
	return resp, nil
}

// --- cryptographic operations -------------------------------------------------

type encryptReq struct {
	KeyId               *string
	Plaintext           []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm *string
	GrantTokens         []string
	DryRun              *bool
}

type encryptResp struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

func (h *Handler) encrypt(c *call, body []byte) (any, *apiError) {
	var req encryptReq
	defer func() { clear(req.Plaintext) }()
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		if v.required("plaintext", req.Plaintext != nil) {
			v.length("plaintext", "", len(req.Plaintext), 1, 4096, false)
		}
		v.enum("encryptionAlgorithm", req.EncryptionAlgorithm, encryptionAlgorithms)
		v.grantTokens(req.GrantTokens)
	}); e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	k, e := h.authorized(c, *req.KeyId, keyOrName, "kms:Encrypt")
	if e != nil {
		return nil, e
	}
	if e := firstError(usable(k), checkAlgorithm(k, req.EncryptionAlgorithm)); e != nil {
		return nil, e
	}
	if isDryRun(req.DryRun) {
		return nil, dryRunError()
	}
	ct, _, e := sealUnder(k, req.Plaintext, req.EncryptionContext)
	if e != nil {
		return nil, e
	}
	return encryptResp{CiphertextBlob: ct, KeyId: k.arn(), EncryptionAlgorithm: symmetricDefault}, nil
}

// sealUnder encrypts plaintext under k's current key material, bound to
// the encryption context ec, and returns the ciphertext blob and the
// material used.
func sealUnder(k *key, plaintext []byte, ec map[string]string) ([]byte, *backingKey, *apiError) {
	ver, bk := k.current()
	ct, err := seal(k.arn(), ver, bk.Material, plaintext, ec)
	if err != nil {
		return nil, nil, errf(ErrKMSInternal, "encrypt: %v", err)
	}
	return ct, bk, nil
}

// openUnder decrypts blob b, of key k, with the key material it names and
// the encryption context ec, and returns the plaintext and the material
// used. Any failure is InvalidCiphertextException.
func openUnder(k *key, b blob, ec map[string]string) ([]byte, *backingKey, *apiError) {
	bk := k.version(b.version)
	if bk == nil {
		return nil, nil, invalidCiphertext()
	}
	pt, err := open(b, bk.Material, ec)
	if err != nil {
		return nil, nil, invalidCiphertext()
	}
	return pt, bk, nil
}

func firstError(es ...*apiError) *apiError {
	for _, e := range es {
		if e != nil {
			return e
		}
	}
	return nil
}

type decryptReq struct {
	CiphertextBlob      []byte
	KeyId               *string
	EncryptionContext   map[string]string
	EncryptionAlgorithm *string
	GrantTokens         []string
	DryRun              *bool
	DryRunModifiers     []string
	Recipient           json.RawMessage
}

type decryptResp struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
	KeyMaterialId       string
}

func (r *decryptResp) wipe() { clear(r.Plaintext) }

func validDryRunModifiers(v *validator, mods []string) bool {
	ignore := false
	for _, m := range mods {
		v.enum("dryRunModifiers.member", &m, dryRunModifiers)
		ignore = ignore || m == string(types.DryRunModifierTypeIgnoreCiphertext)
	}
	return ignore
}

// sourceKey finds the key that decrypts a ciphertext blob and checks it
// against the key the caller named, if any: the first step of Decrypt and
// ReEncrypt.
func (h *Handler) sourceKey(c *call, ct []byte, named *string, ignoreCiphertext bool) (*key, blob, *apiError) {
	if ignoreCiphertext {
		if named == nil {
			return nil, blob{}, errf(ErrValidation, "a KeyId is required when DryRunModifiers includes IGNORE_CIPHERTEXT")
		}
		k, e := h.resolve(c, *named, keyOrName)
		return k, blob{}, e
	}
	b, err := parseBlob(ct)
	if err != nil {
		return nil, blob{}, invalidCiphertext()
	}
	k, e := h.keyFromBlob(c, b)
	if e != nil {
		return nil, blob{}, e
	}
	if named != nil {
		nk, e := h.resolve(c, *named, keyOrName)
		if e != nil {
			return nil, blob{}, e
		}
		if nk != k {
			return nil, blob{}, errf(ErrIncorrectKey, "The key ID in the request does not identify a KMS key that can perform this operation.")
		}
	}
	return k, b, nil
}

func (h *Handler) decrypt(c *call, body []byte) (any, *apiError) {
	var req decryptReq
	var ignore bool // IGNORE_CIPHERTEXT in a dry run
	if e := decodeValid(body, &req, func(v *validator) {
		if v.required("ciphertextBlob", req.CiphertextBlob != nil) {
			v.length("ciphertextBlob", "", len(req.CiphertextBlob), 1, 6144, false)
		}
		v.strLen("keyId", req.KeyId, 1, 2048)
		v.enum("encryptionAlgorithm", req.EncryptionAlgorithm, encryptionAlgorithms)
		v.grantTokens(req.GrantTokens)
		ignore = validDryRunModifiers(v, req.DryRunModifiers) && isDryRun(req.DryRun)
	}); e != nil {
		return nil, e
	}
	if len(req.Recipient) > 0 && string(req.Recipient) != "null" {
		return nil, errf(ErrUnsupportedOperation, "Recipient (Nitro Enclaves attestation) is not supported by this test server")
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	k, b, e := h.sourceKey(c, req.CiphertextBlob, req.KeyId, ignore)
	if e != nil {
		return nil, e
	}
	if e := firstError(authorize(c, k, "kms:Decrypt"), usable(k), checkAlgorithm(k, req.EncryptionAlgorithm)); e != nil {
		return nil, e
	}
	if isDryRun(req.DryRun) {
		return nil, dryRunError()
	}
	pt, bk, e := openUnder(k, b, req.EncryptionContext)
	if e != nil {
		return nil, e
	}
	return &decryptResp{KeyId: k.arn(), Plaintext: pt, EncryptionAlgorithm: symmetricDefault, KeyMaterialId: bk.MaterialID}, nil
}

type reEncryptReq struct {
	CiphertextBlob                 []byte
	SourceEncryptionContext        map[string]string
	SourceKeyId                    *string
	DestinationKeyId               *string
	DestinationEncryptionContext   map[string]string
	SourceEncryptionAlgorithm      *string
	DestinationEncryptionAlgorithm *string
	GrantTokens                    []string
	DryRun                         *bool
	DryRunModifiers                []string
}

type reEncryptResp struct {
	CiphertextBlob                 []byte
	SourceKeyId                    string
	KeyId                          string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
	SourceKeyMaterialId            string `json:",omitempty"`
	DestinationKeyMaterialId       string
}

func (h *Handler) reEncrypt(c *call, body []byte) (any, *apiError) {
	var req reEncryptReq
	var ignore bool // IGNORE_CIPHERTEXT in a dry run
	if e := decodeValid(body, &req, func(v *validator) {
		if v.required("ciphertextBlob", req.CiphertextBlob != nil) {
			v.length("ciphertextBlob", "", len(req.CiphertextBlob), 1, 6144, false)
		}
		v.strLen("sourceKeyId", req.SourceKeyId, 1, 2048)
		keyIDValid(v, "destinationKeyId", req.DestinationKeyId)
		v.enum("sourceEncryptionAlgorithm", req.SourceEncryptionAlgorithm, encryptionAlgorithms)
		v.enum("destinationEncryptionAlgorithm", req.DestinationEncryptionAlgorithm, encryptionAlgorithms)
		v.grantTokens(req.GrantTokens)
		ignore = validDryRunModifiers(v, req.DryRunModifiers) && isDryRun(req.DryRun)
	}); e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	src, b, e := h.sourceKey(c, req.CiphertextBlob, req.SourceKeyId, ignore)
	if e != nil {
		return nil, e
	}
	dst, e := h.resolve(c, *req.DestinationKeyId, keyOrName)
	if e != nil {
		return nil, e
	}
	if e := firstError(
		authorize(c, src, "kms:ReEncryptFrom"), authorize(c, dst, "kms:ReEncryptTo"),
		usable(src), usable(dst),
		checkAlgorithm(src, req.SourceEncryptionAlgorithm), checkAlgorithm(dst, req.DestinationEncryptionAlgorithm),
	); e != nil {
		return nil, e
	}
	if isDryRun(req.DryRun) {
		return nil, dryRunError()
	}
	pt, sbk, e := openUnder(src, b, req.SourceEncryptionContext)
	if e != nil {
		return nil, e
	}
	defer clear(pt)
	ct, dbk, e := sealUnder(dst, pt, req.DestinationEncryptionContext)
	if e != nil {
		return nil, e
	}
	return reEncryptResp{
		CiphertextBlob:                 ct,
		SourceKeyId:                    src.arn(),
		KeyId:                          dst.arn(),
		SourceEncryptionAlgorithm:      symmetricDefault,
		DestinationEncryptionAlgorithm: symmetricDefault,
		SourceKeyMaterialId:            sbk.MaterialID,
		DestinationKeyMaterialId:       dbk.MaterialID,
	}, nil
}

type generateDataKeyReq struct {
	KeyId             *string
	EncryptionContext map[string]string
	NumberOfBytes     *int32
	KeySpec           *string
	GrantTokens       []string
	DryRun            *bool
	Recipient         json.RawMessage
}

type generateDataKeyResp struct {
	CiphertextBlob []byte
	Plaintext      []byte `json:",omitempty"`
	KeyId          string
	KeyMaterialId  string
}

func (r *generateDataKeyResp) wipe() { clear(r.Plaintext) }

func (h *Handler) generateDataKey(c *call, body []byte) (any, *apiError) {
	return h.generate(c, body, true)
}

func (h *Handler) generateDataKeyWithoutPlaintext(c *call, body []byte) (any, *apiError) {
	return h.generate(c, body, false)
}

func (h *Handler) generate(c *call, body []byte, withPlaintext bool) (any, *apiError) {
	var req generateDataKeyReq
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		v.intRange("numberOfBytes", req.NumberOfBytes, 1, 1024)
		v.enum("keySpec", req.KeySpec, dataKeySpecs)
		v.grantTokens(req.GrantTokens)
	}); e != nil {
		return nil, e
	}
	if (req.NumberOfBytes == nil) == (req.KeySpec == nil) {
		return nil, errf(ErrValidation, "Please specify either number of bytes or key spec.")
	}
	if len(req.Recipient) > 0 && string(req.Recipient) != "null" {
		return nil, errf(ErrUnsupportedOperation, "Recipient (Nitro Enclaves attestation) is not supported by this test server")
	}
	n := 32
	switch {
	case req.NumberOfBytes != nil:
		n = int(*req.NumberOfBytes)
	case *req.KeySpec == string(types.DataKeySpecAes128):
		n = 16
	}
	action := "kms:GenerateDataKey"
	if !withPlaintext {
		action = "kms:GenerateDataKeyWithoutPlaintext"
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	k, e := h.authorized(c, *req.KeyId, keyOrName, action)
	if e != nil {
		return nil, e
	}
	if e := usable(k); e != nil {
		return nil, e
	}
	if isDryRun(req.DryRun) {
		return nil, dryRunError()
	}
	pt := make([]byte, n)
	if _, err := rand.Read(pt); err != nil {
		return nil, errf(ErrKMSInternal, "generate data key: %v", err)
	}
	ct, bk, e := sealUnder(k, pt, req.EncryptionContext)
	if e != nil {
		clear(pt)
		return nil, e
	}
	resp := &generateDataKeyResp{CiphertextBlob: ct, KeyId: k.arn(), KeyMaterialId: bk.MaterialID}
	if withPlaintext {
		resp.Plaintext = pt
	} else {
		clear(pt)
	}
	return resp, nil
}

// --- rotation -------------------------------------------------------------------

type rotationReq struct {
	KeyId                *string
	RotationPeriodInDays *int32
}

// manageKey runs fn under the write lock on the key a key-ID-or-ARN request
// names, after the policy check for action, and persists the change.
func (h *Handler) manageKey(c *call, id string, action string, fn func(k *key) (any, *apiError)) (any, *apiError) {
	return h.mutate(func() (any, *apiError) {
		k, e := h.authorized(c, id, keyOnly, action)
		if e != nil {
			return nil, e
		}
		return fn(k)
	})
}

func (h *Handler) enableKeyRotation(c *call, body []byte) (any, *apiError) {
	var req rotationReq
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		v.intRange("rotationPeriodInDays", req.RotationPeriodInDays, 90, 2560)
	}); e != nil {
		return nil, e
	}
	return h.manageKey(c, *req.KeyId, "kms:EnableKeyRotation", func(k *key) (any, *apiError) {
		if e := usable(k); e != nil {
			return nil, e
		}
		days := int32(defaultRotationDays)
		if req.RotationPeriodInDays != nil {
			days = *req.RotationPeriodInDays
		}
		k.RotationEnabled = true
		k.RotationPeriodInDays = days
		k.NextRotation = c.now.AddDate(0, 0, int(days))
		return struct{}{}, nil
	})
}

func (h *Handler) disableKeyRotation(c *call, body []byte) (any, *apiError) {
	var req keyIDReq
	if e := decodeValid(body, &req, func(v *validator) { keyIDValid(v, "keyId", req.KeyId) }); e != nil {
		return nil, e
	}
	return h.manageKey(c, *req.KeyId, "kms:DisableKeyRotation", func(k *key) (any, *apiError) {
		if e := usable(k); e != nil {
			return nil, e
		}
		k.RotationEnabled = false
		k.RotationPeriodInDays = 0
		k.NextRotation = time.Time{}
		return struct{}{}, nil
	})
}

type rotationStatusResp struct {
	KeyId                string
	KeyRotationEnabled   bool
	RotationPeriodInDays *int32     `json:",omitempty"`
	NextRotationDate     *epochTime `json:",omitempty"`
}

func (h *Handler) getKeyRotationStatus(c *call, body []byte) (any, *apiError) {
	var req keyIDReq
	if e := decodeValid(body, &req, func(v *validator) { keyIDValid(v, "keyId", req.KeyId) }); e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	k, e := h.authorized(c, *req.KeyId, keyOnly, "kms:GetKeyRotationStatus")
	if e != nil {
		return nil, e
	}
	resp := rotationStatusResp{KeyId: k.arn(), KeyRotationEnabled: k.RotationEnabled}
	if k.RotationEnabled {
		p := k.RotationPeriodInDays
		resp.RotationPeriodInDays = &p
		resp.NextRotationDate = epoch(k.NextRotation)
	}
	return resp, nil
}

type keyIDResp struct{ KeyId string }

func (h *Handler) rotateKeyOnDemand(c *call, body []byte) (any, *apiError) {
	var req keyIDReq
	if e := decodeValid(body, &req, func(v *validator) { keyIDValid(v, "keyId", req.KeyId) }); e != nil {
		return nil, e
	}
	return h.manageKey(c, *req.KeyId, "kms:RotateKeyOnDemand", func(k *key) (any, *apiError) {
		if e := usable(k); e != nil {
			return nil, e
		}
		if k.OnDemandRotations >= maxOnDemandRotation {
			return nil, errf(ErrLimitExceeded, "%s has reached the limit of %d on-demand rotations", k.arn(), maxOnDemandRotation)
		}
		bk, err := newBackingKey(nil, c.now)
		if err != nil {
			return nil, errf(ErrKMSInternal, "generate key material: %v", err)
		}
		k.Versions = append(k.Versions, bk)
		k.OnDemandRotations++
		return keyIDResp{k.arn()}, nil
	})
}

// --- key state ------------------------------------------------------------------

func (h *Handler) disableKey(c *call, body []byte) (any, *apiError) {
	return h.setEnabled(c, body, false)
}

func (h *Handler) enableKey(c *call, body []byte) (any, *apiError) {
	return h.setEnabled(c, body, true)
}

func (h *Handler) setEnabled(c *call, body []byte, enabled bool) (any, *apiError) {
	var req keyIDReq
	if e := decodeValid(body, &req, func(v *validator) { keyIDValid(v, "keyId", req.KeyId) }); e != nil {
		return nil, e
	}
	action, state := "kms:DisableKey", stateDisabled
	if enabled {
		action, state = "kms:EnableKey", stateEnabled
	}
	return h.manageKey(c, *req.KeyId, action, func(k *key) (any, *apiError) {
		if e := notPendingDeletion(k); e != nil {
			return nil, e
		}
		k.State = state
		return struct{}{}, nil
	})
}

type scheduleDeletionReq struct {
	KeyId               *string
	PendingWindowInDays *int32
}

type scheduleDeletionResp struct {
	KeyId               string
	DeletionDate        *epochTime
	KeyState            string
	PendingWindowInDays int32
}

func (h *Handler) scheduleKeyDeletion(c *call, body []byte) (any, *apiError) {
	var req scheduleDeletionReq
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		v.intRange("pendingWindowInDays", req.PendingWindowInDays, 7, 30)
	}); e != nil {
		return nil, e
	}
	days := int32(30)
	if req.PendingWindowInDays != nil {
		days = *req.PendingWindowInDays
	}
	return h.manageKey(c, *req.KeyId, "kms:ScheduleKeyDeletion", func(k *key) (any, *apiError) {
		if e := notPendingDeletion(k); e != nil {
			return nil, e
		}
		k.State = statePendingDeletion
		k.PendingWindowInDays = days
		k.DeletionDate = c.now.AddDate(0, 0, int(days))
		return scheduleDeletionResp{KeyId: k.arn(), DeletionDate: epoch(k.DeletionDate), KeyState: k.State, PendingWindowInDays: days}, nil
	})
}

func (h *Handler) cancelKeyDeletion(c *call, body []byte) (any, *apiError) {
	var req keyIDReq
	if e := decodeValid(body, &req, func(v *validator) { keyIDValid(v, "keyId", req.KeyId) }); e != nil {
		return nil, e
	}
	return h.manageKey(c, *req.KeyId, "kms:CancelKeyDeletion", func(k *key) (any, *apiError) {
		if k.State != statePendingDeletion {
			return nil, errf(ErrKMSInvalidState, "%s is not pending deletion.", k.arn())
		}
		k.State = stateDisabled
		k.DeletionDate = time.Time{}
		k.PendingWindowInDays = 0
		return keyIDResp{k.arn()}, nil
	})
}

// --- key policy -------------------------------------------------------------------

type policyReq struct {
	KeyId                          *string
	PolicyName                     *string
	Policy                         *string
	BypassPolicyLockoutSafetyCheck bool
}

func checkPolicyName(v *validator, name *string) {
	v.strLen("policyName", name, 1, 128)
	if name != nil && len(*name) > 0 && *name != "default" {
		v.add("'"+*name+"'", "policyName", "be 'default', the only policy name KMS supports")
	}
}

func (h *Handler) putKeyPolicy(c *call, body []byte) (any, *apiError) {
	var req policyReq
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		if v.required("policy", req.Policy != nil) {
			v.strLen("policy", req.Policy, 1, 131072)
		}
		checkPolicyName(v, req.PolicyName)
	}); e != nil {
		return nil, e
	}
	pd, err := parsePolicy(*req.Policy)
	if err != nil {
		return nil, errf(ErrMalformedPolicy, "%v", err)
	}
	return h.manageKey(c, *req.KeyId, "kms:PutKeyPolicy", func(k *key) (any, *apiError) {
		if e := lockoutCheck(c, pd, k.arn(), req.BypassPolicyLockoutSafetyCheck); e != nil {
			return nil, e
		}
		k.Policy, k.policy = *req.Policy, pd
		return struct{}{}, nil
	})
}

type getPolicyResp struct {
	Policy     string
	PolicyName string
}

func (h *Handler) getKeyPolicy(c *call, body []byte) (any, *apiError) {
	var req policyReq
	if e := decodeValid(body, &req, func(v *validator) {
		keyIDValid(v, "keyId", req.KeyId)
		checkPolicyName(v, req.PolicyName)
	}); e != nil {
		return nil, e
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	k, e := h.authorized(c, *req.KeyId, keyOnly, "kms:GetKeyPolicy")
	if e != nil {
		return nil, e
	}
	return getPolicyResp{Policy: k.Policy, PolicyName: "default"}, nil
}
