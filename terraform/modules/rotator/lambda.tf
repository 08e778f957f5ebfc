# The S3 Batch Operations handler (cmd/rotator-batchops, built as
# `bootstrap` for provided.al2023): one task per object, the same per-object
# core as `rotator run`, on the DynamoDB ledger.

resource "aws_cloudwatch_log_group" "batchops" {
  count             = var.lambda_zip == "" ? 0 : 1
  name              = "/aws/lambda/${var.name}-batchops"
  retention_in_days = 365
  tags              = var.tags
}

resource "aws_lambda_function" "batchops" {
  count            = var.lambda_zip == "" ? 0 : 1
  function_name    = "${var.name}-batchops"
  role             = aws_iam_role.rotator.arn
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  memory_size      = 1024
  timeout          = 900

  environment {
    variables = {
      ROTATOR_ARGS   = var.lambda_run_args
      ROTATOR_LEDGER = "dynamodb://${aws_dynamodb_table.ledger.name}"
    }
  }

  depends_on = [aws_cloudwatch_log_group.batchops]
  tags       = var.tags
}
