package ledger

import (
	"context"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dynamodbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/rotator-dev/rotator/internal/testenv"
)

// dynamoStore creates a table of its own for one test (on dynalite in the
// local stack) and deletes it afterwards.
func dynamoStore(t testing.TB) func(opts ...Option) Ledger {
	testenv.Need(t, testenv.DynamoDB)
	table := testenv.Name(t)
	cfg := testenv.AWSConfig(t)
	t.Cleanup(func() {
		_, err := dynamodb.NewFromConfig(cfg).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
		if err != nil {
			t.Errorf("delete table %s: %v", table, err)
		}
	})
	var once sync.Once
	return func(opts ...Option) Ledger {
		loc := "dynamodb://" + table
		once.Do(func() { loc += "?create=true" })
		l, err := Open(ctx, loc, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
}

func TestDynamoDB(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	t.Parallel()
	testContract(t, dynamoStore, false)
}

func BenchmarkCommitDynamoDB(b *testing.B) { benchCommit(b, dynamoStore(b)) }

func TestDynamoDBTableChecks(t *testing.T) {
	testenv.Need(t, testenv.DynamoDB)
	table := testenv.Name(t)
	if _, err := Open(ctx, "dynamodb://"+table); err == nil {
		t.Fatal("opened a missing table without create=true")
	}
	// A table with the wrong layout is refused.
	cfg := testenv.AWSConfig(t)
	c := dynamodb.NewFromConfig(cfg)
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          "PAY_PER_REQUEST",
		AttributeDefinitions: []dynamodbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: "S"}},
		KeySchema:            []dynamodbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: "HASH"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	if _, err := Open(ctx, "dynamodb://"+table+"?create=true"); err == nil {
		t.Fatal("opened a table with another key schema")
	}
}
