variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "rotator"
}

# --- what the runs do: the flags of `rotator run` -----------------------------

variable "mode" {
  description = "rewrap (--mode rewrap: CMK rotation, KMS to HSM migration) or reencrypt (--mode reencrypt: incident re-keying)."
  type        = string
  default     = "rewrap"
  validation {
    condition     = contains(["rewrap", "reencrypt"], var.mode)
    error_message = "mode is rewrap or reencrypt."
  }
}

variable "buckets" {
  description = "The --source of the runs: each bucket and the key prefix rotated in it (\"\" for the whole bucket)."
  type = list(object({
    bucket = string
    prefix = optional(string, "")
  }))
}

variable "from_key_arns" {
  description = "The KMS keys of --from, by key ARN. Empty: a rewrap moves objects under any key of the target's region (kms:ReEncryptFrom on every key)."
  type        = list(string)
  default     = []
}

variable "from_non_kms" {
  description = "--from also names HSM or local keys (their use is authorized by the HSM or the key files, not IAM)."
  type        = bool
  default     = false
}

variable "to_key_arn" {
  description = "The KMS key of --to, by key ARN; \"\" when the target is an HSM key (pkcs11:...)."
  type        = string
  default     = ""
}

variable "all_versions" {
  description = "--all-versions."
  type        = bool
  default     = false
}

variable "delete_old_versions" {
  description = "--delete-old-versions (with mode reencrypt and all_versions)."
  type        = bool
  default     = false
}

variable "check_acl" {
  description = "--check-acl."
  type        = bool
  default     = false
}

variable "copy_object_lock" {
  description = "--copy-object-lock."
  type        = bool
  default     = false
}

variable "expected_bucket_owner" {
  description = "--expected-bucket-owner: every S3 statement is limited to buckets of this account (s3:ResourceAccount)."
  type        = string
  default     = ""
}

variable "allow_verify" {
  description = "The role also runs `rotator verify --key TO` (rotator iam-policy --with verify)."
  type        = bool
  default     = true
}

variable "allow_ledger_queries" {
  description = "The role also runs `rotator status` and `rotator ledger` (counts, lineage, export) (rotator iam-policy --with ledger)."
  type        = bool
  default     = true
}

variable "report_bucket" {
  description = "--report s3://BUCKET/PREFIX/: the bucket the runs write their completion reports to (empty: reports are local files)."
  type        = string
  default     = ""
}

variable "report_prefix" {
  description = "--report s3://BUCKET/PREFIX/: the prefix (ending in /, or empty) of the reports, one object per run or shard."
  type        = string
  default     = ""
  validation {
    condition     = var.report_prefix == "" || endswith(var.report_prefix, "/")
    error_message = "report_prefix is a prefix: end it with / (each run or shard writes its own object under it)."
  }
}

# --- the ledger ------------------------------------------------------------------

variable "ledger_table_name" {
  description = "The DynamoDB ledger table (--ledger dynamodb://NAME)."
  type        = string
  default     = "rotator-ledger"
}

# --- where the runs run -------------------------------------------------------------

variable "lambda_zip" {
  description = "The S3 Batch Operations handler: a zip holding the `bootstrap` built from cmd/rotator-batchops (GOOS=linux, provided.al2023). \"\" creates no Lambda function."
  type        = string
  default     = ""
}

variable "lambda_architecture" {
  description = "arm64 or x86_64, as the bootstrap was built."
  type        = string
  default     = "arm64"
}

variable "lambda_run_args" {
  description = "ROTATOR_ARGS of the handler: the run's flags, as for `rotator run`, without --source (Batch Operations names the objects)."
  type        = string
  default     = ""
}

variable "container_image" {
  description = "The rotator container image of the AWS Batch job (the rotator binary as entry point). \"\" creates no job definition and no schedule."
  type        = string
  default     = ""
}

variable "batch_job_queue_arn" {
  description = "The AWS Batch job queue (Fargate) the scheduled job is submitted to."
  type        = string
  default     = ""
}

variable "shards" {
  description = "Array size of the scheduled job: each child runs `rotator run --shard auto` on its part (AWS_BATCH_JOB_ARRAY_INDEX/SIZE), all on one ledger."
  type        = number
  default     = 4
}

variable "run_command" {
  description = "The container's command: rotator's arguments for each shard."
  type        = list(string)
  default     = []
}

variable "vcpu" {
  description = "vCPUs of each shard (Fargate)."
  type        = string
  default     = "2"
}

variable "memory_mib" {
  description = "Memory of each shard in MiB (Fargate); keep it above --reencrypt-memory plus 512."
  type        = string
  default     = "4096"
}

variable "schedule_expression" {
  description = "When the rotation runs (EventBridge Scheduler): quarterly by default; yearly is cron(0 3 1 1 ? *)."
  type        = string
  default     = "cron(0 3 1 1,4,7,10 ? *)"
}

variable "schedule_timezone" {
  description = "Time zone of schedule_expression."
  type        = string
  default     = "UTC"
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
