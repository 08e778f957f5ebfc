package awsx

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Headers of S3's bucket-owner condition.
const (
	HeaderExpectedBucketOwner       = "X-Amz-Expected-Bucket-Owner"
	HeaderSourceExpectedBucketOwner = "X-Amz-Source-Expected-Bucket-Owner"
)

// CheckAccountID checks that id is an AWS account id: 12 digits.
func CheckAccountID(id string) error {
	if len(id) != 12 {
		return fmt.Errorf("%q is not an AWS account id (12 digits)", id)
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return fmt.Errorf("%q is not an AWS account id (12 digits)", id)
		}
	}
	return nil
}

// ExpectedBucketOwner returns an S3 API option that sends account as the
// expected bucket owner (x-amz-expected-bucket-owner) on every request
// whose operation takes one (every object and bucket operation but
// CreateBucket and ListBuckets), and as the expected source bucket owner
// (x-amz-source-expected-bucket-owner) on copies (CopyObject,
// UploadPartCopy). S3 then answers 403 AccessDenied when the bucket
// belongs to another account, for instance one deleted and re-created
// under the same name elsewhere. A value the caller set on the input is
// kept. Use it as s3.Options.APIOptions = append(...,
// awsx.ExpectedBucketOwner(account)).
func ExpectedBucketOwner(account string) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		// After the operation's serializer: the request is built and the
		// input's own fields are in its headers.
		return st.Serialize.Add(middleware.SerializeMiddlewareFunc("rotator/ExpectedBucketOwner",
			func(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (middleware.SerializeOutput, middleware.Metadata, error) {
				sent := false
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					f := ownerFieldsOf(in.Parameters)
					if f.owner && req.Header.Get(HeaderExpectedBucketOwner) == "" {
						req.Header.Set(HeaderExpectedBucketOwner, account)
						sent = true
					}
					if f.source && req.Header.Get(HeaderSourceExpectedBucketOwner) == "" {
						req.Header.Set(HeaderSourceExpectedBucketOwner, account)
						sent = true
					}
				}
				out, md, err := next.HandleSerialize(ctx, in)
				var ae smithy.APIError
				if sent && errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied" {
					err = &ownerError{err: err, account: account}
				}
				return out, md, err
			}), middleware.After)
	}
}

// ownerError is an AccessDenied answer to a request that named the
// expected bucket owner: S3 gives the same answer for a missing permission
// and for a bucket of another account.
type ownerError struct {
	err     error
	account string
}

func (e *ownerError) Error() string {
	return e.err.Error() + " (or the bucket does not belong to account " + e.account + ", the expected bucket owner)"
}

func (e *ownerError) Unwrap() error { return e.err }

// ownerFields says which bucket-owner conditions an operation's input
// takes.
type ownerFields struct{ owner, source bool }

var ownerFieldsCache sync.Map // reflect.Type -> ownerFields

// ownerFieldsOf reports whether params (an operation's *XInput) has the
// ExpectedBucketOwner and ExpectedSourceBucketOwner fields.
func ownerFieldsOf(params any) ownerFields {
	t := reflect.TypeOf(params)
	if t == nil {
		return ownerFields{}
	}
	if f, ok := ownerFieldsCache.Load(t); ok {
		return f.(ownerFields)
	}
	var f ownerFields
	if s := t; s.Kind() == reflect.Pointer && s.Elem().Kind() == reflect.Struct {
		_, f.owner = s.Elem().FieldByName("ExpectedBucketOwner")
		_, f.source = s.Elem().FieldByName("ExpectedSourceBucketOwner")
	}
	ownerFieldsCache.Store(t, f)
	return f
}
