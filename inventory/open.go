package inventory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Spec is the CLI's choice of source: exactly one of Source, Inventory and
// List.
type Spec struct {
	// Source is --source s3://BUCKET[/PREFIX]: a Listing.
	Source string
	// Inventory is --inventory s3://BUCKET/PATH/manifest.json: an S3
	// Inventory report.
	Inventory string
	// List is --list FILE or s3://BUCKET/KEY: a CSVList.
	List string
	// AllVersions is --all-versions: every version and delete marker of a
	// listing or a report. A list names its versions itself.
	AllVersions bool
	// FanOutDepth and Delimiter: the fan-out of a listing (Listing.Depth,
	// Listing.Delimiter).
	FanOutDepth int
	Delimiter   string
	// MaxKeys is the page size of a listing (0: the server's).
	MaxKeys int32
	// RawKeys: the keys of a list are not URL-encoded.
	RawKeys bool
	// TempDir holds Parquet data files while they are read;
	// MaxParquetBytes bounds each (S3Inventory.MaxFileBytes).
	TempDir         string
	MaxParquetBytes int64
	Options
}

// Open returns the source spec names. It checks what it can before the run
// starts: the URLs, that a local list exists, and the manifest of a report
// (read, checksummed and parsed; an ORC report fails with ErrORC).
func Open(ctx context.Context, client S3, spec Spec) (Source, error) {
	n := 0
	for _, s := range []string{spec.Source, spec.Inventory, spec.List} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("inventory: give exactly one of --source, --inventory and --list")
	}
	if err := spec.Shard.Validate(); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	switch {
	case spec.Source != "":
		bucket, prefix, err := ParseS3URL(spec.Source)
		if err != nil {
			return nil, &Error{Op: "open", File: spec.Source, Err: err, Hint: "give --source as s3://BUCKET or s3://BUCKET/PREFIX"}
		}
		if client == nil {
			return nil, &Error{Op: "open", File: spec.Source, Err: errors.New("no S3 client")}
		}
		return &Listing{Client: client, Bucket: bucket, Prefix: prefix, AllVersions: spec.AllVersions,
			Depth: spec.FanOutDepth, Delimiter: spec.Delimiter, MaxKeys: spec.MaxKeys, Options: spec.Options}, nil
	case spec.Inventory != "":
		s := &S3Inventory{Client: client, Manifest: spec.Inventory, AllVersions: spec.AllVersions, TempDir: spec.TempDir,
			MaxFileBytes: spec.MaxParquetBytes, Options: spec.Options}
		m, err := s.ReadManifest(ctx)
		if err != nil {
			return nil, err
		}
		if m.FileFormat == FormatORC {
			return nil, &Error{Op: "open", File: spec.Inventory, Kind: ErrORC,
				Hint: "edit the inventory configuration (Output format) and wait for the next report, or list the bucket with --source"}
		}
		return s, nil
	default:
		if spec.AllVersions {
			return nil, &Error{Op: "open", File: spec.List, Err: errors.New("--all-versions does not apply to a list"),
				Hint: "a list names the versions to process in its third column"}
		}
		if strings.HasPrefix(spec.List, "s3://") {
			if _, key, err := ParseS3URL(spec.List); err != nil || key == "" {
				return nil, &Error{Op: "open", File: spec.List, Err: errors.New("not s3://BUCKET/KEY"), Hint: "give --list as FILE or s3://BUCKET/KEY"}
			}
			if client == nil {
				return nil, &Error{Op: "open", File: spec.List, Err: errors.New("no S3 client")}
			}
		} else if _, err := os.Stat(spec.List); err != nil {
			e := &Error{Op: "open", File: spec.List, Err: err}
			if errors.Is(err, os.ErrNotExist) {
				e.Kind = ErrNotFound
			}
			return nil, e
		}
		return &CSVList{Client: client, Path: spec.List, RawKeys: spec.RawKeys, Options: spec.Options}, nil
	}
}

// ParseS3URL splits s3://BUCKET[/KEY-OR-PREFIX]. The key is taken as it
// is, not URL-decoded (as the AWS CLI does).
func ParseS3URL(s string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", s)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if err := checkBucket(bucket); err != nil {
		return "", "", fmt.Errorf("%q: %v", s, err)
	}
	return bucket, key, nil
}
