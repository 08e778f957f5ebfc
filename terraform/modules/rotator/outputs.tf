output "ledger_table_name" {
  description = "The ledger: --ledger dynamodb://NAME."
  value       = aws_dynamodb_table.ledger.name
}

output "ledger_table_arn" {
  value = aws_dynamodb_table.ledger.arn
}

output "role_arn" {
  description = "The role rotator's runs work as (Batch job role, Lambda role)."
  value       = aws_iam_role.rotator.arn
}

output "policy_json" {
  description = "The runs' policy: what `rotator iam-policy` prints for the same flags."
  value       = jsonencode(local.policy)
}

output "batchops_function_arn" {
  description = "The S3 Batch Operations handler (null without lambda_zip)."
  value       = one(aws_lambda_function.batchops[*].arn)
}

output "batchops_role_arn" {
  description = "The role to give S3 Batch Operations jobs (null without lambda_zip)."
  value       = one(aws_iam_role.batchops[*].arn)
}

output "job_definition_arn" {
  description = "The AWS Batch job definition of sharded runs (null without container_image)."
  value       = one(aws_batch_job_definition.rotator[*].arn)
}

output "schedule_arn" {
  description = "The rotation's schedule (null without container_image and batch_job_queue_arn)."
  value       = one(aws_scheduler_schedule.rotation[*].arn)
}
