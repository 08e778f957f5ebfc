# Sharded runs on AWS Batch (Fargate): one array job, each child a shard
# (`rotator run --shard auto` reads AWS_BATCH_JOB_ARRAY_INDEX and
# AWS_BATCH_JOB_ARRAY_SIZE), every shard on the one ledger table.

data "aws_iam_policy_document" "batch_execution_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "batch_execution" {
  count              = var.container_image == "" ? 0 : 1
  name               = "${var.name}-batch-execution"
  assume_role_policy = data.aws_iam_policy_document.batch_execution_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "batch_execution" {
  count      = var.container_image == "" ? 0 : 1
  role       = aws_iam_role.batch_execution[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_cloudwatch_log_group" "batch" {
  count             = var.container_image == "" ? 0 : 1
  name              = "/aws/batch/${var.name}"
  retention_in_days = 365
  tags              = var.tags
}

resource "aws_batch_job_definition" "rotator" {
  count                 = var.container_image == "" ? 0 : 1
  name                  = "${var.name}-run"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  container_properties = jsonencode({
    image            = var.container_image
    command          = var.run_command
    jobRoleArn       = aws_iam_role.rotator.arn
    executionRoleArn = aws_iam_role.batch_execution[0].arn
    resourceRequirements = [
      { type = "VCPU", value = var.vcpu },
      { type = "MEMORY", value = var.memory_mib },
    ]
    environment = [
      { name = "ROTATOR_LEDGER", value = "dynamodb://${aws_dynamodb_table.ledger.name}" },
    ]
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    networkConfiguration         = { assignPublicIp = "DISABLED" }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.batch[0].name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = "rotator"
      }
    }
  })

  # Exit codes (docs/reliability.md): 0 done, 3 objects reported (read the
  # report), 4 unfinished and 5 busy (resume later), 1 fatal. None is
  # retried blindly: the runbooks say what to do with each.
  retry_strategy {
    attempts = 1
  }
  timeout {
    attempt_duration_seconds = 86400
  }

  tags = var.tags
}
