// Package inventory lists the objects a run must consider: the first stage of
// the pipeline.
//
// Terms:
//   - Source: where the object list comes from. A bucket listing
//     (ListObjectsV2 under a prefix, ListObjectVersions with all versions), an
//     S3 Inventory report read from its manifest.json, or a plain CSV list of
//     bucket,key[,version] lines as S3 Batch Operations manifests use.
//     Types Listing, S3Inventory and CSVList; Open builds one from the CLI's
//     --source, --inventory or --list.
//   - Item: one object version to consider: bucket, key, optional version id,
//     and whatever the listing already knows (size, ETag, delete marker).
//   - Fan-out: listing a wide bucket in parallel by splitting it on common
//     prefixes.
//   - Partition: a part of a source whose items come in a fixed order: a
//     prefix of a fanned-out listing (all keys under it, or for the levels
//     the fan-out walks through, the keys directly under it), a data file of
//     an S3 Inventory report, a CSV list. Partitions are read concurrently
//     (up to Options.Workers) and their items interleave.
//   - Position: an opaque string in every Item that marks how far its
//     partition has been delivered. A resumed run is given the last position
//     done of each partition (Options.After) and starts each partition after
//     it, and the others from their start. Progress computes those positions
//     from items completed out of order. Resuming is at least once: items
//     after a position are delivered again even if the interrupted run had
//     already processed some of them.
//   - Excluded: keys dropped before the stream because they end with
//     Options.ExcludeSuffix (the S3 Encryption Client's instruction files,
//     which the pipeline reads beside their object and never as one). With
//     Options.ReportUnpaired only the instruction files of objects that
//     exist are; a key ending in the suffix with no object KEY is delivered
//     flagged Item.UnpairedSuffix, told in bounded memory (partFilter).
//   - Instruction file pairing: a bucket listing's pages are in key order,
//     so a page shows whether KEY+Options.ExcludeSuffix exists beside KEY;
//     items whose instruction file the page proves missing are marked
//     (Item.NoInstructionFile, with ListedAt), so that the pipeline can skip
//     the GET of one for an object with no envelope in its metadata.
//     Reports and lists mark nothing.
//   - Shard: one of N disjoint parts of a run, by a hash of bucket and key,
//     for --shard i/N; every version of a key is in one shard. ResolveShard
//     reads --shard auto from a Kubernetes Indexed Job's or an AWS Batch
//     array job's environment.
//
// Every source streams items onto a channel (Send) or to a function (Stream):
// memory stays flat however many objects a bucket holds: a source holds a few
// pages of items per partition being read, never the whole list. Streams
// stop when their context is cancelled, without leaving goroutines behind.
//
// Errors are *Error values naming the bucket and prefix, or the file and
// line, with a hint; they wrap a sentinel (ErrAccessDenied, ErrNotFound,
// ErrMalformed, ErrChecksum, ErrPosition, ErrORC, ErrForeignBucket,
// ErrTooLarge) where one applies.
//
// S3 Inventory reports in ORC format are not read (ErrORC): there is no
// maintained pure-Go ORC reader. CSV and Parquet reports are.
package inventory
