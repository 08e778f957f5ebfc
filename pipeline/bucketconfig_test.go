package pipeline

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rotator-dev/rotator/commit"
	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/internal/testenv"
)

// bucketConfigServer answers the three bucket configuration reads with the
// XML bodies AWS documents (or an error code), for what neither server of
// the stack implements: replication needs a remote target on MinIO and is
// not implemented by versitygw.
func bucketConfigServer(t *testing.T, answers map[string]string) *s3.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for q, body := range answers {
			if !r.URL.Query().Has(q) {
				continue
			}
			if code, ok := strings.CutPrefix(body, "error:"); ok {
				status := map[string]int{"AccessDenied": 403, "NotImplemented": 501}[code]
				if status == 0 {
					status = 404
				}
				w.WriteHeader(status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>m</Message></Error>`, code)
				return
			}
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+body)
			return
		}
		w.WriteHeader(400)
	}))
	t.Cleanup(srv.Close)
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
}

func TestReadBucketConfigParsesEachConfiguration(t *testing.T) {
	c := bucketConfigServer(t, map[string]string{
		"versioning": `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>`,
		"replication": `<ReplicationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Role>arn:aws:iam::1:role/r</Role>` +
			`<Rule><ID>all</ID><Status>Enabled</Status><Priority>1</Priority><Filter><Prefix>data/</Prefix></Filter><Destination><Bucket>arn:aws:s3:::dr</Bucket></Destination></Rule>` +
			`<Rule><ID>off</ID><Status>Disabled</Status><Priority>2</Priority><Filter><Prefix></Prefix></Filter><Destination><Bucket>arn:aws:s3:::off</Bucket></Destination></Rule>` +
			`<Rule><ID>tagged</ID><Status>Enabled</Status><Priority>3</Priority><Filter><And><Prefix>data/x/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter><Destination><Bucket>arn:aws:s3:::second</Bucket></Destination></Rule>` +
			`</ReplicationConfiguration>`,
		"lifecycle": `<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
			`<Rule><ID>nc</ID><Status>Enabled</Status><Filter><Prefix>data/</Prefix></Filter><NoncurrentVersionExpiration><NoncurrentDays>30</NoncurrentDays></NoncurrentVersionExpiration></Rule>` +
			`<Rule><ID>short</ID><Status>Enabled</Status><Filter><Prefix>data/tmp/</Prefix></Filter><NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays></NoncurrentVersionExpiration></Rule>` +
			`<Rule><ID>big</ID><Status>Enabled</Status><Filter><ObjectSizeGreaterThan>2147483648</ObjectSizeGreaterThan></Filter><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule>` +
			`<Rule><ID>current</ID><Status>Enabled</Status><Filter><Prefix></Prefix></Filter><Expiration><Days>365</Days></Expiration></Rule>` +
			`</LifecycleConfiguration>`,
	})
	bc, err := ReadBucketConfig(context.Background(), c, "b")
	if err != nil {
		t.Fatal(err)
	}
	if bc.Versioning != VersioningEnabled || len(bc.Unread) > 0 {
		t.Fatalf("versioning %q, unread %q", bc.Versioning, bc.Unread)
	}
	if len(bc.Replication) != 2 || bc.Replication[0].Prefix != "data/" || bc.Replication[1].Destination != "arn:aws:s3:::second" || !bc.Replication[1].Tags {
		t.Errorf("replication rules %+v: want the two enabled ones, the second filtering tags", bc.Replication)
	}
	if len(bc.NoncurrentExpiration) != 3 {
		t.Fatalf("noncurrent rules %+v: want the three with NoncurrentVersionExpiration", bc.NoncurrentExpiration)
	}
	for _, tc := range []struct {
		key        string
		size       int64
		days, reps int
	}{
		{"data/a", 100, 30, 2}, // the tag rule counts: plan cannot see tags
		{"data/tmp/a", 100, 7, 1},
		{"data/a", 3 << 30, 1, 1},
		{"other/a", 100, 0, 0},
	} {
		if d := bc.noncurrentDays(tc.key, tc.size); d != tc.days {
			t.Errorf("noncurrentDays(%s, %d) = %d, want %d", tc.key, tc.size, d, tc.days)
		}
		if r := bc.replicas(tc.key); tc.key != "data/a" && r != tc.reps || tc.key == "data/a" && r != 1 {
			t.Errorf("replicas(%s) = %d", tc.key, r)
		}
	}
	if r := bc.replicas("data/x/a"); r != 2 {
		t.Errorf("replicas(data/x/a) = %d, want 2 (both destinations)", r)
	}

	// A self-copy of a 1 GiB object under data/: the old body stays for
	// 30 days (one GB-month) and is shipped once.
	wc := costOfWrite(&bc, "data/a", "v1", gb, gb)
	if wc.noncurrent != gb || wc.expiring != gb || wc.days != 30 || wc.replicated != gb || wc.replicas != 1 {
		t.Errorf("costOfWrite = %+v", wc)
	}
	once, monthly := wc.usd(DefaultPrices)
	if want := 0.023 + 0.02 + 0.000005; math.Abs(once-want) > 1e-9 || monthly != 0 {
		t.Errorf("usd = %g, %g; want %g once, nothing monthly", once, monthly, want)
	}
	// Outside every rule: kept until deleted, billed per month.
	wc = costOfWrite(&bc, "other/a", "v1", gb, gb)
	if once, monthly := wc.usd(DefaultPrices); once != 0 || math.Abs(monthly-0.023) > 1e-9 {
		t.Errorf("usd outside the rules = %g, %g; want 0 once, 0.023 monthly", once, monthly)
	}
}

func TestReadBucketConfigSaysWhatItCouldNotRead(t *testing.T) {
	c := bucketConfigServer(t, map[string]string{
		"versioning":  `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Suspended</Status></VersioningConfiguration>`,
		"replication": "error:AccessDenied",
		"lifecycle":   "error:NotImplemented",
	})
	bc, err := ReadBucketConfig(context.Background(), c, "b")
	if err != nil {
		t.Fatal(err)
	}
	if bc.Versioning != VersioningSuspended || len(bc.Unread) != 2 {
		t.Fatalf("%+v", bc)
	}
	if !strings.Contains(bc.Unread[0], "grant s3:GetReplicationConfiguration on arn:aws:s3:::b") {
		t.Errorf("unread %q: want the permission to grant", bc.Unread[0])
	}
	if !strings.Contains(bc.Unread[1], "does not implement") {
		t.Errorf("unread %q: want the server's limit", bc.Unread[1])
	}
	// Suspended versioning keeps a real version, replaces the null one.
	if !bc.keepsNoncurrent("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY") || bc.keepsNoncurrent("null") {
		t.Error("suspended versioning: want a real version kept and the null version replaced")
	}

	c = bucketConfigServer(t, map[string]string{
		"versioning":  `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>`,
		"replication": "error:ReplicationConfigurationNotFoundError",
		"lifecycle":   "error:NoSuchLifecycleConfiguration",
	})
	bc, err = ReadBucketConfig(context.Background(), c, "b")
	if err != nil || bc.Versioning != VersioningOff || len(bc.Unread) > 0 || bc.Replication != nil || bc.NoncurrentExpiration != nil {
		t.Errorf("a bucket never configured: %+v, %v", bc, err)
	}
	if wc := costOfWrite(&bc, "k", "", 100, 100); wc.noncurrent != 0 || wc.replicated != 0 || wc.written != 100 {
		t.Errorf("costOfWrite in an unversioned bucket = %+v", wc)
	}
}

// On MinIO, through the SDK: versioning and a lifecycle rule are read as
// they were set; replication is not configured.
func TestReadBucketConfigOnMinIO(t *testing.T) {
	c := testenv.MinIOS3(t)
	ctx := context.Background()
	b := testenv.Name(t)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &b}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.EmptyBucket(c, b) })
	if _, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: &b,
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: &b,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
			ID: aws.String("nc"), Status: types.ExpirationStatusEnabled, Filter: &types.LifecycleRuleFilter{Prefix: aws.String("p/")},
			NoncurrentVersionExpiration: &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(45)}}}}}); err != nil {
		t.Fatal(err)
	}
	bc, err := ReadBucketConfig(ctx, c, b)
	if err != nil {
		t.Fatal(err)
	}
	if bc.Versioning != VersioningEnabled || len(bc.Unread) > 0 || len(bc.Replication) > 0 ||
		len(bc.NoncurrentExpiration) != 1 || bc.NoncurrentExpiration[0].Days != 45 || bc.NoncurrentExpiration[0].Prefix != "p/" {
		t.Errorf("%+v", bc)
	}
}

// The case the issue reports: 285 million objects of 100 KB (envelope V2 in
// metadata, a KMS ciphertext blob of 184 bytes as KMS writes them) in a
// versioned bucket replicated to another region, no lifecycle rule. A
// rotation as they are copies every body (a noncurrent copy kept, the
// body shipped again); after the move a rotation rewrites the instruction
// files. Logged for docs, checked against the formulas of byteCost.
func TestPlacementCostsOfTheReportedBucket(t *testing.T) {
	const n, size = 285e6, 100_000
	env, _, err := envelope.EncryptContent(envelope.V2, envelope.NewDataKey(make([]byte, 32)), make([]byte, size-16), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := envelope.NewKMSContext(envelope.ContentAESGCM, nil)
	if env, err = env.WithWrappedKey(make([]byte, 184), envelope.WrapKMSContext, ec); err != nil {
		t.Fatal(err)
	}
	_, body, err := env.InstructionFile()
	if err != nil {
		t.Fatal(err)
	}
	bc := &BucketConfig{Versioning: VersioningEnabled, Replication: []ReplicationRule{{Destination: "arn:aws:s3:::dr"}}}
	cl := &Classification{Obj: &commit.Object{Bucket: "b", Key: "k", Size: size, VersionID: "v1"}, Env: env}
	p := &Plan{}
	p.comparePlacement(cl, bc, DefaultPrices, 5<<30)
	pc := p.Placement
	pr := DefaultPrices
	ib := float64(len(body))
	wantRotation := pr.S3Put + (float64(size)/gb*pr.ReplicationGB + pr.S3Put)
	wantMoved := 2*pr.S3Get + pr.S3Put + (ib/gb*pr.ReplicationGB + pr.S3Put)
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Abs(want) }
	if !near(pc.RotationOnceUSD, wantRotation) || !near(pc.MovedRotationOnceUSD, wantMoved) ||
		!near(pc.RotationMonthlyUSD, float64(size)/gb*pr.StorageGBMonth) || !near(pc.MovedRotationMonthlyUSD, ib/gb*pr.StorageGBMonth) {
		t.Errorf("placement costs %+v", pc)
	}
	t.Logf("%.0f objects of %d bytes, instruction file %d bytes: rotation $%.0f + $%.0f/month; move $%.0f + $%.0f/month; rotation after the move $%.0f + $%.0f/month",
		n, size, len(body), n*pc.RotationOnceUSD, n*pc.RotationMonthlyUSD, n*pc.MoveOnceUSD, n*pc.MoveMonthlyUSD,
		n*pc.MovedRotationOnceUSD, n*pc.MovedRotationMonthlyUSD)
}
