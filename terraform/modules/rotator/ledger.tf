# The ledger: one DynamoDB table, schema in ledger/SCHEMA.md (rotator checks
# the key schema and the index when it opens it, and writes the schema item).

resource "aws_dynamodb_table" "ledger" {
  name         = var.ledger_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "PK"
  range_key    = "SK"

  attribute {
    name = "PK"
    type = "S"
  }
  attribute {
    name = "SK"
    type = "S"
  }
  attribute {
    name = "wk_shard"
    type = "S"
  }

  global_secondary_index {
    name            = "by_wrap_key"
    hash_key        = "wk_shard"
    projection_type = "INCLUDE"
    non_key_attributes = [
      "bucket", "object_key", "version_id", "wrap_key", "format", "placement",
      "cek_alg", "state", "etag", "run_id", "updated_at", "wrapped_key_sha256",
    ]
  }

  # The ledger is the audit trail of every key change: keep 35 days of
  # point-in-time backups and refuse an accidental delete.
  point_in_time_recovery {
    enabled = true
  }
  deletion_protection_enabled = true

  tags = var.tags
}
