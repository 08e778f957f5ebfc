// Command rotator-batchops is rotator's AWS Lambda function for S3 Batch
// Operations (LambdaInvoke, invocation schemas 1.0 and 2.0): every task's
// object goes through the same per-object core as 'rotator run', with the
// DynamoDB ledger, and is answered Succeeded, TemporaryFailure or
// PermanentFailure. See package batchops and docs/batch-operations.md.
//
// Build it as the bootstrap of an OS-only runtime (provided.al2023):
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=1 go build -tags lambda.norpc -o bootstrap ./cmd/rotator-batchops
//
// (cgo is needed by the PKCS#11 backend, which the whole module links.)
// Outside Lambda it exits at once: the Lambda runtime API is not there.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/rotator-dev/rotator/batchops"
)

func main() {
	h := &batchops.Handler{}
	lambda.Start(h.Handle)
}
