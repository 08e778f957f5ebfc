package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	bolt "go.etcd.io/bbolt"
)

// MaxUploadStateBytes bounds Upload.State (DynamoDB items are limited to
// 400 KB).
const MaxUploadStateBytes = 300 << 10

// Upload is the checkpoint of one object's re-encryption in progress: the S3
// multipart upload it writes and an opaque state that package reencrypt
// encodes (parts uploaded and their ETags, sealed GHASH states, the new
// envelope with its data key wrapped). It never holds a plaintext key; the
// ledger does not interpret State. Its identity is (RunID, ID).
type Upload struct {
	ID        ObjectID // the object version being re-encrypted
	RunID     string
	UploadID  string    // the S3 multipart upload id; may be empty
	State     []byte    // at most MaxUploadStateBytes
	UpdatedAt time.Time // set by the ledger on every save
}

// uploadRecord is an Upload as both backends store it.
type uploadRecord struct {
	Bucket    string `json:"bucket" dynamodbav:"bucket"`
	Key       string `json:"object_key" dynamodbav:"object_key"`
	VersionID string `json:"version_id,omitempty" dynamodbav:"version_id,omitempty"`
	RunID     string `json:"run_id" dynamodbav:"run_id"`
	UploadID  string `json:"upload_id,omitempty" dynamodbav:"upload_id,omitempty"`
	State     []byte `json:"state,omitempty" dynamodbav:"state,omitempty"`
	UpdatedAt string `json:"updated_at" dynamodbav:"updated_at"`
}

func (r uploadRecord) upload() (Upload, error) {
	t, err := parseTime(r.UpdatedAt)
	if err != nil {
		return Upload{}, fmt.Errorf("ledger: corrupt upload checkpoint: %w", err)
	}
	return Upload{ID: ObjectID{Bucket: r.Bucket, Key: r.Key, VersionID: r.VersionID}, RunID: r.RunID,
		UploadID: r.UploadID, State: r.State, UpdatedAt: t}, nil
}

func checkUpload(u Upload) error {
	if err := validRunID(u.RunID); err != nil {
		return err
	}
	if err := validID(u.ID); err != nil {
		return err
	}
	if len(u.State) > MaxUploadStateBytes {
		return fmt.Errorf("%w: upload checkpoint of %s: %d bytes of state, at most %d (hint: the state must fit one DynamoDB item)", ErrInvalid, u.ID, len(u.State), MaxUploadStateBytes)
	}
	if err := validStrings(u.UploadID); err != nil {
		return fmt.Errorf("upload checkpoint of %s: upload id: %w", u.ID, err)
	}
	return nil
}

// checkUploadID validates the identity (runID, id) of a checkpoint.
func checkUploadID(runID string, id ObjectID) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	return validID(id)
}

func uploadNotFound(runID string, id ObjectID) error {
	return fmt.Errorf("%w: upload checkpoint of %s by run %s", ErrNotFound, id, runID)
}

func uploadNotClaimed(u Upload, owner, holder string) error {
	return notHeld("save the checkpoint of", u.ID, owner, holder)
}

// bbolt: bucket "uploads", keyed by run first so that Uploads is a prefix
// scan, like prepared events.

func uploadTuple(run string, id ObjectID) []byte {
	return tupleKey(run, id.Bucket, id.Key, id.VersionID)
}

func (b *boltLedger) SaveUpload(ctx context.Context, owner string, u Upload) error {
	if err := checkUpload(u); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, u.RunID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.o.now()
	var res error
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		cl, err := getClaim(b.codec(tx), u.ID)
		if err != nil {
			return err
		}
		if cl.Owner != owner {
			res = uploadNotClaimed(u, owner, cl.Owner)
			return nil
		}
		return putJSON(tx.Bucket(bucketUploads), uploadTuple(u.RunID, u.ID), uploadRecord{
			Bucket: u.ID.Bucket, Key: u.ID.Key, VersionID: u.ID.VersionID, RunID: u.RunID,
			UploadID: u.UploadID, State: u.State, UpdatedAt: formatTime(now)})
	})
	if err != nil {
		return fmt.Errorf("ledger: save checkpoint of %s: %w", u.ID, err)
	}
	return res
}

func (b *boltLedger) GetUpload(ctx context.Context, runID string, id ObjectID) (Upload, error) {
	if err := checkUploadID(runID, id); err != nil {
		return Upload{}, err
	}
	var rec uploadRecord
	var found bool
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = getJSON(tx.Bucket(bucketUploads), uploadTuple(runID, id), &rec)
		return err
	})
	if err != nil {
		return Upload{}, fmt.Errorf("ledger: get checkpoint of %s: %w", id, err)
	}
	if !found {
		return Upload{}, uploadNotFound(runID, id)
	}
	return rec.upload()
}

func (b *boltLedger) DeleteUpload(ctx context.Context, owner, runID string, id ObjectID) error {
	if err := checkUploadID(runID, id); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, runID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var res error
	err := b.write(func(tx *bolt.Tx) error {
		res = nil
		k := uploadTuple(runID, id)
		if tx.Bucket(bucketUploads).Get(k) == nil {
			return nil
		}
		cl, err := getClaim(b.codec(tx), id)
		if err != nil {
			return err
		}
		if cl.Owner != owner {
			res = notHeld("delete the checkpoint of", id, owner, cl.Owner)
			return nil
		}
		return tx.Bucket(bucketUploads).Delete(k)
	})
	if err != nil {
		return fmt.Errorf("ledger: delete checkpoint of %s: %w", id, err)
	}
	return res
}

func (b *boltLedger) Uploads(ctx context.Context, runID string, fn func(Upload) error) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	return pages(ctx, b, bucketUploads, tupleKey(runID), func(_ *bolt.Tx, _, v []byte) (Upload, error) {
		var rec uploadRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return Upload{}, fmt.Errorf("ledger: corrupt upload checkpoint: %w", err)
		}
		return rec.upload()
	}, fn)
}

// DynamoDB: a checkpoint is one item (t = upload) in the partition of its
// run that also holds the run's prepared events on the object (see
// preparedPK), so that Uploads is a query of the run's 16 partitions. Its
// sort key starts with "upl#", which no prepared event's does.
//
// SaveUpload reads the claim (strongly consistent) and then puts the item
// unconditionally, as Prepare does: a worker that loses its claim in
// between writes only its own run's checkpoint, which the new holder never
// reads.

const (
	typeUpload   = "upload"
	uploadPrefix = "upl#"
)

// uploadKey returns the partition and sort key of the checkpoint of
// (run, id).
func uploadKey(run string, id ObjectID) (pk, sk string) {
	opk := objectPK(id.Bucket, id.Key)
	return preparedPK(run, opk), uploadSK(opk, id.VersionID)
}

// uploadSK is unique per object version within the run's partition.
func uploadSK(objPK, v string) string {
	return uploadPrefix + objPK[len("obj#"):] + "#" + escape(v)
}

func (d *dynamoLedger) SaveUpload(ctx context.Context, owner string, u Upload) error {
	if err := checkUpload(u); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, u.RunID); err != nil {
		return err
	}
	if err := d.held(ctx, u.ID, owner, "save the checkpoint of"); err != nil {
		return err
	}
	rec, err := attributevalue.MarshalMap(uploadRecord{Bucket: u.ID.Bucket, Key: u.ID.Key, VersionID: u.ID.VersionID,
		RunID: u.RunID, UploadID: u.UploadID, State: u.State, UpdatedAt: formatTime(d.o.now())})
	if err != nil {
		return err
	}
	pk, sk := uploadKey(u.RunID, u.ID)
	rec[attrPK], rec[attrSK], rec[attrType] = s(pk), s(sk), s(typeUpload)
	if _, err := d.c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: rec}); err != nil {
		return d.wrap("save checkpoint of "+u.ID.String(), err)
	}
	return nil
}

func (d *dynamoLedger) GetUpload(ctx context.Context, runID string, id ObjectID) (Upload, error) {
	if err := checkUploadID(runID, id); err != nil {
		return Upload{}, err
	}
	pk, sk := uploadKey(runID, id)
	item, err := d.getItem(ctx, pk, sk)
	if err != nil {
		return Upload{}, err
	}
	if item == nil {
		return Upload{}, uploadNotFound(runID, id)
	}
	return decodeUpload(item, &id)
}

// decodeUpload decodes a checkpoint item; with want, it also checks that the
// checkpoint is want's (a hash collision would show here).
func decodeUpload(item map[string]types.AttributeValue, want *ObjectID) (Upload, error) {
	var rec uploadRecord
	if err := attributevalue.UnmarshalMap(item, &rec); err != nil {
		return Upload{}, fmt.Errorf("ledger: decode upload checkpoint %s/%s: %w", strAttr(item, attrPK), strAttr(item, attrSK), err)
	}
	u, err := rec.upload()
	if err != nil {
		return Upload{}, err
	}
	if want != nil && u.ID != *want {
		return Upload{}, fmt.Errorf("ledger: upload checkpoint %s/%s is on %s, not %s", strAttr(item, attrPK), strAttr(item, attrSK), u.ID, *want)
	}
	return u, nil
}

func (d *dynamoLedger) DeleteUpload(ctx context.Context, owner, runID string, id ObjectID) error {
	if err := checkUploadID(runID, id); err != nil {
		return err
	}
	if err := checkOwnerRun(owner, runID); err != nil {
		return err
	}
	pk, sk := uploadKey(runID, id)
	if item, err := d.getItem(ctx, pk, sk); err != nil || item == nil {
		return err
	}
	if err := d.held(ctx, id, owner, "delete the checkpoint of"); err != nil {
		return err
	}
	if _, err := d.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(d.table), Key: key(pk, sk)}); err != nil {
		return d.wrap("delete checkpoint of "+id.String(), err)
	}
	return nil
}

func (d *dynamoLedger) Uploads(ctx context.Context, runID string, fn func(Upload) error) error {
	if err := validRunID(runID); err != nil {
		return err
	}
	for i := range gsiShards {
		p := dynamodb.NewQueryPaginator(d.c, &dynamodb.QueryInput{
			TableName:              aws.String(d.table),
			KeyConditionExpression: aws.String("PK = :pk AND begins_with(SK, :upl)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": s(preparedShard(runID, strconv.FormatInt(int64(i), 16))), ":upl": s(uploadPrefix),
			},
			ConsistentRead: aws.Bool(true),
			Limit:          d.limit(),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return d.wrap("checkpoints of run "+runID, err)
			}
			for _, item := range out.Items {
				u, err := decodeUpload(item, nil)
				if err != nil {
					return err
				}
				if err := fn(u); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
