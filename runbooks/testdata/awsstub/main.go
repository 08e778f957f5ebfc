// Command awsstub stands in for the AWS CLI in the runbook tests: the test
// machines have no AWS CLI that honours AWS_ENDPOINT_URL_KMS. It accepts
// exactly the commands the runbooks use, in the AWS CLI's syntax, and
// refuses anything else (exit 252, as the CLI does for bad arguments), so a
// runbook cannot drift to a command nobody checked. KMS commands are
// carried out against the local KMS test server through the Go SDK; `iam
// put-role-policy` checks that the document is a policy (it has no IAM to
// talk to) and changes nothing.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "aws (awsstub): %v\n", err)
		os.Exit(252)
	}
}

// flags parses --name value pairs, each of the allowed names at most once;
// required names must be there.
func flags(args []string, allowed, required []string) (map[string]string, error) {
	out := map[string]string{}
	for i := 0; i < len(args); i += 2 {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok || i+1 >= len(args) {
			return nil, fmt.Errorf("unexpected argument %q", args[i])
		}
		found := false
		for _, a := range allowed {
			found = found || a == name
		}
		if !found {
			return nil, fmt.Errorf("option --%s is not one the runbooks use", name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--%s given twice", name)
		}
		out[name] = args[i+1]
	}
	for _, r := range required {
		if _, ok := out[r]; !ok {
			return nil, fmt.Errorf("--%s is required", r)
		}
	}
	return out, nil
}

// printQuery prints what --query selects of a key's metadata with --output
// text.
func printQuery(f map[string]string, md map[string]string) error {
	q, ok := f["query"]
	if !ok {
		return nil
	}
	if f["output"] != "text" {
		return fmt.Errorf("--query needs --output text here")
	}
	v, ok := md[q]
	if !ok {
		return fmt.Errorf("--query %s is not one the runbooks use", q)
	}
	fmt.Println(v)
	return nil
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: aws SERVICE COMMAND [options]")
	}
	ctx := context.Background()
	service, cmd, rest := args[0], args[1], args[2:]
	if service == "iam" && cmd == "put-role-policy" {
		f, err := flags(rest, []string{"role-name", "policy-name", "policy-document"}, []string{"role-name", "policy-name", "policy-document"})
		if err != nil {
			return err
		}
		return checkPolicy(f["policy-document"])
	}
	if service != "kms" {
		return fmt.Errorf("%s %s is not a command the runbooks use", service, cmd)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	c := kms.NewFromConfig(cfg)
	meta := func(id string) (map[string]string, error) {
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			return nil, err
		}
		md := out.KeyMetadata
		return map[string]string{"KeyMetadata.Arn": *md.Arn, "KeyMetadata.KeyId": *md.KeyId, "KeyMetadata.KeyState": string(md.KeyState)}, nil
	}
	switch cmd {
	case "create-key":
		f, err := flags(rest, []string{"description", "query", "output"}, []string{"description"})
		if err != nil {
			return err
		}
		out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(f["description"])})
		if err != nil {
			return err
		}
		md, err := meta(*out.KeyMetadata.Arn)
		if err != nil {
			return err
		}
		return printQuery(f, md)
	case "describe-key":
		f, err := flags(rest, []string{"key-id", "query", "output"}, []string{"key-id"})
		if err != nil {
			return err
		}
		md, err := meta(f["key-id"])
		if err != nil {
			return err
		}
		return printQuery(f, md)
	case "enable-key", "disable-key", "enable-key-rotation":
		f, err := flags(rest, []string{"key-id"}, []string{"key-id"})
		if err != nil {
			return err
		}
		switch cmd {
		case "enable-key":
			_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(f["key-id"])})
		case "disable-key":
			_, err = c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(f["key-id"])})
		default:
			_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(f["key-id"])})
		}
		return err
	case "create-alias":
		f, err := flags(rest, []string{"alias-name", "target-key-id"}, []string{"alias-name", "target-key-id"})
		if err != nil {
			return err
		}
		_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(f["alias-name"]), TargetKeyId: aws.String(f["target-key-id"])})
		return err
	}
	return fmt.Errorf("kms %s is not a command the runbooks use", cmd)
}

// checkPolicy checks that file://PATH holds an IAM policy document.
func checkPolicy(doc string) error {
	path, ok := strings.CutPrefix(doc, "file://")
	if !ok {
		return fmt.Errorf("--policy-document: want file://PATH")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var p struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   []string
			Resource []string
		}
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("MalformedPolicyDocument: %v", err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		return fmt.Errorf("MalformedPolicyDocument: want Version 2012-10-17 and statements")
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" || len(s.Action) == 0 || len(s.Resource) == 0 {
			return fmt.Errorf("MalformedPolicyDocument: statement %d lacks an effect, actions or resources", i)
		}
	}
	return nil
}
