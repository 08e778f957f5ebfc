# The scheduled rotation: EventBridge Scheduler submits the array job
# (quarterly by default) through its universal target for batch:SubmitJob.

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count              = local.scheduled ? 1 : 0
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  count = local.scheduled ? 1 : 0
  statement {
    sid     = "SubmitRotation"
    actions = ["batch:SubmitJob"]
    resources = [
      var.batch_job_queue_arn,
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${aws_batch_job_definition.rotator[0].name}",
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${aws_batch_job_definition.rotator[0].name}:*",
    ]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count  = local.scheduled ? 1 : 0
  name   = "${var.name}-scheduler"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler[0].json
}

locals {
  scheduled = var.container_image != "" && var.batch_job_queue_arn != ""
}

resource "aws_scheduler_schedule" "rotation" {
  count                        = local.scheduled ? 1 : 0
  name                         = "${var.name}-rotation"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:aws:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.scheduler[0].arn
    input = jsonencode(merge(
      {
        JobName       = "${var.name}-rotation"
        JobQueue      = var.batch_job_queue_arn
        JobDefinition = aws_batch_job_definition.rotator[0].arn
      },
      # An array job has 2 to 10,000 children; one shard is a plain job.
      [for n in [var.shards] : { ArrayProperties = { Size = n } } if n > 1]...
    ))
    retry_policy {
      maximum_retry_attempts = 0
    }
  }
}
