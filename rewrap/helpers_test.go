package rewrap

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/miekg/pkcs11"

	"github.com/rotator-dev/rotator/envelope"
	"github.com/rotator-dev/rotator/hsmpool"
	"github.com/rotator-dev/rotator/internal/testenv"
	"github.com/rotator-dev/rotator/kmsserver"
)

// PKCS#11 state is per process, and some tests log in with wrong PINs: like
// hsmpool's, the HSM tests never run in parallel, and each closes its Deps
// (so its pools) before the next one starts. KMS-only tests run in parallel,
// each against its own in-process server.

// fastKMS are the retry settings of test Deps: short pauses, so tests of
// failing requests take seconds, not minutes.
func fastKMS(d *Deps) {
	d.KMSMaxAttempts = 10
	d.KMSMaxBackoff = 50 * time.Millisecond
}

// newDeps returns Deps over cfg, closed when the test ends.
func newDeps(t testing.TB, cfg aws.Config, edit func(*Deps)) *Deps {
	t.Helper()
	d := &Deps{AWS: cfg}
	fastKMS(d)
	if edit != nil {
		edit(d)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Deps.Close: %v", err)
		}
	})
	return d
}

// kmsEnv is a KMS server to test against: an in-process one (srv set) or the
// stack's.
type kmsEnv struct {
	name   string
	srv    *kmsserver.Server // nil for the stack's server
	cfg    aws.Config
	client *kms.Client // default region
}

// inProcessKMS starts an in-process KMS test server for the test.
func inProcessKMS(t testing.TB, opts kmsserver.Options) *kmsEnv {
	t.Helper()
	s := kmsserver.NewTestServer(t, opts)
	return &kmsEnv{name: "inprocess", srv: s, cfg: s.AWSConfig(""), client: s.Client("", noRetries)}
}

func noRetries(o *kms.Options) { o.Retryer = aws.NopRetryer{} }

// stackKMS is the local stack's KMS test server (testenv.Need).
func stackKMS(t testing.TB) *kmsEnv {
	t.Helper()
	testenv.Need(t, testenv.KMS)
	cfg := testenv.AWSConfig(t)
	return &kmsEnv{name: "stack", cfg: cfg, client: kms.NewFromConfig(cfg)}
}

// clientFor returns a KMS client of the environment for region.
func (e *kmsEnv) clientFor(region string) *kms.Client {
	return kms.NewFromConfig(e.cfg, func(o *kms.Options) { o.Region = region })
}

// createKey creates a KMS key with client c and returns its ARN. Keys on the
// stack's server are scheduled for deletion when the test ends.
func (e *kmsEnv) createKey(t testing.TB, c *kms.Client, desc string) string {
	t.Helper()
	if c == nil {
		c = e.client
	}
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String("rewrap test " + desc + " " + testenv.Name(t))})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	arn := *out.KeyMetadata.Arn
	if e.srv == nil {
		t.Cleanup(func() {
			_, _ = c.ScheduleKeyDeletion(context.Background(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn), PendingWindowInDays: aws.Int32(7)})
		})
	}
	return arn
}

// decrypt decrypts a KMS-wrapped key directly with KMS Decrypt, naming the
// key and passing the stored context: how a reader of the object does it.
func (e *kmsEnv) decrypt(t testing.TB, c *kms.Client, keyARN string, w Wrapped) *envelope.DataKey {
	t.Helper()
	if c == nil {
		c = e.client
	}
	out, err := c.Decrypt(context.Background(), &kms.DecryptInput{KeyId: aws.String(keyARN), CiphertextBlob: w.Key, EncryptionContext: w.MatDesc})
	if err != nil {
		t.Fatalf("KMS Decrypt with the stored context: %v", err)
	}
	defer clear(out.Plaintext)
	return envelope.NewDataKey(out.Plaintext)
}

func mustSpec(t testing.TB, s string) Spec {
	t.Helper()
	spec, err := ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func mustOpen(t testing.TB, d *Deps, spec string) Keyring {
	t.Helper()
	k, err := Open(context.Background(), mustSpec(t, spec), d)
	if err != nil {
		t.Fatalf("Open(%s): %v", spec, err)
	}
	return k
}

func newDEK(t testing.TB) *envelope.DataKey {
	t.Helper()
	dk, err := envelope.GenerateDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dk.Clear)
	return dk
}

// writeAESKey writes a fresh AES key to a file and returns the file and the
// key.
func writeAESKey(t testing.TB) (string, []byte) {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	f := filepath.Join(t.TempDir(), "kek.key")
	if err := os.WriteFile(f, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, k
}

var rsaKeys sync.Map // path -> *rsa.PrivateKey

// testRSA returns the path of testdata/NAME and its private key (parsed by
// the test, not by the code under test).
func testRSA(t testing.TB, name string) (string, *rsa.PrivateKey) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := rsaKeys.Load(path); ok {
		return path, k.(*rsa.PrivateKey)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := parseRSAKey(b)
	if err != nil || priv == nil {
		t.Fatalf("test key %s: %v", name, err)
	}
	rsaKeys.Store(path, priv)
	return path, priv
}

// --- PKCS#11 ----------------------------------------------------------------

// hsmDeps sets d's PKCS#11 defaults from the stack (testenv.Need).
func hsmDeps(t testing.TB, d *Deps) {
	t.Helper()
	testenv.Need(t, testenv.PKCS11)
	d.PKCS11Module = os.Getenv(testenv.EnvPKCS11Module)
	d.PKCS11PINSource = "file:" + os.Getenv(testenv.EnvPKCS11PinFile)
	d.PKCS11PoolSize = 4
	d.PKCS11AcquireTimeout = 20 * time.Second
}

// hsmSpec returns the spec of an HSM key label on the stack's token.
func hsmSpec(label string) string {
	return "pkcs11:token=" + os.Getenv(testenv.EnvPKCS11Token) + ";object=" + label
}

// testPool returns d's pool on the stack's token, logged in through hsmpool.
func testPool(t testing.TB, d *Deps) *hsmpool.Pool {
	t.Helper()
	p, err := d.pool(context.Background(), mustSpec(t, hsmSpec("x")).PKCS11)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	return p
}

var (
	rawOnce sync.Once
	rawCtx  *pkcs11.Ctx
)

// raw returns a PKCS#11 handle of the stack's module for what hsmpool does
// not offer (importing a key with a known value, the benchmark's bare loop).
// It is used only while a pool is open: the library is initialised and the
// token logged in by hsmpool, and this code never finalises or logs out.
func raw(t testing.TB) *pkcs11.Ctx {
	t.Helper()
	rawOnce.Do(func() { rawCtx = pkcs11.New(os.Getenv(testenv.EnvPKCS11Module)) })
	if rawCtx == nil {
		t.Fatal("cannot load the PKCS#11 module")
	}
	if err := rawCtx.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatalf("C_Initialize: %v", err)
	}
	return rawCtx
}

// rawSession opens a session on the stack's token (logged in, because a pool
// of d is) and closes it when the test ends.
func rawSession(t testing.TB, d *Deps) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	testPool(t, d)
	c := raw(t)
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil || ti.Label != os.Getenv(testenv.EnvPKCS11Token) {
			continue
		}
		h, err := c.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.CloseSession(h) })
		info, err := c.GetSessionInfo(h)
		if err != nil || info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
			t.Fatalf("raw session not logged in: %+v %v", info, err)
		}
		return c, h
	}
	t.Fatal("token not found")
	return nil, 0
}

// hsmKey imports an AES-256 key with a known value under a unique label and
// returns its spec and value; the key is destroyed when the test ends
// (before d closes).
func hsmKey(t testing.TB, d *Deps, suffix string) (string, []byte) {
	t.Helper()
	label := "rewrap-" + testenv.Name(t) + "-" + suffix
	value := make([]byte, 32)
	_, _ = rand.Read(value)
	c, h := rawSession(t, d)
	_, err := c.CreateObject(h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	})
	if err != nil {
		t.Fatalf("import HSM key: %v", err)
	}
	p := testPool(t, d)
	t.Cleanup(func() { destroyHSMKey(t, p, label) })
	return hsmSpec(label), value
}

func destroyHSMKey(t testing.TB, p *hsmpool.Pool, label string) {
	t.Helper()
	err := p.Do(context.Background(), func(s *hsmpool.Session) error { return s.DestroyKey(label) })
	if err != nil && !errors.Is(err, hsmpool.ErrKeyNotFound) {
		t.Errorf("destroy HSM key %s: %v", label, err)
	}
}

// jsonString renders v for failure messages.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
