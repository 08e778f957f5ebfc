// Package iampolicy derives the least-privilege IAM policy of a rotator
// run from its configuration: the actions the code calls for that
// configuration, on the keys, buckets, prefixes and ledger table it names,
// and nothing else (`rotator iam-policy`).
//
// # Terms
//
// Action: an IAM action (kms:ReEncryptFrom, s3:GetObjectVersion,
// dynamodb:Query). Each AWS request a run makes needs one or more of them;
// Needs says which, for every request rotator makes (the table AWS
// documents for S3, KMS and DynamoDB authorization, limited to rotator's
// requests). A run's policy is the union of what its requests need.
//
// Statement: actions on resources, with an optional condition. For(cfg)
// groups them by purpose, with a Sid naming it (KMSReEncryptFromSource,
// S3WriteObjects, LedgerTable, ...).
//
// Key resources: a key named by ARN is its ARN; by key ID, the ARN built
// from Options.Partition, Region and Account ("*" when unknown); by alias,
// every key of the region and account with the condition
// kms:ResourceAliases naming the alias (IAM matches key operations on key
// ARNs, never on alias ARNs). A rewrap without --from moves whatever KMS
// key the objects are under, so kms:ReEncryptFrom is granted on every key
// of the account and region; Notes says so.
//
// What a configuration needs, and why:
//
//   - Keys are opened with kms:DescribeKey (--to, every KMS --from).
//   - Rewrap between KMS keys of one region: kms:ReEncryptFrom on the source
//     keys and kms:ReEncryptTo on the target; the data key never leaves KMS.
//     Across regions, and from KMS to an HSM or local key: kms:Decrypt on
//     the source keys (and kms:Encrypt on a KMS target). To a KMS target
//     from an HSM or local key: kms:Encrypt.
//   - Re-encryption: kms:Decrypt on the source keys (the old data key) and
//     kms:Encrypt on the target (the fresh data key is made by rotator).
//     No GenerateDataKey: rotator never asks KMS for a data key.
//   - A dry run opens the keys only (kms:DescribeKey), writes no object,
//     and on a DynamoDB ledger records the run and what it saw (no
//     DeleteItem, no Query).
//   - Objects: s3:GetObject (HEAD, GET of bodies and instruction files),
//     s3:GetObjectTagging (tags are carried over), s3:PutObject
//     (self-copies, instruction files, uploads), s3:PutObjectTagging,
//     s3:AbortMultipartUpload (an upload that failed or cannot be resumed),
//     on BUCKET/PREFIX* only. s3:GetObjectVersion where requests name a
//     version: --all-versions, a list naming versions, an inventory, and
//     re-encryption (it pins the version it read; it also reads that
//     version's tags: s3:GetObjectVersionTagging). A rewrap of current
//     versions names none, in a versioned bucket too.
//   - Buckets: s3:ListBucket for --source (with s3:prefix when a prefix is
//     given), s3:ListBucketVersions with --all-versions,
//     s3:ListBucketMultipartUploads for re-encryption (uploads a killed run
//     left are found and aborted).
//   - --delete-old-versions: s3:DeleteObjectVersion, s3:GetObjectRetention
//     and s3:GetObjectLegalHold (Object Lock is checked, never bypassed).
//   - --copy-object-lock: s3:GetObjectRetention, s3:GetObjectLegalHold,
//     s3:PutObjectRetention and s3:PutObjectLegalHold.
//   - --placement instruction-file: s3:DeleteObject (a move whose copy did
//     not land deletes the instruction file it created; creating it is
//     s3:PutObject on KEY.instruction, under the same prefix).
//   - --check-acl: s3:GetObjectAcl (and s3:GetObjectVersionAcl where
//     requests name versions).
//   - --expected-bucket-owner: every S3 statement gets the condition
//     s3:ResourceAccount.
//   - --inventory: s3:GetObject on the report's folder (manifest,
//     manifest.checksum, data files); --list s3://B/K: s3:GetObject on it.
//   - --report s3://B/PREFIX/ (Options.Report): s3:GetObject, s3:PutObject
//     and s3:AbortMultipartUpload on the report objects; s3:ListBucket and
//     s3:ListBucketMultipartUploads on B.
//   - DynamoDB ledger: dynamodb:DescribeTable, GetItem, BatchGetItem
//     (reads that overlap go in one request; on a resume, the items the
//     intent journal names), PutItem, UpdateItem, DeleteItem and Query on
//     the table (ledger/SCHEMA.md lists the requests; a dry run needs
//     neither DeleteItem nor Query); dynamodb:CreateTable with ?create=true. Options.Ledger adds
//     what `rotator ledger` and `status` need: dynamodb:Query on the index
//     by_wrap_key and dynamodb:Scan (the audit export).
//   - `rotator plan` with the run's flags needs a subset of the run's
//     policy plus, with Options.Plan (--with plan), s3:GetBucketVersioning,
//     s3:GetReplicationConfiguration and s3:GetLifecycleConfiguration on
//     each bucket (what the writes cost beyond their requests; without
//     them plan says what it could not read). `rotator resume` needs the
//     run's policy.
//   - `rotator verify` (Options.Verify, --with verify) and `rotator
//     restore` read each body at the version its HEAD named: in a
//     versioned bucket s3:GetObjectVersion.
//   - `rotator escrow` (Mode escrow: To is the escrow key, iam-policy
//     --mode escrow --escrow KEY): the data keys of the objects under the
//     --from keys are wrapped under the escrow key as a rewrap would move
//     them (kms:ReEncryptFrom on the sources and kms:ReEncryptTo on the
//     escrow key within a region, no data key in the process; kms:Decrypt
//     and kms:Encrypt across regions, from HSM keys, to an RSA or HSM
//     escrow key; without --from, kms:ReEncryptFrom on every key). It
//     writes escrow files only: s3:PutObject, s3:GetObjectTagging and
//     s3:PutObjectTagging (a rewritten escrow file keeps its tags) on
//     BUCKET/PREFIX*SUFFIX (default *.escrow.instruction), the objects
//     read-only.
//   - `rotator restore` (Mode restore, iam-policy --mode restore
//     --from-escrow KEY --to KEY): kms:Decrypt on the escrow key (the data
//     key is checked against the object before anything is written, so
//     never ReEncrypt) and kms:Encrypt on the target; the objects written
//     as a rewrap writes them, s3:GetObjectVersion for the V2 bodies the
//     escrowed data keys are checked against.
//   - `rotator verify --escrow` (Options.VerifyEscrow, --with
//     verify-escrow): kms:DescribeKey and kms:Decrypt on the escrow key
//     (Sid KMSVerifyThroughEscrow), the objects and escrow files read.
//   - HSM keys need no IAM permission: CloudHSM authorizes its crypto user
//     (the PIN), not IAM. Nor do RSA and AES key files: the notes say so.
package iampolicy
