// Package inventory lists the objects a run must consider: the first stage of
// the pipeline.
//
// Terms:
//   - Source: where the object list comes from. A bucket listing
//     (ListObjectsV2 under a prefix, ListObjectVersions with all versions), an
//     S3 Inventory report read from its manifest.json, or a plain CSV list of
//     bucket,key[,version] lines as S3 Batch Operations manifests use.
//   - Item: one object version to consider: bucket, key, optional version id,
//     and whatever the listing already knows (size, ETag, delete marker).
//   - Fan-out: listing a wide bucket in parallel by splitting it on common
//     prefixes.
//
// Every source streams items onto a channel: memory stays flat however many
// objects a bucket holds.
package inventory
