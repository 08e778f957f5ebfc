# A quarterly CMK rotation of one bucket prefix, sharded over 4 Fargate
# tasks, with the S3 Batch Operations handler beside it for runs driven by
# a manifest. Adjust the values, then: tofu init && tofu plan.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

variable "account_id" {
  description = "The account that owns the buckets and keys."
  type        = string
  default     = "111122223333"
}

locals {
  old_key = "arn:aws:kms:eu-west-1:${var.account_id}:key/aaaaaaaa-0000-0000-0000-000000000001"
  new_key = "arn:aws:kms:eu-west-1:${var.account_id}:key/bbbbbbbb-0000-0000-0000-000000000002"
}

module "rotator" {
  source = "../../modules/rotator"

  name                  = "rotator-data"
  buckets               = [{ bucket = "data-bucket", prefix = "records/" }]
  from_key_arns         = [local.old_key]
  to_key_arn            = local.new_key
  expected_bucket_owner = var.account_id
  ledger_table_name     = "rotator-ledger"

  container_image     = "${var.account_id}.dkr.ecr.eu-west-1.amazonaws.com/rotator:latest"
  batch_job_queue_arn = "arn:aws:batch:eu-west-1:${var.account_id}:job-queue/fargate"
  shards              = 4
  run_command = [
    "run", "--shard", "auto", "--source", "s3://data-bucket/records/",
    "--from", "kms:${local.old_key}", "--to", "kms:${local.new_key}",
    "--expected-bucket-owner", var.account_id, "--ledger", "dynamodb://rotator-ledger",
    "--report", "s3://rotator-reports/rotation/",
  ]
  report_bucket       = "rotator-reports"
  report_prefix       = "rotation/"
  schedule_expression = "cron(0 3 1 1,4,7,10 ? *)"

  lambda_zip             = "${path.module}/bootstrap.zip"
  lambda_run_args        = "--from kms:${local.old_key} --to kms:${local.new_key} --expected-bucket-owner ${var.account_id}"
  batchops_manifest_arns = ["arn:aws:s3:::rotator-manifests/*"]
  batchops_report_arns   = ["arn:aws:s3:::rotator-reports/batch-operations/*"]

  tags = { project = "rotator" }
}

output "role_arn" {
  value = module.rotator.role_arn
}

output "policy_json" {
  value = module.rotator.policy_json
}
