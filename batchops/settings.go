package batchops

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rotator-dev/rotator/pipeline"
)

// A setting is read from a job's userArguments (schema 2.0) under Arg, and
// from the function's environment under Env.
type setting struct {
	Arg, Env, Help string
}

// settings is every setting, in the order docs/batch-operations.md lists
// them. userArguments hold at most 10 pairs, keys of 1 to 64 characters
// and values of at most 1,024.
var settings = []setting{
	{"to", "ROTATOR_TO", "the target key spec (kms:ARN-or-alias, pkcs11:...)"},
	{"from", "ROTATOR_FROM", "the keys objects are rotated from, comma-separated key specs"},
	{"mode", "ROTATOR_MODE", "rewrap (default) or reencrypt"},
	{"format", "ROTATOR_FORMAT", "reencrypt only: v3 upgrades to key-committing content"},
	{"ledger", "ROTATOR_LEDGER", "dynamodb://TABLE"},
	{"runId", "ROTATOR_RUN_ID", "the run's id in the ledger (default batchops-JOBID)"},
	{"manifest", "ROTATOR_MANIFEST", "the job's CSV manifest (s3://bucket/key), recorded so that 'rotator resume' can go over it"},
	{"kmsRps", "ROTATOR_KMS_RPS", "KMS requests per second for this execution environment"},
	{"expectedBucketOwner", "ROTATOR_EXPECTED_BUCKET_OWNER", "the account id every bucket must belong to"},
}

// Settings are a job's settings, resolved.
type Settings struct {
	To, Mode, Format, Ledger, RunID, Manifest, ExpectedBucketOwner string
	From                                                           []string
	KMSRPS                                                         float64
}

// Resolve reads the settings of job jobID from getenv and userArgs (nil
// for schema 1.0). A userArgument that the environment also sets must
// have the same value; an unknown userArgument is refused (a typo would
// otherwise go unnoticed).
func Resolve(getenv func(string) string, userArgs map[string]string, jobID string) (Settings, error) {
	known := map[string]bool{}
	vals := map[string]string{}
	for _, s := range settings {
		known[s.Arg] = true
		env := strings.TrimSpace(getenv(s.Env))
		arg, inArgs := userArgs[s.Arg]
		arg = strings.TrimSpace(arg)
		switch {
		case inArgs && env != "" && arg != env:
			return Settings{}, fmt.Errorf("userArguments %s=%q contradicts the function's %s=%q (hint: drop %s from the job, or change the function's environment)",
				s.Arg, arg, s.Env, env, s.Arg)
		case env != "":
			vals[s.Arg] = env
		case inArgs:
			vals[s.Arg] = arg
		}
	}
	var unknown []string
	for k := range userArgs {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return Settings{}, fmt.Errorf("unknown userArguments %s (hint: rotator reads %s)", strings.Join(unknown, ", "), argNames())
	}
	st := Settings{To: vals["to"], Mode: vals["mode"], Format: vals["format"], Ledger: vals["ledger"], RunID: vals["runId"],
		Manifest: vals["manifest"], ExpectedBucketOwner: vals["expectedBucketOwner"]}
	for _, f := range strings.Split(vals["from"], ",") {
		if f = strings.TrimSpace(f); f != "" {
			st.From = append(st.From, f)
		}
	}
	if v := vals["kmsRps"]; v != "" {
		rps, err := strconv.ParseFloat(v, 64)
		if err != nil || rps < 0 {
			return Settings{}, fmt.Errorf("kmsRps %q: want a number of requests per second", v)
		}
		st.KMSRPS = rps
	}
	if st.RunID == "" {
		if jobID == "" {
			return Settings{}, errors.New("the invocation names no job id: set the run id (runId, or ROTATOR_RUN_ID)")
		}
		st.RunID = "batchops-" + jobID
	}
	if st.To == "" {
		return Settings{}, errors.New("no target key: set to (userArguments, schema 2.0) or ROTATOR_TO (the function's environment), e.g. kms:alias/data-2026")
	}
	if !strings.HasPrefix(st.Ledger, "dynamodb://") {
		return Settings{}, fmt.Errorf("ledger %q: the handler needs a DynamoDB ledger (dynamodb://TABLE): Lambda's execution environments share no disk for the embedded one", st.Ledger)
	}
	return st, nil
}

func argNames() string {
	n := make([]string, len(settings))
	for i, s := range settings {
		n[i] = s.Arg
	}
	return strings.Join(n, ", ")
}

// Config is the run configuration of st, as the ledger's run record keeps
// it. Its list is the job's manifest when one was named; otherwise a name
// that tells where the objects came from (a resume then cannot list them
// again, but settles what the run left).
func (st Settings) Config(jobID string) (pipeline.Config, error) {
	cfg := pipeline.Config{
		List: st.Manifest, To: st.To, From: st.From, Mode: pipeline.Mode(st.Mode), Format: st.Format,
		Ledger: st.Ledger, KMSRPS: st.KMSRPS, ExpectedBucketOwner: st.ExpectedBucketOwner, Concurrency: 1,
	}
	if cfg.List == "" {
		cfg.List = "s3-batch-operations-job:" + jobID
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}
