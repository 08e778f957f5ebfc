package iampolicy

import (
	"net/url"
	"slices"
	"strings"
)

// Need is one action a request needs on one resource, with the values of
// the condition keys the request sets (s3:prefix for listings).
type Need struct {
	Action   string
	Resource string
	Context  map[string]string
}

// S3Request is what decides the permissions of an S3 request: its method,
// bucket and key (path-style), query, copy source and the headers that
// need permissions of their own.
type S3Request struct {
	Method      string
	Bucket, Key string
	Query       url.Values
	// CopySource is x-amz-copy-source (/bucket/key[?versionId=V]).
	CopySource string
	// TaggingDirective (x-amz-tagging-directive, COPY when absent) and
	// Tagging (x-amz-tagging) of a copy or a write.
	TaggingDirective, Tagging string
	// Retention and LegalHold: the write sets Object Lock headers
	// (x-amz-object-lock-mode, x-amz-object-lock-legal-hold).
	Retention, LegalHold bool
}

// S3Needs returns the operation name of an S3 request and what it needs, as
// S3 authorizes it (the S3 User Guide's "Actions, resources, and condition
// keys for Amazon S3"): a request naming a version needs the *Version
// variant; a copy reads its source (and its tags, when the tagging
// directive is COPY) and writes its destination; a write that sets tags or
// Object Lock settings needs the permissions for those too. The name is
// empty for a request rotator never makes.
func S3Needs(partition string, r S3Request) (string, []Need) {
	bucketARN := "arn:" + partition + ":s3:::" + r.Bucket
	objectARN := bucketARN + "/" + r.Key
	has := func(k string) bool { _, ok := r.Query[k]; return ok }
	versioned := r.Query.Get("versionId") != ""
	ver := func(plain, version string) string {
		if versioned {
			return version
		}
		return plain
	}
	obj := func(actions ...string) []Need {
		var out []Need
		for _, a := range actions {
			out = append(out, Need{Action: a, Resource: objectARN})
		}
		return out
	}
	if r.Key == "" {
		list := func(action string) []Need {
			return []Need{{Action: action, Resource: bucketARN, Context: map[string]string{"s3:prefix": r.Query.Get("prefix")}}}
		}
		switch {
		case r.Method == "GET" && r.Query.Get("list-type") == "2":
			return "ListObjectsV2", list("s3:ListBucket")
		case r.Method == "GET" && has("versions"):
			return "ListObjectVersions", list("s3:ListBucketVersions")
		case r.Method == "GET" && has("versioning"):
			return "GetBucketVersioning", []Need{{Action: "s3:GetBucketVersioning", Resource: bucketARN}}
		case r.Method == "GET" && has("replication"):
			return "GetBucketReplication", []Need{{Action: "s3:GetReplicationConfiguration", Resource: bucketARN}}
		case r.Method == "GET" && has("lifecycle"):
			return "GetBucketLifecycleConfiguration", []Need{{Action: "s3:GetLifecycleConfiguration", Resource: bucketARN}}
		case r.Method == "GET" && has("uploads"):
			return "ListMultipartUploads", []Need{{Action: "s3:ListBucketMultipartUploads", Resource: bucketARN}}
		case r.Method == "GET" && len(r.Query) == 0, r.Method == "HEAD":
			return map[string]string{"GET": "ListObjects", "HEAD": "HeadBucket"}[r.Method], list("s3:ListBucket")
		}
		return "", nil
	}
	// writeExtras are the permissions of a write's tags and lock headers.
	writeExtras := func() []Need {
		var out []Need
		if r.Tagging != "" {
			out = append(out, obj("s3:PutObjectTagging")...)
		}
		if r.Retention {
			out = append(out, obj("s3:PutObjectRetention")...)
		}
		if r.LegalHold {
			out = append(out, obj("s3:PutObjectLegalHold")...)
		}
		return out
	}
	// source is what a copy needs on its source.
	source := func(withTags bool) []Need {
		src, q, _ := strings.Cut(strings.TrimPrefix(r.CopySource, "/"), "?")
		if s, err := url.PathUnescape(src); err == nil {
			src = s
		}
		vals, _ := url.ParseQuery(q)
		res := "arn:" + partition + ":s3:::" + src
		if vals.Get("versionId") != "" {
			out := []Need{{Action: "s3:GetObjectVersion", Resource: res}}
			if withTags {
				out = append(out, Need{Action: "s3:GetObjectVersionTagging", Resource: res})
			}
			return out
		}
		out := []Need{{Action: "s3:GetObject", Resource: res}}
		if withTags {
			out = append(out, Need{Action: "s3:GetObjectTagging", Resource: res})
		}
		return out
	}
	switch r.Method {
	case "HEAD":
		return "HeadObject", obj(ver("s3:GetObject", "s3:GetObjectVersion"))
	case "GET":
		switch {
		case has("tagging"):
			return "GetObjectTagging", obj(ver("s3:GetObjectTagging", "s3:GetObjectVersionTagging"))
		case has("acl"):
			return "GetObjectAcl", obj(ver("s3:GetObjectAcl", "s3:GetObjectVersionAcl"))
		case has("retention"):
			return "GetObjectRetention", obj("s3:GetObjectRetention")
		case has("legal-hold"):
			return "GetObjectLegalHold", obj("s3:GetObjectLegalHold")
		case has("uploadId"):
			return "ListParts", obj("s3:ListMultipartUploadParts")
		}
		return "GetObject", obj(ver("s3:GetObject", "s3:GetObjectVersion"))
	case "PUT":
		switch {
		case has("tagging"):
			return "PutObjectTagging", obj(ver("s3:PutObjectTagging", "s3:PutObjectVersionTagging"))
		case has("retention"):
			return "PutObjectRetention", obj("s3:PutObjectRetention")
		case has("legal-hold"):
			return "PutObjectLegalHold", obj("s3:PutObjectLegalHold")
		case has("uploadId") && r.CopySource != "":
			return "UploadPartCopy", append(obj("s3:PutObject"), source(false)...)
		case has("uploadId"):
			return "UploadPart", obj("s3:PutObject")
		case r.CopySource != "":
			copyTags := r.TaggingDirective == "" || strings.EqualFold(r.TaggingDirective, "COPY")
			needs := append(obj("s3:PutObject"), source(copyTags)...)
			if copyTags {
				needs = append(needs, obj("s3:PutObjectTagging")...)
			}
			return "CopyObject", append(needs, writeExtras()...)
		}
		return "PutObject", append(obj("s3:PutObject"), writeExtras()...)
	case "POST":
		switch {
		case has("uploads"):
			return "CreateMultipartUpload", append(obj("s3:PutObject"), writeExtras()...)
		case has("uploadId"):
			return "CompleteMultipartUpload", obj("s3:PutObject")
		}
	case "DELETE":
		switch {
		case has("uploadId"):
			return "AbortMultipartUpload", obj("s3:AbortMultipartUpload")
		case has("tagging"):
			return "DeleteObjectTagging", obj(ver("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"))
		}
		return "DeleteObject", obj(ver("s3:DeleteObject", "s3:DeleteObjectVersion"))
	}
	return "", nil
}

// KMSNeeds returns what a KMS operation needs: the action of its name on
// key, and for ReEncrypt kms:ReEncryptFrom on the source key and
// kms:ReEncryptTo on the destination key.
func KMSNeeds(op, key, source, dest string) []Need {
	switch op {
	case "":
		return nil
	case "ReEncrypt":
		return []Need{{Action: "kms:ReEncryptFrom", Resource: source}, {Action: "kms:ReEncryptTo", Resource: dest}}
	}
	return []Need{{Action: "kms:" + op, Resource: key}}
}

// AllowsNeed reports whether a statement of p allows n: its action and
// resource match, and each of its conditions holds for the values n
// carries. A condition key n carries no value for (s3:ResourceAccount,
// kms:ResourceAliases: what only AWS knows) is taken to hold.
func (p *Policy) AllowsNeed(n Need) bool {
	for _, s := range p.Statement {
		if s.Effect != "Allow" || !slices.ContainsFunc(s.Action, func(a string) bool { return Match(a, n.Action, true) }) {
			continue
		}
		if !slices.ContainsFunc(s.Resource, func(r string) bool { return Match(r, n.Resource, false) }) {
			continue
		}
		if conditionHolds(s.Condition, n.Context) {
			return true
		}
	}
	return false
}

func conditionHolds(c Condition, ctx map[string]string) bool {
	for op, kv := range c {
		for key, vals := range kv {
			v, ok := ctx[key]
			if !ok {
				continue
			}
			like := strings.HasSuffix(op, "StringLike")
			if !slices.ContainsFunc(vals, func(p string) bool {
				if like {
					return Match(p, v, false)
				}
				return p == v
			}) {
				return false
			}
		}
	}
	return true
}
