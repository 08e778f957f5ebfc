# The least-privilege policy of the runs, statement for statement what
# `rotator iam-policy` prints for the same flags (terraform/terraform_test.go
# evaluates local.policy and compares). Keep the two in step: a change to
# iampolicy/ that this file does not follow fails the test.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.id
  account   = data.aws_caller_identity.current.account_id

  reencrypt = var.mode == "reencrypt"
  to_kms    = var.to_key_arn != ""
  to_region = local.to_kms ? split(":", var.to_key_arn)[3] : local.region
  no_from   = length(var.from_key_arns) == 0 && !var.from_non_kms

  # KMS: ReEncrypt between keys of one region (the data key never leaves
  # KMS); Decrypt and Encrypt across regions, to or from an HSM, and for
  # re-encryption; DescribeKey where keys are opened.
  from_same_region   = [for k in var.from_key_arns : k if split(":", k)[3] == local.to_region]
  from_other_region  = [for k in var.from_key_arns : k if split(":", k)[3] != local.to_region]
  any_source_key     = ["arn:${local.partition}:kms:${local.to_region}:${local.account}:key/*"]
  kms_describe       = compact(concat([var.to_key_arn], var.from_key_arns))
  kms_reencrypt_from = local.reencrypt || !local.to_kms ? [] : concat(local.from_same_region, local.no_from ? local.any_source_key : [])
  kms_reencrypt_to   = length(local.kms_reencrypt_from) > 0 ? [var.to_key_arn] : []
  kms_decrypt        = local.reencrypt || !local.to_kms ? var.from_key_arns : local.from_other_region
  kms_encrypt        = local.to_kms && (local.reencrypt || var.from_non_kms || length(local.from_other_region) > 0) ? [var.to_key_arn] : []
  kms_verify         = var.allow_verify && local.to_kms ? [var.to_key_arn] : []

  # S3: objects under each bucket's prefix; versions where requests name
  # them (verify reads each body at the version its HEAD names); tags
  # carried over; Object Lock and ACLs only with their flags.
  versions = var.all_versions || local.reencrypt
  s3_read = concat(
    ["s3:GetObject"],
    var.check_acl ? ["s3:GetObjectAcl"] : [],
    local.versions || var.allow_verify ? ["s3:GetObjectVersion"] : [],
    local.versions && var.check_acl ? ["s3:GetObjectVersionAcl"] : [],
    var.copy_object_lock ? ["s3:GetObjectRetention", "s3:GetObjectLegalHold"] : [],
  )
  s3_write = concat(
    ["s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
    local.versions && local.reencrypt ? ["s3:GetObjectVersionTagging"] : [],
    var.copy_object_lock ? ["s3:PutObjectRetention", "s3:PutObjectLegalHold"] : [],
  )
  s3_delete   = var.delete_old_versions ? ["s3:DeleteObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"] : []
  s3_objects  = [for b in var.buckets : "arn:${local.partition}:s3:::${b.bucket}/${b.prefix}*"]
  s3_buckets  = [for b in var.buckets : "arn:${local.partition}:s3:::${b.bucket}"]
  owner_check = merge([for o in [var.expected_bucket_owner] : { StringEquals = { "s3:ResourceAccount" = [o] } } if o != ""]...)

  # An S3 --report: written (continued after a resume) under its prefix;
  # ListBucket so that a HEAD of a report not yet written answers 404.
  report_objects = var.report_bucket == "" ? [] : ["arn:${local.partition}:s3:::${var.report_bucket}/${var.report_prefix}*"]
  report_buckets = var.report_bucket == "" ? [] : ["arn:${local.partition}:s3:::${var.report_bucket}"]

  # The ledger table (Terraform creates it: no CreateTable).
  ledger_actions = concat(
    ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchGetItem"],
    var.allow_ledger_queries ? ["dynamodb:Scan"] : [],
  )

  statements = concat(
    [
      { Sid = "KMSOpenKeys", Action = ["kms:DescribeKey"], Resource = local.kms_describe, Condition = {} },
      { Sid = "KMSReEncryptFromSource", Action = ["kms:ReEncryptFrom"], Resource = local.kms_reencrypt_from, Condition = {} },
      { Sid = "KMSReEncryptToTarget", Action = ["kms:ReEncryptTo"], Resource = local.kms_reencrypt_to, Condition = {} },
      { Sid = "KMSDecryptSource", Action = ["kms:Decrypt"], Resource = local.kms_decrypt, Condition = {} },
      { Sid = "KMSEncryptTarget", Action = ["kms:Encrypt"], Resource = local.kms_encrypt, Condition = {} },
      { Sid = "KMSVerifyTarget", Action = ["kms:Decrypt"], Resource = local.kms_verify, Condition = {} },
      { Sid = "S3ReadObjects", Action = local.s3_read, Resource = local.s3_objects, Condition = local.owner_check },
      { Sid = "S3WriteObjects", Action = local.s3_write, Resource = local.s3_objects, Condition = local.owner_check },
      { Sid = "S3DeleteOldVersions", Action = local.s3_delete, Resource = local.s3_objects, Condition = local.owner_check },
      { Sid = "S3ListMultipartUploads", Action = local.reencrypt ? ["s3:ListBucketMultipartUploads"] : [], Resource = local.s3_buckets, Condition = local.owner_check },
    ],
    [for i, b in var.buckets : {
      Sid       = "${var.all_versions ? "S3ListBucketVersions" : "S3ListBucket"}${i + 1}"
      Action    = [var.all_versions ? "s3:ListBucketVersions" : "s3:ListBucket"]
      Resource  = ["arn:${local.partition}:s3:::${b.bucket}"]
      Condition = merge(local.owner_check, [for p in [b.prefix] : { StringLike = { "s3:prefix" = ["${p}*"] } } if p != ""]...)
    }],
    [
      { Sid = "S3WriteReport", Action = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], Resource = local.report_objects, Condition = local.owner_check },
      { Sid = "S3ReportBucket", Action = ["s3:ListBucket", "s3:ListBucketMultipartUploads"], Resource = local.report_buckets, Condition = local.owner_check },
    ],
    [
      { Sid = "LedgerTable", Action = local.ledger_actions, Resource = [aws_dynamodb_table.ledger.arn], Condition = {} },
      { Sid = "LedgerIndex", Action = var.allow_ledger_queries ? ["dynamodb:Query"] : [], Resource = ["${aws_dynamodb_table.ledger.arn}/index/by_wrap_key"], Condition = {} },
    ],
  )

  policy = {
    Version = "2012-10-17"
    Statement = [for s in local.statements : merge(
      { Sid = s.Sid, Effect = "Allow", Action = sort(distinct(s.Action)), Resource = sort(distinct(s.Resource)) },
      [for c in [s.Condition] : { Condition = c } if length(c) > 0]...
    ) if length(s.Action) > 0 && length(s.Resource) > 0]
  }
}

resource "aws_iam_policy" "rotator" {
  name        = "${var.name}-run"
  description = "What rotator's runs need (rotator iam-policy), and nothing else."
  policy      = jsonencode(local.policy)
  tags        = var.tags
}
