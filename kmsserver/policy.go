package kmsserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// policyDoc is the part of an IAM-style key policy the server evaluates.
type policyDoc struct {
	Statement statements
}

type statement struct {
	Sid          string
	Effect       string
	Principal    json.RawMessage
	NotPrincipal json.RawMessage
	Action       stringList
	NotAction    stringList
	Resource     stringList
	NotResource  stringList
	Condition    json.RawMessage
}

// statements accepts a single statement object or a list of them.
type statements []statement

func (s *statements) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var one statement
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = statements{one}
		return nil
	}
	var many []statement
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// stringList accepts a string or a list of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

// parsePolicy checks that a policy document is well formed enough to
// evaluate.
func parsePolicy(doc string) (*policyDoc, error) {
	var p policyDoc
	dec := json.NewDecoder(strings.NewReader(doc))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy is not valid JSON: %v", err)
	}
	// Only JSON's white space may follow the document. (dec.More is
	// false before a closing bracket, so it would let "{...}}" through.)
	if rest := strings.TrimLeft(doc[dec.InputOffset():], " \t\r\n"); rest != "" {
		return nil, errors.New("policy is not valid JSON: trailing data")
	}
	if len(p.Statement) == 0 {
		return nil, errors.New("policy has no statement")
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, fmt.Errorf("statement %d: Effect must be Allow or Deny, not %q", i, s.Effect)
		}
		if (len(s.Action) == 0) == (len(s.NotAction) == 0) {
			return nil, fmt.Errorf("statement %d: exactly one of Action and NotAction is required", i)
		}
		if len(s.Principal) > 0 && len(s.NotPrincipal) > 0 {
			return nil, fmt.Errorf("statement %d: Principal and NotPrincipal are exclusive", i)
		}
		if _, err := principals(s.Principal); err != nil {
			return nil, fmt.Errorf("statement %d: Principal: %v", i, err)
		}
		if _, err := principals(s.NotPrincipal); err != nil {
			return nil, fmt.Errorf("statement %d: NotPrincipal: %v", i, err)
		}
	}
	return &p, nil
}

// caller identifies who sends a request, for matching policy principals.
type caller struct {
	account string
	arn     string
}

// verdict is what a key policy says of one request.
type verdict int

const (
	allowed        verdict = iota
	deniedExplicit         // a Deny statement applies
	deniedImplicit         // the policy has Allow statements and none applies
)

// decide evaluates p for the caller performing action (for example
// "kms:Decrypt") on resource (a key ARN), as AWS evaluates a key policy:
// an applicable Deny statement denies; an applicable Allow allows. When
// none applies, a policy with Allow statements denies (the implicit deny),
// unless one of them grants an account's root: such a statement hands the
// decision to that account's IAM policies, which the server does not
// model, so it allows (KMS's default policy, and cross-account keys, keep
// working). A policy made of Deny statements only allows everything it does
// not deny. Conditions are ignored: a Deny with a Condition applies
// unconditionally, and so does an Allow.
func (p *policyDoc) decide(c caller, action, resource string) verdict {
	if p == nil {
		return allowed
	}
	hasAllow, allows, delegates := false, false, false
	for _, s := range p.Statement {
		if s.Effect == "Allow" {
			hasAllow = true
			delegates = delegates || grantsAccountRoot(s.Principal)
		}
		if !s.applies(c, action, resource) {
			continue
		}
		if s.Effect == "Deny" {
			return deniedExplicit
		}
		allows = true
	}
	if hasAllow && !allows && !delegates {
		return deniedImplicit
	}
	return allowed
}

// grantsAccountRoot reports whether a Principal names an account (its ID
// or its root ARN): the statement delegates to that account's IAM.
func grantsAccountRoot(raw json.RawMessage) bool {
	ps, err := principals(raw)
	if err != nil {
		return false
	}
	for _, p := range ps {
		if isAccountID(p) || strings.HasPrefix(p, "arn:aws:iam::") && strings.HasSuffix(p, ":root") {
			return true
		}
	}
	return false
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// denies reports whether an explicit Deny statement of p applies to the
// caller performing action on resource.
func (p *policyDoc) denies(c caller, action, resource string) bool {
	return p.decide(c, action, resource) == deniedExplicit
}

// applies reports whether s concerns the caller performing action on
// resource, whatever its effect.
func (s *statement) applies(c caller, action, resource string) bool {
	if len(s.Action) > 0 && !anyMatch(s.Action, action, true) {
		return false
	}
	if len(s.NotAction) > 0 && anyMatch(s.NotAction, action, true) {
		return false
	}
	if len(s.Resource) > 0 && !anyMatch(s.Resource, resource, false) {
		return false
	}
	if len(s.NotResource) > 0 && anyMatch(s.NotResource, resource, false) {
		return false
	}
	if len(s.NotPrincipal) > 0 {
		return !principalMatches(s.NotPrincipal, c)
	}
	return len(s.Principal) == 0 || principalMatches(s.Principal, c)
}

func anyMatch(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			if glob(strings.ToLower(p), strings.ToLower(s)) {
				return true
			}
		} else if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern where * matches any run of characters
// and ? any single character, as IAM does.
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// principals lists the AWS principals of a Principal element: "*" for
// everyone; values of other principal types (Service, Federated) are
// returned with their type as prefix so they never match a caller.
func principals(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		if s != "*" {
			return nil, fmt.Errorf("a string principal must be \"*\", not %q", s)
		}
		return []string{"*"}, nil
	}
	var m map[string]stringList
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	var out []string
	for typ, vals := range m {
		for _, v := range vals {
			if typ == "AWS" {
				out = append(out, v)
			} else {
				out = append(out, typ+":"+v)
			}
		}
	}
	return out, nil
}

func principalMatches(raw json.RawMessage, c caller) bool {
	ps, err := principals(raw)
	if err != nil {
		return false
	}
	for _, p := range ps {
		if p == "*" || p == c.account || p == c.arn || p == "arn:aws:iam::"+c.account+":root" {
			return true
		}
	}
	return false
}

// defaultPolicy is the key policy KMS gives a key created without one.
func defaultPolicy(account string) string {
	return `{
  "Version" : "2012-10-17",
  "Id" : "key-default-1",
  "Statement" : [ {
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {
      "AWS" : "arn:aws:iam::` + account + `:root"
    },
    "Action" : "kms:*",
    "Resource" : "*"
  } ]
}`
}
