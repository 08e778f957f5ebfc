package kmsserver

import (
	"strings"
)

// idForms says which forms of key identifier an operation accepts.
type idForms int

const (
	keyOnly   idForms = iota // key ID or key ARN (management operations)
	keyOrName                // also alias name and alias ARN (cryptographic operations, DescribeKey)
)

// parsedARN is a KMS ARN: arn:aws:kms:REGION:ACCOUNT:key/ID or
// arn:aws:kms:REGION:ACCOUNT:alias/NAME (the server lives in the aws
// partition only).
type parsedARN struct {
	region, account string
	keyID           string // for key ARNs
	alias           string // "alias/NAME" for alias ARNs
}

func parseARN(s string) (parsedARN, bool) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] != "aws" || parts[2] != "kms" {
		return parsedARN{}, false
	}
	a := parsedARN{region: parts[3], account: parts[4]}
	if !regionPattern.MatchString(a.region) || !accountPattern.MatchString(a.account) {
		return parsedARN{}, false
	}
	switch res := parts[5]; {
	case strings.HasPrefix(res, "key/") && keyIDPattern.MatchString(res[len("key/"):]):
		a.keyID = res[len("key/"):]
	case strings.HasPrefix(res, "alias/") && len(res) > len("alias/"):
		a.alias = res
	default:
		return parsedARN{}, false
	}
	return a, true
}

// resolve finds the key an identifier names, as KMS does: a bare key ID or
// alias name in the caller's account and region, an ARN anywhere (other
// regions only with AllowCrossRegion). h.mu must be held.
func (h *Handler) resolve(c *call, id string, forms idForms) (*key, *apiError) {
	switch {
	case strings.HasPrefix(id, "arn:"):
		a, ok := parseARN(id)
		if !ok {
			return nil, errf(ErrNotFound, "Invalid arn %s", id)
		}
		if a.region != c.region && !h.allowCrossRegion {
			return nil, errf(ErrNotFound, "Invalid arn %s (the request was sent to region %s; KMS keys are regional, call the KMS endpoint of region %s)", a.region, c.region, a.region)
		}
		if a.alias != "" {
			if forms == keyOnly {
				return nil, errf(ErrNotFound, "Invalid keyId %s: this operation takes a key ID or key ARN, not an alias", id)
			}
			return h.resolveAlias(a.account, a.region, a.alias)
		}
		k := h.st.lookupKey(a.account, a.region, a.keyID)
		if k == nil {
			return nil, errf(ErrNotFound, "Key '%s' does not exist", id)
		}
		return k, nil
	case strings.HasPrefix(id, "alias/"):
		if forms == keyOnly {
			return nil, errf(ErrNotFound, "Invalid keyId %s: this operation takes a key ID or key ARN, not an alias", id)
		}
		return h.resolveAlias(c.account, c.region, id)
	case keyIDPattern.MatchString(id):
		k := h.st.lookupKey(c.account, c.region, id)
		if k == nil {
			return nil, errf(ErrNotFound, "Key '%s' does not exist", keyARN(c.account, c.region, id))
		}
		return k, nil
	}
	return nil, errf(ErrNotFound, "Invalid keyId %s", id)
}

func (h *Handler) resolveAlias(account, region, name string) (*key, *apiError) {
	a := h.st.aliases[aliasRef{account, region, name}]
	if a == nil {
		return nil, errf(ErrNotFound, "Alias %s is not found.", aliasARN(account, region, name))
	}
	k := h.st.lookupKey(a.Account, a.Region, a.TargetID)
	if k == nil {
		return nil, errf(ErrNotFound, "Alias %s is not found.", a.arn())
	}
	return k, nil
}

// keyFromBlob finds the key a ciphertext blob names.
func (h *Handler) keyFromBlob(c *call, b blob) (*key, *apiError) {
	a, ok := parseARN(b.keyARN)
	if !ok || a.keyID == "" {
		return nil, errf(ErrInvalidCiphertext, "the ciphertext refers to a key that is not valid")
	}
	if a.region != c.region && !h.allowCrossRegion {
		return nil, errf(ErrInvalidCiphertext, "the ciphertext was produced in region %s but the request was sent to region %s: decrypt it with the KMS endpoint of region %s", a.region, c.region, a.region)
	}
	k := h.st.lookupKey(a.account, a.region, a.keyID)
	if k == nil {
		return nil, errf(ErrNotFound, "Key '%s' does not exist", b.keyARN)
	}
	return k, nil
}

// usable checks that a key's state allows cryptographic operations (and the
// rotation operations, which fail the same way).
func usable(k *key) *apiError {
	switch k.State {
	case stateDisabled:
		return errf(ErrDisabled, "%s is disabled.", k.arn())
	case statePendingDeletion:
		return errf(ErrKMSInvalidState, "%s is pending deletion.", k.arn())
	}
	return nil
}

// notPendingDeletion checks the state for operations that work on disabled
// keys but not on keys pending deletion.
func notPendingDeletion(k *key) *apiError {
	if k.State == statePendingDeletion {
		return errf(ErrKMSInvalidState, "%s is pending deletion.", k.arn())
	}
	return nil
}

// authorize fails with AccessDeniedException when the key policy denies
// the caller the action on k: explicitly (a Deny statement), or implicitly
// (the policy has Allow statements and none grants it), with the messages
// KMS gives.
func authorize(c *call, k *key, action string) *apiError {
	switch k.policy.decide(c.caller(), action, k.arn()) {
	case deniedExplicit:
		return errf(ErrAccessDenied, "User: %s is not authorized to perform: %s on resource: %s with an explicit deny in a resource-based policy", c.principalARN(), action, k.arn())
	case deniedImplicit:
		return errf(ErrAccessDenied, "User: %s is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action", c.principalARN(), action, k.arn(), action)
	}
	return nil
}
