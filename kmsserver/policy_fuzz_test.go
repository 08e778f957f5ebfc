package kmsserver

import (
	"encoding/json"
	"testing"
)

// FuzzParsePolicy parses arbitrary strings as key policies (never a
// panic). A policy it accepts is one well-formed JSON document, as KMS
// requires (MalformedPolicyDocumentException otherwise), with at least
// one statement, each with Effect Allow or Deny, exactly one of Action
// and NotAction, at most one of Principal and NotPrincipal, and readable
// principals. Evaluating it never panics and gives the verdict its rules
// describe: denied explicitly exactly when a Deny statement applies,
// denied implicitly only when it has Allow statements, none of which
// applies or delegates to an account's root.
//
// It found a document followed by '}' or ']' and anything after it
// (`{"Statement":...}]garbage`) accepted: dec.More does not see trailing
// data that starts with a closing bracket.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		defaultPolicy("111122223333"),
		`{"Version":"2012-10-17","Statement":[{"Sid":"me","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/me"},` +
			`"Action":["kms:ReEncrypt*","kms:DescribeKey"],"Resource":"*"},{"Effect":"Deny","NotPrincipal":{"AWS":["111122223333"]},` +
			`"NotAction":"kms:Get*","NotResource":"arn:aws:kms:*:444455556666:key/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`,
		`{"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*"}}`,
		`{"Statement":{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com","AWS":"*"},"Action":"kms:?ecrypt"}}`,
		``, `[]`, `{}`, `null`, `{"Statement":[]}`, `{"Statement":{"Effect":"Deny"}}`,
		`{"Statement":{"Effect":"Deny","Action":"a","NotAction":"b"}}`, `{"Statement":{"Effect":"deny","Action":"a"}}`,
		`{"Statement":{"Effect":"Deny","Action":"a","Principal":"me"}}`, `{"Statement":{"Effect":"Deny","Action":7}}`,
		`{"Statement":{"Effect":"Deny","Action":"a"}} {}`, `{"Statement":{"Effect":"Deny","Action":"a"}}]garbage`, `{"Statement":{"Effect":"Deny","Action":"a"}}}`,
		"{\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"a\"}} \r\n\t", "{\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"a\"}}\v",
		"{\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"a\"}}\u00a0", `{"Statement":{"Effect":"Deny","Action":"a","Principal":"*","NotPrincipal":"*"}}`,
		`{"statement":{"effect":"Allow","action":"kms:*","principal":{"AWS":[]}}}`,
	} {
		f.Add(s, "kms:Decrypt")
	}
	callers := []caller{
		{account: "111122223333", arn: "arn:aws:iam::111122223333:user/me"},
		{account: "444455556666", arn: "arn:aws:iam::444455556666:role/other"},
	}
	f.Fuzz(func(t *testing.T, doc, action string) {
		p, err := parsePolicy(doc)
		if err != nil {
			if p != nil {
				t.Fatalf("parsePolicy(%q) failed (%v) with a policy", doc, err)
			}
			return
		}
		if !json.Valid([]byte(doc)) {
			t.Fatalf("parsePolicy accepted %q, which is not one JSON document", doc)
		}
		if len(p.Statement) == 0 {
			t.Fatalf("parsePolicy(%q): no statement", doc)
		}
		hasAllow := false
		for i, s := range p.Statement {
			_, err1 := principals(s.Principal)
			_, err2 := principals(s.NotPrincipal)
			if s.Effect != "Allow" && s.Effect != "Deny" || (len(s.Action) == 0) == (len(s.NotAction) == 0) ||
				len(s.Principal) > 0 && len(s.NotPrincipal) > 0 || err1 != nil || err2 != nil {
				t.Fatalf("parsePolicy(%q): statement %d is not one to evaluate: %+v", doc, i, s)
			}
			hasAllow = hasAllow || s.Effect == "Allow"
		}
		for _, c := range callers {
			for _, a := range []string{action, "kms:Decrypt", "kms:PutKeyPolicy"} {
				for _, r := range []string{testARN, "arn:aws:kms:us-east-1:444455556666:key/k"} {
					v := p.decide(c, a, r)
					var denies, applies, delegates bool
					for i := range p.Statement {
						s := &p.Statement[i]
						ok := s.applies(c, a, r)
						denies = denies || ok && s.Effect == "Deny"
						applies = applies || ok && s.Effect == "Allow"
						delegates = delegates || s.Effect == "Allow" && grantsAccountRoot(s.Principal)
					}
					want := allowed
					switch {
					case denies:
						want = deniedExplicit
					case hasAllow && !applies && !delegates:
						want = deniedImplicit
					}
					if v != want || p.denies(c, a, r) != (v == deniedExplicit) {
						t.Fatalf("policy %q, %+v doing %q on %s: verdict %d, want %d", doc, c, a, r, v, want)
					}
				}
			}
		}
	})
}
