package inventory

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Formats of S3 Inventory reports (Manifest.FileFormat).
const (
	FormatCSV     = "CSV"
	FormatParquet = "Parquet"
	FormatORC     = "ORC"
)

// MaxManifestBytes bounds the manifest.json read. A manifest lists one
// entry of about 200 bytes per data file.
const MaxManifestBytes = 64 << 20

// Manifest is an S3 Inventory report's manifest.json.
type Manifest struct {
	SourceBucket string
	// DestinationBucket is the bucket that holds the data files, from the
	// manifest's ARN (arn:aws:s3:::NAME).
	DestinationBucket string
	Version           string
	CreationTimestamp string
	// FileFormat is FormatCSV, FormatParquet or FormatORC.
	FileFormat string
	// FileSchema: for CSV the column names in file order ("Bucket, Key,
	// VersionId, ..."); for Parquet and ORC the files' schema.
	FileSchema string
	Files      []ManifestFile
}

// ManifestFile is one data file of a report.
type ManifestFile struct {
	Key  string
	Size int64
	// MD5 of the file in lower-case hex.
	MD5 string
}

type manifestJSON struct {
	SourceBucket      string `json:"sourceBucket"`
	DestinationBucket string `json:"destinationBucket"`
	Version           string `json:"version"`
	CreationTimestamp string `json:"creationTimestamp"`
	FileFormat        string `json:"fileFormat"`
	FileSchema        string `json:"fileSchema"`
	Files             []struct {
		Key         string `json:"key"`
		Size        *int64 `json:"size"`
		MD5Checksum string `json:"MD5checksum"`
	} `json:"files"`
}

// ParseManifest parses and checks a manifest.json. An ORC report parses;
// reading it fails with ErrORC.
func ParseManifest(data []byte) (*Manifest, error) {
	var j manifestJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%w: manifest is not JSON: %v", ErrMalformed, err)
	}
	m := &Manifest{
		SourceBucket:      j.SourceBucket,
		DestinationBucket: strings.TrimPrefix(j.DestinationBucket, "arn:aws:s3:::"),
		Version:           j.Version,
		CreationTimestamp: j.CreationTimestamp,
		FileSchema:        j.FileSchema,
	}
	switch {
	case strings.EqualFold(j.FileFormat, FormatCSV):
		m.FileFormat = FormatCSV
	case strings.EqualFold(j.FileFormat, FormatParquet):
		m.FileFormat = FormatParquet
	case strings.EqualFold(j.FileFormat, FormatORC):
		m.FileFormat = FormatORC
	default:
		return nil, fmt.Errorf("%w: manifest fileFormat %q is none of CSV, Parquet, ORC", ErrMalformed, j.FileFormat)
	}
	if err := checkBucket(m.SourceBucket); err != nil {
		return nil, fmt.Errorf("%w: manifest sourceBucket: %v", ErrMalformed, err)
	}
	if m.DestinationBucket != "" {
		if err := checkBucket(m.DestinationBucket); err != nil {
			return nil, fmt.Errorf("%w: manifest destinationBucket: %v", ErrMalformed, err)
		}
	}
	if strings.TrimSpace(m.FileSchema) == "" {
		return nil, fmt.Errorf("%w: manifest has no fileSchema", ErrMalformed)
	}
	if m.FileFormat == FormatCSV {
		if _, err := parseCSVSchema(m.FileSchema); err != nil {
			return nil, fmt.Errorf("%w: manifest fileSchema: %v", ErrMalformed, err)
		}
	}
	seen := make(map[string]bool, len(j.Files))
	for i, f := range j.Files {
		if err := checkKey(f.Key); err != nil {
			return nil, fmt.Errorf("%w: manifest files[%d]: %v", ErrMalformed, i, err)
		}
		if seen[f.Key] {
			return nil, fmt.Errorf("%w: manifest files[%d]: %q is listed twice", ErrMalformed, i, f.Key)
		}
		seen[f.Key] = true
		if f.Size == nil || *f.Size < 0 {
			return nil, fmt.Errorf("%w: manifest files[%d] (%s): no size", ErrMalformed, i, f.Key)
		}
		sum := strings.ToLower(f.MD5Checksum)
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 16 {
			return nil, fmt.Errorf("%w: manifest files[%d] (%s): MD5checksum %q is not an MD5 in hex", ErrMalformed, i, f.Key, f.MD5Checksum)
		}
		m.Files = append(m.Files, ManifestFile{Key: f.Key, Size: *f.Size, MD5: sum})
	}
	return m, nil
}

// CSV columns rotator reads (S3 Inventory's names). Others are skipped.
const (
	colBucket       = "Bucket"
	colKey          = "Key"
	colVersionID    = "VersionId"
	colIsLatest     = "IsLatest"
	colDeleteMarker = "IsDeleteMarker"
	colSize         = "Size"
	colLastModified = "LastModifiedDate"
	colETag         = "ETag"
	colStorageClass = "StorageClass"
)

// csvSchema holds the index of each column rotator reads, -1 when absent.
type csvSchema struct {
	n                                                                      int
	bucket, key, version, latest, deleteMarker, size, lastMod, etag, class int
}

func parseCSVSchema(s string) (csvSchema, error) {
	sc := csvSchema{bucket: -1, key: -1, version: -1, latest: -1, deleteMarker: -1, size: -1, lastMod: -1, etag: -1, class: -1}
	cols := strings.Split(s, ",")
	sc.n = len(cols)
	for i, c := range cols {
		var p *int
		switch strings.TrimSpace(c) {
		case colBucket:
			p = &sc.bucket
		case colKey:
			p = &sc.key
		case colVersionID:
			p = &sc.version
		case colIsLatest:
			p = &sc.latest
		case colDeleteMarker:
			p = &sc.deleteMarker
		case colSize:
			p = &sc.size
		case colLastModified:
			p = &sc.lastMod
		case colETag:
			p = &sc.etag
		case colStorageClass:
			p = &sc.class
		case "":
			return csvSchema{}, fmt.Errorf("empty column name at %d", i+1)
		default:
			continue
		}
		if *p >= 0 {
			return csvSchema{}, fmt.Errorf("column %s named twice", strings.TrimSpace(c))
		}
		*p = i
	}
	if sc.bucket < 0 || sc.key < 0 {
		return csvSchema{}, errors.New("no Bucket and Key columns")
	}
	return sc, nil
}
