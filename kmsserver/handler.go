package kmsserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "111122223333"
)

// maxBody bounds a request body: KMS requests are small (the largest field is
// a 6 KiB ciphertext blob, base64-encoded).
const maxBody = 1 << 20

// Options configure a Handler at start-up. The zero value is a server for
// account 111122223333 in us-east-1 without rate cap, latency, seed or state
// file.
type Options struct {
	// Addr is the listen address for Start (not used by New). It must be a
	// loopback address; the default is 127.0.0.1:0 (a free port).
	Addr string
	// Region and Account are the defaults for requests: Region when the
	// Authorization header names none, Account always (every caller belongs
	// to it; other accounts' keys are reached by ARN).
	Region  string
	Account string
	// RPS caps the cryptographic operations (Encrypt, Decrypt, ReEncrypt,
	// GenerateDataKey, GenerateDataKeyWithoutPlaintext) per account and region,
	// like the shared KMS request quota; above it requests fail with
	// ThrottlingException. Zero or less means no cap. Burst is the bucket size
	// (default: RPS rounded up, at least 1).
	RPS   float64
	Burst int
	// ThrottleFraction throttles that fraction (0 to 1) of the cryptographic
	// operations at random, whatever the request rate: what a client sees
	// when other applications of the account spend the shared quota. Each
	// request is drawn independently, before the RPS cap (a request
	// throttled at random takes no token). ThrottleSeed seeds the draws
	// (0: a random seed); with a seed the sequence of outcomes is fixed, so
	// the same requests sent one after another meet the same throttles.
	ThrottleFraction float64
	ThrottleSeed     uint64
	// Latency is added to every request, plus a uniformly random extra of up
	// to Jitter.
	Latency time.Duration
	Jitter  time.Duration
	// SeedFile names a seed file (see the package documentation); Seed gives
	// one in memory. Both may be used.
	SeedFile string
	Seed     *Seed
	// StateFile, if set, is loaded at start (when it exists) and rewritten
	// atomically after every change to keys or aliases, so a restarted server
	// keeps its keys. It holds key material in the clear: it is test data.
	StateFile string
	// AllowCrossRegion lets a key ARN reach a key in a region other than the
	// request's. Real KMS refuses ("Invalid arn"); keep it off unless a test
	// needs the shortcut.
	AllowCrossRegion bool
	// Now is the clock (default time.Now); tests move it to expire keys
	// pending deletion.
	Now func() time.Time
	// Logf, if set, receives one line per request (operation, status, error
	// code, duration). Key material and plaintext are never logged.
	Logf func(format string, args ...any)
}

// Handler is an http.Handler speaking the AWS KMS JSON 1.1 protocol. It is
// safe for concurrent use. Its methods let in-process tests adjust rate,
// latency and faults and read request counters while it serves.
type Handler struct {
	region, account  string
	allowCrossRegion bool
	now              func() time.Time
	stateFile        string
	logf             func(string, ...any)

	mu     sync.RWMutex // guards st and expiry
	st     *store
	expiry time.Time // earliest deletion date of a pending key, or zero

	ctlMu    sync.Mutex // guards the fields below
	latency  time.Duration
	jitter   time.Duration
	rps      float64
	burst    int
	limiters map[string]*rate.Limiter
	faults   map[string]*fault
	counts   map[string]int64
	throttle float64    // fraction throttled at random
	rng      *rand.Rand // draws for throttle
}

type fault struct {
	code string
	n    int
}

var _ http.Handler = (*Handler)(nil)

// New builds a Handler: it loads the state file if there is one, then adds
// the seed's keys that do not exist yet.
func New(opts Options) (*Handler, error) {
	h := &Handler{
		region:           opts.Region,
		account:          opts.Account,
		allowCrossRegion: opts.AllowCrossRegion,
		now:              opts.Now,
		stateFile:        opts.StateFile,
		logf:             opts.Logf,
		latency:          opts.Latency,
		jitter:           opts.Jitter,
		limiters:         map[string]*rate.Limiter{},
		faults:           map[string]*fault{},
		counts:           map[string]int64{},
	}
	if h.region == "" {
		h.region = DefaultRegion
	}
	if h.account == "" {
		h.account = DefaultAccount
	}
	if !regionPattern.MatchString(h.region) {
		return nil, fmt.Errorf("kmsserver: invalid region %q", h.region)
	}
	if !accountPattern.MatchString(h.account) {
		return nil, fmt.Errorf("kmsserver: invalid account %q: want 12 digits", h.account)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if opts.Latency < 0 || opts.Jitter < 0 {
		return nil, errors.New("kmsserver: latency and jitter must not be negative")
	}
	if !(opts.ThrottleFraction >= 0 && opts.ThrottleFraction <= 1) {
		return nil, fmt.Errorf("kmsserver: throttle fraction %g is not between 0 and 1", opts.ThrottleFraction)
	}
	h.setRate(opts.RPS, opts.Burst)
	seed := opts.ThrottleSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	h.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h.throttle = opts.ThrottleFraction

	st := newStore()
	if h.stateFile != "" {
		var err error
		if st, err = loadState(h.stateFile); err != nil {
			return nil, fmt.Errorf("kmsserver: %w", err)
		}
	}
	h.st = st
	var seeds []*Seed
	if opts.SeedFile != "" {
		s, err := readSeed(opts.SeedFile)
		if err != nil {
			return nil, fmt.Errorf("kmsserver: %w", err)
		}
		seeds = append(seeds, s)
	}
	if opts.Seed != nil {
		seeds = append(seeds, opts.Seed)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range seeds {
		for i, sk := range s.Keys {
			if sk.Account == "" {
				sk.Account = h.account
			}
			if sk.Region == "" {
				sk.Region = h.region
			}
			if sk.ID == "" {
				sk.ID = seedID(sk, i)
			}
			if h.st.lookupKey(sk.Account, sk.Region, sk.ID) != nil {
				continue // already there, from the state file: the state wins
			}
			if _, err := h.addKeyLocked(sk, true); err != nil {
				return nil, fmt.Errorf("kmsserver: seed key %d: %w", i, err)
			}
		}
	}
	h.st.expire(h.now())
	h.expiry = h.st.nextExpiry()
	if err := h.persistLocked(); err != nil {
		return nil, fmt.Errorf("kmsserver: %w", err)
	}
	return h, nil
}

// AddKey creates a key as a seed file would (in any account or region) and
// returns its ARN. An empty ID gets a random one.
func (h *Handler) AddKey(sk SeedKey) (string, error) {
	if sk.Account == "" {
		sk.Account = h.account
	}
	if sk.Region == "" {
		sk.Region = h.region
	}
	if sk.ID == "" {
		sk.ID = newUUID()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	arn, err := h.addKeyLocked(sk, false)
	if err != nil {
		return "", fmt.Errorf("kmsserver: add key: %w", err)
	}
	h.expiry = h.st.nextExpiry()
	if err := h.persistLocked(); err != nil {
		return "", fmt.Errorf("kmsserver: %w", err)
	}
	return arn, nil
}

// addKeyLocked validates and inserts a seed key; with skipTakenAliases an
// alias name already in use is left alone instead of failing.
func (h *Handler) addKeyLocked(sk SeedKey, skipTakenAliases bool) (string, error) {
	if !keyIDPattern.MatchString(sk.ID) {
		return "", fmt.Errorf("invalid key id %q: want a lowercase UUID", sk.ID)
	}
	if !accountPattern.MatchString(sk.Account) {
		return "", fmt.Errorf("invalid account %q: want 12 digits", sk.Account)
	}
	if !regionPattern.MatchString(sk.Region) {
		return "", fmt.Errorf("invalid region %q", sk.Region)
	}
	if h.st.lookupKey(sk.Account, sk.Region, sk.ID) != nil {
		return "", fmt.Errorf("key %s already exists", keyARN(sk.Account, sk.Region, sk.ID))
	}
	now := h.now().UTC()
	bk, err := newBackingKey(sk.Material, now)
	if err != nil {
		return "", err
	}
	policy, err := seedPolicy(sk.Policy)
	if err != nil {
		return "", fmt.Errorf("policy: %v", err)
	}
	if policy == "" {
		policy = defaultPolicy(sk.Account)
	}
	pd, err := parsePolicy(policy)
	if err != nil {
		return "", fmt.Errorf("policy: %v", err)
	}
	k := &key{
		ID: sk.ID, Account: sk.Account, Region: sk.Region, Description: sk.Description,
		Created: now, State: stateEnabled, Policy: policy, policy: pd,
		Versions: []backingKey{bk},
	}
	switch sk.State {
	case "", stateEnabled:
	case stateDisabled:
		k.State = stateDisabled
	case statePendingDeletion:
		k.State = statePendingDeletion
		k.PendingWindowInDays = 30
		k.DeletionDate = now.AddDate(0, 0, 30)
	default:
		return "", fmt.Errorf("invalid state %q: want Enabled, Disabled or PendingDeletion", sk.State)
	}
	if sk.RotationEnabled {
		k.RotationEnabled = true
		k.RotationPeriodInDays = defaultRotationDays
		k.NextRotation = now.AddDate(0, 0, defaultRotationDays)
	}
	var newAliases []*alias
	for _, name := range sk.Aliases {
		if e := checkAliasName(name); e != nil {
			return "", fmt.Errorf("alias %q: %s", name, e.message)
		}
		ref := aliasRef{sk.Account, sk.Region, name}
		if h.st.aliases[ref] != nil {
			if skipTakenAliases {
				continue
			}
			return "", fmt.Errorf("alias %s already exists", aliasARN(sk.Account, sk.Region, name))
		}
		newAliases = append(newAliases, &alias{Name: name, Account: sk.Account, Region: sk.Region, TargetID: sk.ID, Created: now, Updated: now})
	}
	h.st.keys[keyRef{k.Account, k.Region, k.ID}] = k
	for _, a := range newAliases {
		h.st.aliases[aliasRef{a.Account, a.Region, a.Name}] = a
	}
	return k.arn(), nil
}

// persistLocked writes the state file, if there is one. h.mu must be held
// for writing.
func (h *Handler) persistLocked() error {
	if h.stateFile == "" {
		return nil
	}
	data, err := h.st.marshal()
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(h.stateFile, data); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}

// SetRateLimit changes the cap on cryptographic operations per account and
// region; rps <= 0 removes it. The bucket holds one second's worth of
// requests (at least 1).
func (h *Handler) SetRateLimit(rps float64) { h.setRate(rps, 0) }

func (h *Handler) setRate(rps float64, burst int) {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(rps)))
	}
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	h.rps, h.burst = rps, burst
	for _, l := range h.limiters {
		l.SetLimit(rate.Limit(rps))
		l.SetBurst(burst)
	}
}

// SetThrottleFraction changes the fraction of cryptographic operations
// throttled at random, whatever the rate (see Options.ThrottleFraction); 0
// turns it off. Values outside 0 to 1 are clamped.
func (h *Handler) SetThrottleFraction(f float64) {
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	h.throttle = min(max(f, 0), 1)
}

// SetLatency changes the delay added to every request: fixed plus a random
// extra of up to jitter.
func (h *Handler) SetLatency(fixed, jitter time.Duration) {
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	h.latency, h.jitter = max(fixed, 0), max(jitter, 0)
}

// FailNext makes the next n requests for operation op (such as "Decrypt",
// or "*" for any operation) fail with the error code errCode (such as
// ErrKMSInternal or ErrThrottling) before they are processed. n <= 0 clears
// the fault. Injected faults are counted like other requests. An op that is
// not a KMS operation name panics: a misspelt fault would never fire.
func (h *Handler) FailNext(op, errCode string, n int) {
	if _, ok := ops[op]; !ok && !otherOps[op] && op != "*" {
		panic(fmt.Sprintf("kmsserver: FailNext: %q is not a KMS operation", op))
	}
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	if n <= 0 {
		delete(h.faults, op)
		return
	}
	h.faults[op] = &fault{code: errCode, n: n}
}

// Count returns how many requests named operation op since the start or the
// last ResetCounts, whatever their outcome.
func (h *Handler) Count(op string) int64 {
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	return h.counts[op]
}

// Counts returns a copy of all request counters, by operation name.
func (h *Handler) Counts() map[string]int64 {
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	out := make(map[string]int64, len(h.counts))
	for k, v := range h.counts {
		out[k] = v
	}
	return out
}

// ResetCounts sets every request counter to zero.
func (h *Handler) ResetCounts() {
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	clear(h.counts)
}

// Region returns the default region: the region of requests whose
// Authorization header names none.
func (h *Handler) Region() string { return h.region }

// Account returns the account every caller belongs to.
func (h *Handler) Account() string { return h.account }

// admit counts the request, then reports an injected fault, if any.
func (h *Handler) admit(op string) (time.Duration, *apiError) {
	h.ctlMu.Lock()
	defer h.ctlMu.Unlock()
	h.counts[op]++
	d := h.latency
	if h.jitter > 0 {
		d += rand.N(h.jitter + 1)
	}
	for _, name := range []string{op, "*"} {
		if f := h.faults[name]; f != nil {
			f.n--
			if f.n <= 0 {
				delete(h.faults, name)
			}
			return d, errf(f.code, "injected fault (kmsserver FailNext) for %s", op)
		}
	}
	return d, nil
}

// allow throttles a cryptographic request at random (ThrottleFraction), or
// else takes a token from the quota of its account and region.
func (h *Handler) allow(account, region string) bool {
	h.ctlMu.Lock()
	if h.throttle > 0 && h.rng.Float64() < h.throttle {
		h.ctlMu.Unlock()
		return false
	}
	if h.rps <= 0 {
		h.ctlMu.Unlock()
		return true
	}
	k := account + "/" + region
	l := h.limiters[k]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(h.rps), h.burst)
		h.limiters[k] = l
	}
	h.ctlMu.Unlock()
	return l.Allow()
}

// call is the context of one request.
type call struct {
	region    string
	account   string
	accessKey string
	now       time.Time
}

func (c *call) caller() caller {
	return caller{account: c.account, arn: c.principalARN()}
}

func (c *call) principalARN() string {
	if c.accessKey == "" {
		return "arn:aws:iam::" + c.account + ":root"
	}
	return "arn:aws:iam::" + c.account + ":user/" + c.accessKey
}

// credentialScope extracts the access key ID and region from a SigV4
// Authorization header ("AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/kms/
// aws4_request, ...") or from a presigned URL's X-Amz-Credential.
func credentialScope(r *http.Request) (accessKey, region string) {
	cred := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		if i := strings.Index(auth, "Credential="); i >= 0 {
			cred = auth[i+len("Credential="):]
			if j := strings.IndexAny(cred, ", "); j >= 0 {
				cred = cred[:j]
			}
		}
	} else {
		cred = r.URL.Query().Get("X-Amz-Credential")
	}
	parts := strings.Split(cred, "/")
	if len(parts) >= 3 {
		return parts[0], parts[2]
	}
	if len(parts) >= 1 {
		return parts[0], ""
	}
	return "", ""
}

// opFunc handles one operation: it decodes body and returns the response.
type opFunc func(h *Handler, c *call, body []byte) (any, *apiError)

type opInfo struct {
	fn     opFunc
	crypto bool // counts against the shared cryptographic quota
}

var ops = map[string]opInfo{
	"CreateKey":                       {fn: (*Handler).createKey},
	"DescribeKey":                     {fn: (*Handler).describeKey},
	"ListKeys":                        {fn: (*Handler).listKeys},
	"CreateAlias":                     {fn: (*Handler).createAlias},
	"DeleteAlias":                     {fn: (*Handler).deleteAlias},
	"ListAliases":                     {fn: (*Handler).listAliases},
	"Encrypt":                         {fn: (*Handler).encrypt, crypto: true},
	"Decrypt":                         {fn: (*Handler).decrypt, crypto: true},
	"GenerateDataKey":                 {fn: (*Handler).generateDataKey, crypto: true},
	"GenerateDataKeyWithoutPlaintext": {fn: (*Handler).generateDataKeyWithoutPlaintext, crypto: true},
	"ReEncrypt":                       {fn: (*Handler).reEncrypt, crypto: true},
	"EnableKeyRotation":               {fn: (*Handler).enableKeyRotation},
	"DisableKeyRotation":              {fn: (*Handler).disableKeyRotation},
	"GetKeyRotationStatus":            {fn: (*Handler).getKeyRotationStatus},
	"RotateKeyOnDemand":               {fn: (*Handler).rotateKeyOnDemand},
	"DisableKey":                      {fn: (*Handler).disableKey},
	"EnableKey":                       {fn: (*Handler).enableKey},
	"ScheduleKeyDeletion":             {fn: (*Handler).scheduleKeyDeletion},
	"CancelKeyDeletion":               {fn: (*Handler).cancelKeyDeletion},
	"PutKeyPolicy":                    {fn: (*Handler).putKeyPolicy},
	"GetKeyPolicy":                    {fn: (*Handler).getKeyPolicy},
}

// otherOps are real KMS operations this server does not implement: they get
// UnsupportedOperationException rather than UnknownOperationException.
var otherOps = map[string]bool{
	"ConnectCustomKeyStore": true, "CreateCustomKeyStore": true, "CreateGrant": true,
	"Decapsulate": true, "DeleteCustomKeyStore": true, "DeleteImportedKeyMaterial": true,
	"DeriveSharedSecret": true, "DescribeCustomKeyStores": true, "DisconnectCustomKeyStore": true,
	"Encapsulate": true, "GenerateDataKeyPair": true, "GenerateDataKeyPairWithoutPlaintext": true,
	"GenerateMac": true, "GenerateRandom": true, "GetKeyLastUsage": true, "GetParametersForImport": true,
	"GetPublicKey": true, "ImportKeyMaterial": true, "ListGrants": true, "ListKeyPolicies": true,
	"ListKeyRotations": true, "ListResourceTags": true, "ListRetirableGrants": true,
	"ReplicateKey": true, "RetireGrant": true, "RevokeGrant": true, "Sign": true,
	"TagResource": true, "UntagResource": true, "UpdateAlias": true, "UpdateCustomKeyStore": true,
	"UpdateKeyDescription": true, "UpdatePrimaryRegion": true, "Verify": true, "VerifyMac": true,
}

const targetPrefix = "TrentService."

// ServeHTTP answers one KMS request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("X-Amzn-RequestId", newUUID())
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if !strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix) {
		op = ""
	}
	resp, e := h.serve(r, op)
	if e != nil {
		writeError(w, e)
	} else {
		writeJSON(w, http.StatusOK, resp)
		if wp, ok := resp.(wiper); ok {
			wp.wipe()
		}
	}
	if h.logf != nil {
		status, code := http.StatusOK, ""
		if e != nil {
			status, code = httpStatus(e.code), e.code
		}
		h.logf("kms %s %d %s %s", opOrUnknown(op), status, code, time.Since(start).Round(time.Microsecond))
	}
}

func opOrUnknown(op string) string {
	if op == "" {
		return "-"
	}
	return op
}

func (h *Handler) serve(r *http.Request, op string) (any, *apiError) {
	if r.Method != http.MethodPost {
		return nil, errf(ErrUnknownOperation, "KMS accepts only POST requests, not %s", r.Method)
	}
	if op == "" {
		return nil, errf(ErrUnknownOperation, "missing or unknown X-Amz-Target header %q: want %s<Operation>", r.Header.Get("X-Amz-Target"), targetPrefix)
	}
	delay, e := h.admit(op)
	if delay > 0 {
		if err := sleep(r.Context(), delay); err != nil {
			return nil, errf(ErrKMSInternal, "request cancelled during injected latency")
		}
	}
	if e != nil {
		return nil, e
	}
	info, ok := ops[op]
	if !ok {
		if otherOps[op] {
			return nil, errf(ErrUnsupportedOperation, "%s is a KMS operation this test server does not implement", op)
		}
		return nil, errf(ErrUnknownOperation, "unknown operation %s%s", targetPrefix, op)
	}
	accessKey, region := credentialScope(r)
	if region == "" {
		region = h.region
	}
	c := &call{region: region, account: h.account, accessKey: accessKey, now: h.now().UTC()}
	if info.crypto && !h.allow(c.account, c.region) {
		return nil, errf(ErrThrottling, "Rate exceeded")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, errf(ErrSerialization, "read request body: %v", err)
	}
	if len(body) > maxBody {
		return nil, errf(ErrRequestEntityTooLarge, "request body is larger than %d bytes", maxBody)
	}
	h.expire(c.now)
	return info.fn(h, c, body)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expire deletes keys whose pending deletion window has ended.
func (h *Handler) expire(now time.Time) {
	h.mu.RLock()
	due := !h.expiry.IsZero() && !now.Before(h.expiry)
	h.mu.RUnlock()
	if !due {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st.expire(now) {
		if err := h.persistLocked(); err != nil && h.logf != nil {
			h.logf("kms: %v", err)
		}
	}
	h.expiry = h.st.nextExpiry()
}
