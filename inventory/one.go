package inventory

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
)

// One is the item of one object named outside any listing, such as a task
// of an S3 Batch Operations job: bucket, key (decoded) and version id ("":
// the current version). It applies the same filter a listing does with
// Options.ExcludeSuffix and ReportUnpaired: keep is false for an
// instruction file (KEY+suffix where the object KEY exists: it is read
// with its object, never as one), and a key that ends with the suffix
// while no object KEY exists comes flagged Item.UnpairedSuffix. Telling
// them apart takes one ranged GET of KEY. The item's IsLatest is true when
// it names no version, as a CSV list's.
func One(ctx context.Context, client S3, bucket, key, versionID, suffix string) (it Item, keep bool, err error) {
	if err := checkBucket(bucket); err != nil {
		return Item{}, false, &Error{Op: "read task", Bucket: bucket, Kind: ErrMalformed, Err: err}
	}
	if err := checkKey(key); err != nil {
		return Item{}, false, &Error{Op: "read task", Bucket: bucket, Prefix: key, Kind: ErrMalformed, Err: err}
	}
	if strings.ContainsFunc(versionID, isSpaceOrControl) {
		return Item{}, false, &Error{Op: "read task", Bucket: bucket, Prefix: key, Kind: ErrMalformed,
			Err: fmt.Errorf("version id %q contains spaces or control characters", versionID)}
	}
	o := Options{ExcludeSuffix: suffix, ReportUnpaired: true}
	var excluded atomic.Int64
	keep, unpaired, err := o.filter(&excluded, client).partition().keep(ctx, bucket, key)
	if err != nil || !keep {
		return Item{}, false, err
	}
	return Item{Bucket: bucket, Key: key, VersionID: versionID, IsLatest: versionID == "", UnpairedSuffix: unpaired}, true, nil
}
