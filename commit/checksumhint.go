package commit

import "fmt"

// codeInvalidArgument is S3's generic 400 for a request it will not take.
const codeInvalidArgument = "InvalidArgument"

// checksumHint is the hint for a multipart copy that asked for checksums
// (ck.alg set) and failed with S3 error code code, or "" when the failure
// says nothing about checksums. S3-compatible servers get checksummed
// multipart copies wrong in two ways the local stack shows:
//
//   - MinIO computes no checksum for UploadPartCopy and refuses it
//     (InvalidArgument "checksum missing") in an upload created with a
//     checksum algorithm;
//   - versitygw v1.8.0 reports the whole object's checksum for every
//     UploadPartCopy range, so the completion fails: BadDigest against a
//     full-object CRC, InvalidArgument for a composite checksum ("-N" is no
//     base64).
//
// Either way the copy did not land and the upload is aborted; the way out
// is to copy without checksums.
func checksumHint(code string, ck checksum, atComplete bool) string {
	if ck.alg == "" {
		return ""
	}
	const off = "set Options.NoMultipartChecksum (rotator: --s3-no-multipart-checksum)"
	switch {
	case !atComplete && code == codeInvalidArgument:
		return fmt.Sprintf("the server refused to copy a part into an upload created with the %s checksum algorithm, so the copy was not made "+
			"(MinIO computes no checksums for UploadPartCopy); %s", ck.alg, off)
	case atComplete && code == codeBadDigest:
		return fmt.Sprintf("the %s checksums S3 computed for the copied parts do not add up to the object's own %s, so the copy was not completed; "+
			"if the server computes part checksums wrongly (versitygw v1.8.0 reports the whole object's checksum for every UploadPartCopy range), %s",
			ck.alg, ck.full, off)
	case atComplete && code == codeInvalidArgument:
		return fmt.Sprintf("the server refused the %s checksums of the copied parts, so the copy was not completed; "+
			"if the server computes part checksums wrongly (versitygw v1.8.0 reports the whole object's checksum for every UploadPartCopy range), %s",
			ck.alg, off)
	}
	return ""
}
