package inventory

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func quoteField(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func FuzzParseListLine(f *testing.F) {
	for _, s := range []string{
		"bkt,plain/key", "bkt,sp%20ace+plus%2Bpct%25,v1", "bkt,%C3%BCn%C3%AF%2C%22q%22,,failed,AccessDenied,\"a, message\"",
		"\"bkt\",\"quoted/key\",\"v\"\"2\"", "Legacy_Bucket,last", "bucket-only", ",k", "b,k%zz", "b/c,k", "b,\"k", "b,\"k\"x",
		"b,k\"x", "b,k,v 1", "b,%FF", "b,,", "b,k,", `"",""`, "b,\"\"\"\"",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, line string, raw bool) {
		if strings.ContainsAny(line, "\r\n") {
			return // the line reader splits lines first
		}
		r, err := parseListLine(line, raw)
		if err != nil {
			return
		}
		if checkBucket(r.Bucket) != nil || r.Key == "" || len(r.Key) > MaxKeyBytes || !utf8.ValidString(r.Key) ||
			strings.ContainsFunc(r.VersionID, isSpaceOrControl) {
			t.Fatalf("%q parsed to an invalid record %+v", line, r)
		}
		// Written back as S3 Batch Operations wants it, the record reads
		// the same.
		key := r.Key
		if !raw {
			key = url.QueryEscape(key)
		}
		again := quoteField(r.Bucket) + "," + quoteField(key) + "," + quoteField(r.VersionID)
		r2, err := parseListLine(again, raw)
		if err != nil || r2 != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", line, r, again, r2, err)
		}
	})
}

const sampleManifest = `{
  "sourceBucket": "example-source-bucket",
  "destinationBucket": "arn:aws:s3:::example-inventory-destination-bucket",
  "version": "2016-11-30",
  "creationTimestamp": "1514944800000",
  "fileFormat": "CSV",
  "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm, ObjectAccessControlList, ObjectOwner",
  "files": [
    {
      "key": "Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz",
      "size": 2147483647,
      "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"
    }
  ]
}`

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(sampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.SourceBucket != "example-source-bucket" || m.DestinationBucket != "example-inventory-destination-bucket" ||
		m.FileFormat != FormatCSV || len(m.Files) != 1 || m.Files[0].Size != 2147483647 || m.Files[0].MD5 != "f11166069f1990abeb9c97ace9cdfabc" {
		t.Errorf("manifest %+v", m)
	}
	sc, _ := parseCSVSchema(m.FileSchema)
	if sc.n != 20 || sc.key != 1 || sc.version != 2 || sc.class != 8 {
		t.Errorf("schema %+v", sc)
	}
	for _, bad := range []string{
		`{`, `[]`, `{"sourceBucket":"b","fileFormat":"XML","fileSchema":"Bucket, Key","files":[]}`,
		`{"sourceBucket":"","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[]}`,
		`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Key, Size","files":[]}`,
		`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Bucket, Key, Key","files":[]}`,
		`{"sourceBucket":"b","fileFormat":"Parquet","fileSchema":"","files":[]}`,
		`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[{"key":"k","size":1,"MD5checksum":"xyz"}]}`,
		`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[{"key":"k","MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]}`,
		`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[{"key":"","size":1,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]}`,
		`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[{"key":"k","size":1,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"},{"key":"k","size":1,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]}`,
	} {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("ParseManifest(%s): no error", bad)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(sampleManifest))
	f.Add([]byte(strings.Replace(sampleManifest, `"CSV"`, `"Parquet"`, 1)))
	f.Add([]byte(strings.Replace(sampleManifest, `"CSV"`, `"orc"`, 1)))
	f.Add([]byte(`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":"Bucket, Key","files":[]}`))
	f.Add([]byte(`{"sourceBucket":"b","fileFormat":"CSV","fileSchema":" Bucket ,Key,,","files":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		switch m.FileFormat {
		case FormatCSV:
			if _, err := parseCSVSchema(m.FileSchema); err != nil {
				t.Fatalf("CSV manifest with a bad schema: %v", err)
			}
		case FormatParquet, FormatORC:
		default:
			t.Fatalf("format %q", m.FileFormat)
		}
		for _, file := range m.Files {
			if file.Key == "" || file.Size < 0 || len(file.MD5) != 32 || strings.ToLower(file.MD5) != file.MD5 {
				t.Fatalf("file %+v", file)
			}
		}
		// What parsed, written back, parses the same.
		type jf struct {
			Key  string `json:"key"`
			Size int64  `json:"size"`
			MD5  string `json:"MD5checksum"`
		}
		var files []jf
		for _, file := range m.Files {
			files = append(files, jf(file))
		}
		again, err := json.Marshal(map[string]any{"sourceBucket": m.SourceBucket, "destinationBucket": m.DestinationBucket,
			"version": m.Version, "creationTimestamp": m.CreationTimestamp, "fileFormat": m.FileFormat, "fileSchema": m.FileSchema, "files": files})
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v\n%+v, %v", m, m2, err)
		}
	})
}
