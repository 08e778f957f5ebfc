package iampolicy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Version is the IAM policy language version every policy states.
const Version = "2012-10-17"

// Policy is an IAM identity policy document.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Condition is an IAM condition block: operator -> key -> values.
type Condition map[string]map[string][]string

// Statement is one Allow statement.
type Statement struct {
	Sid       string    `json:"Sid"`
	Effect    string    `json:"Effect"`
	Action    []string  `json:"Action"`
	Resource  []string  `json:"Resource"`
	Condition Condition `json:"Condition,omitempty"`
}

// JSON returns the policy as indented JSON with a final newline.
func (p *Policy) JSON() []byte {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		panic(err) // only strings, slices and maps
	}
	return append(b, '\n')
}

// Actions returns every action of the policy, sorted, each once.
func (p *Policy) Actions() []string {
	var out []string
	for _, s := range p.Statement {
		out = append(out, s.Action...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ActionsOf returns the actions of the policy's statements for one service
// prefix ("kms", "s3", "dynamodb"), sorted, each once.
func (p *Policy) ActionsOf(service string) []string {
	var out []string
	for _, a := range p.Actions() {
		if strings.HasPrefix(a, service+":") {
			out = append(out, a)
		}
	}
	return out
}

// Allows reports whether a statement of p allows action on resource,
// matching wildcards as IAM does and ignoring conditions.
func (p *Policy) Allows(action, resource string) bool {
	for _, s := range p.Statement {
		if s.Effect != "Allow" || !slices.ContainsFunc(s.Action, func(a string) bool { return Match(a, action, true) }) {
			continue
		}
		if slices.ContainsFunc(s.Resource, func(r string) bool { return Match(r, resource, false) }) {
			return true
		}
	}
	return false
}

// Without returns a copy of p without action (in every statement); a
// statement left without actions is dropped.
func (p *Policy) Without(action string) *Policy {
	q := &Policy{Version: p.Version}
	for _, s := range p.Statement {
		s.Action = slices.DeleteFunc(slices.Clone(s.Action), func(a string) bool { return a == action })
		if len(s.Action) > 0 {
			q.Statement = append(q.Statement, s)
		}
	}
	return q
}

// Match matches s against an IAM pattern where * matches any run of
// characters and ? one character; fold compares without case (actions).
func Match(pattern, s string, fold bool) bool {
	if fold {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	}
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

// builder collects statements, merging those with the same Sid.
type builder struct {
	stmts []Statement
}

func (b *builder) add(sid string, actions, resources []string, cond Condition) {
	for i := range b.stmts {
		s := &b.stmts[i]
		if s.Sid == sid && fmt.Sprint(s.Condition) == fmt.Sprint(cond) {
			s.Action = sortedSet(append(s.Action, actions...))
			s.Resource = sortedSet(append(s.Resource, resources...))
			return
		}
	}
	b.stmts = append(b.stmts, Statement{Sid: sid, Effect: "Allow", Action: sortedSet(actions), Resource: sortedSet(resources), Condition: cond})
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
