# The role the runs work as: the Batch (Fargate) job's role and the Lambda
# function's role, with the policy of policy.tf and nothing else.

data "aws_iam_policy_document" "rotator_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rotator" {
  name               = "${var.name}-run"
  assume_role_policy = data.aws_iam_policy_document.rotator_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "rotator" {
  role       = aws_iam_role.rotator.name
  policy_arn = aws_iam_policy.rotator.arn
}

# The Lambda function writes its logs; the Batch job's logs are written by
# the execution role below, not by rotator's role.
resource "aws_iam_role_policy_attachment" "rotator_lambda_logs" {
  count      = var.lambda_zip == "" ? 0 : 1
  role       = aws_iam_role.rotator.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

# S3 Batch Operations: the job's role reads the manifest, invokes the
# handler and writes the completion report.

variable "batchops_manifest_arns" {
  description = "Object ARNs (wildcards allowed) of the Batch Operations manifests the job reads."
  type        = list(string)
  default     = []
}

variable "batchops_report_arns" {
  description = "Object ARNs (wildcards allowed) under which Batch Operations writes its completion reports."
  type        = list(string)
  default     = []
}

data "aws_iam_policy_document" "batchops_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["batchoperations.s3.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "batchops" {
  count = var.lambda_zip == "" ? 0 : 1
  statement {
    sid       = "InvokeHandler"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.batchops[0].arn, "${aws_lambda_function.batchops[0].arn}:*"]
  }
  dynamic "statement" {
    for_each = length(var.batchops_manifest_arns) > 0 ? [1] : []
    content {
      sid       = "ReadManifest"
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = var.batchops_manifest_arns
    }
  }
  dynamic "statement" {
    for_each = length(var.batchops_report_arns) > 0 ? [1] : []
    content {
      sid       = "WriteReport"
      actions   = ["s3:PutObject"]
      resources = var.batchops_report_arns
    }
  }
}

resource "aws_iam_role" "batchops" {
  count              = var.lambda_zip == "" ? 0 : 1
  name               = "${var.name}-batch-operations"
  assume_role_policy = data.aws_iam_policy_document.batchops_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "batchops" {
  count  = var.lambda_zip == "" ? 0 : 1
  name   = "${var.name}-batch-operations"
  role   = aws_iam_role.batchops[0].id
  policy = data.aws_iam_policy_document.batchops[0].json
}
