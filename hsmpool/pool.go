package hsmpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// Pool is a bounded pool of PKCS#11 sessions to one token. It is safe for
// concurrent use. Size, the session budget, bounds the sessions open and lent
// out at once; the pipeline sizes its HSM workers from it.
type Pool struct {
	cfg   Config
	mod   *module
	slot  uint
	token string // the token's label, for messages
	pin   []byte // our copy of the PIN, cleared by Close

	quirks quirks // mod's, copied at Open (tests change a pool's own)

	sem        chan struct{} // one element per session slot taken
	done       chan struct{} // closed when Close starts
	healthDone chan struct{} // closed when the health loop exits

	mu       sync.Mutex
	closed   bool
	idle     []*conn // ordered by lastOK, most recent last (LIFO)
	open     int     // sessions open: idle, lent out, being probed
	inUse    int     // sessions lent out
	pending  int     // dead sessions discarded and not yet replaced
	inflight sync.WaitGroup

	keyGen atomic.Uint64 // bumped to invalidate every session's key cache

	waits, waitNanos, timeouts, reopens, discards, errs atomic.Int64

	closeOnce sync.Once
	closeErr  error

	// failOpen, when set (by tests), runs before each C_OpenSession and
	// stands in for its failure: SoftHSM cannot remove a token.
	failOpen func() error
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Size     int           // session budget (Config.Size)
	Open     int           // sessions open now
	InUse    int           // sessions lent out now
	Waits    int64         // acquires that found no free session and waited
	WaitTime time.Duration // total time acquires spent waiting
	Timeouts int64         // acquires that failed with ErrExhausted
	Reopens  int64         // sessions opened to replace discarded dead ones
	Discards int64         // dead sessions discarded (by an operation or a probe)
	// Errors counts PKCS#11 calls that failed, including those the pool
	// recovered from by reopening, but not failed integrity checks
	// (ErrAuthentication says something about the data, not the HSM).
	Errors int64
}

// Open loads the module (C_Initialize once per process), finds the token,
// logs in (once per token per process) and opens the first session, so that
// a wrong module, label, PIN or mechanism fails here rather than at the first
// operation. Further sessions are opened when needed, up to cfg.Size.
func Open(ctx context.Context, cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	mod, err := acquireModule(cfg.ModulePath)
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, mod: mod, quirks: mod.quirks, sem: make(chan struct{}, cfg.Size), done: make(chan struct{})}
	if err := p.findToken(); err != nil {
		_ = mod.release()
		return nil, err
	}
	p.pin = slices.Clone(cfg.PIN.b)
	mod.addToken(p.slot)
	c, err := p.openConn(ctx)
	if err == nil {
		// Sessions on a token this process is logged in to start logged
		// in, so openConn never checked our PIN; make the token (or the
		// registry, for CKR_USER_ALREADY_LOGGED_IN) judge it.
		if err = p.login(c.h); err != nil {
			p.discard(c, false)
		}
	}
	if err != nil {
		mod.releaseToken(p.slot, nil)
		clear(p.pin)
		_ = mod.release()
		return nil, err
	}
	p.idle = append(p.idle, c)
	if cfg.HealthInterval > 0 {
		p.healthDone = make(chan struct{})
		go p.healthLoop()
	}
	return p, nil
}

// findToken sets p.slot and p.token from the configuration and checks the
// token can serve the pool.
func (p *Pool) findToken() error {
	ctx, cfg := p.mod.ctx, p.cfg
	listHint := fmt.Sprintf("list them with `pkcs11-tool --module %s --list-token-slots`", p.mod.path)
	var info pkcs11.TokenInfo
	if cfg.Slot != nil {
		ti, err := ctx.GetTokenInfo(*cfg.Slot)
		if err != nil {
			return newError(fmt.Sprintf("hsmpool: module %s: slot %d: %v (hint: %s)", p.mod.path, *cfg.Slot, err, listHint), err)
		}
		if cfg.TokenLabel != "" && ti.Label != cfg.TokenLabel {
			return fmt.Errorf("hsmpool: module %s: slot %d holds token %q, not %q (hint: %s)", p.mod.path, *cfg.Slot, ti.Label, cfg.TokenLabel, listHint)
		}
		p.slot, info = *cfg.Slot, ti
	} else {
		slots, err := ctx.GetSlotList(true)
		if err != nil {
			return newError(fmt.Sprintf("hsmpool: module %s: list slots: %v", p.mod.path, err), err)
		}
		var found []uint
		var labels []string
		for _, s := range slots {
			ti, err := ctx.GetTokenInfo(s)
			if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
				continue
			}
			labels = append(labels, strconv.Quote(ti.Label))
			if ti.Label == cfg.TokenLabel {
				found = append(found, s)
				info = ti
			}
		}
		switch len(found) {
		case 0:
			have := "none"
			if len(labels) > 0 {
				have = strings.Join(labels, ", ")
			}
			return fmt.Errorf("hsmpool: module %s: no token labelled %q (tokens: %s) (hint: check the label; for SoftHSM check SOFTHSM2_CONF, or create it with `softhsm2-util --init-token --free --label %s`)", p.mod.path, cfg.TokenLabel, have, cfg.TokenLabel)
		case 1:
			p.slot = found[0]
		default:
			return fmt.Errorf("hsmpool: module %s: %d tokens labelled %q (hint: select one with Config.Slot; %s)", p.mod.path, len(found), cfg.TokenLabel, listHint)
		}
	}
	p.token = info.Label
	if info.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0 {
		return newError(fmt.Sprintf("hsmpool: token %q: the user PIN is locked (hint: have the security officer reset it; the pool does not try to log in)", p.token), ErrLogin)
	}
	if limit := info.MaxSessionCount; limit != pkcs11.CK_EFFECTIVELY_INFINITE && limit != pkcs11.CK_UNAVAILABLE_INFORMATION && uint(cfg.Size) > limit {
		return fmt.Errorf("hsmpool: token %q: Size %d exceeds the token's %d sessions (hint: lower Size)", p.token, cfg.Size, limit)
	}
	if _, err := ctx.GetMechanismInfo(p.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(cfg.Mechanism, nil)}); err != nil {
		return newError(fmt.Sprintf("hsmpool: token %q: %s: %v (hint: pick one the token supports: `pkcs11-tool --module %s --list-mechanisms`)", p.token, mechanismName(cfg.Mechanism), err, p.mod.path), err)
	}
	return nil
}

// Size returns the session budget: the most sessions the pool lends out at
// once. Run at most this many HSM workers per pool; more only queue.
func (p *Pool) Size() int { return p.cfg.Size }

// Mechanism returns the mechanism WrapDataKey and UnwrapDataKey use.
func (p *Pool) Mechanism() uint { return p.cfg.Mechanism }

// TokenLabel returns the label of the pool's token.
func (p *Pool) TokenLabel() string { return p.token }

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	open, inUse := p.open, p.inUse
	p.mu.Unlock()
	return Stats{
		Size:     p.cfg.Size,
		Open:     open,
		InUse:    inUse,
		Waits:    p.waits.Load(),
		WaitTime: time.Duration(p.waitNanos.Load()),
		Timeouts: p.timeouts.Load(),
		Reopens:  p.reopens.Load(),
		Discards: p.discards.Load(),
		Errors:   p.errs.Load(),
	}
}

// ForgetKeys drops every session's cached key handles, so that the next
// operation on each label looks the key up again. DestroyKey calls it; call
// it yourself after deleting or relabelling keys by other means while the
// pool is open.
func (p *Pool) ForgetKeys() { p.keyGen.Add(1) }

// Do lends fn a session and takes it back when fn returns. The operations of
// Session replace a lost session and retry by themselves where that is safe,
// so fn is called exactly once. A session whose fn panicked is discarded (it
// may be in the middle of an operation).
func (p *Pool) Do(ctx context.Context, fn func(*Session) error) error {
	s, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	completed := false
	defer func() {
		if !completed && s.c != nil {
			s.c.dead = true
		}
		s.Release()
	}()
	err = fn(s)
	completed = true
	return err
}

// Acquire lends out a session, waiting while all Size are busy, up to
// Config.AcquireTimeout (then ErrExhausted) or until ctx is done. The caller
// must Release it; prefer Do, which cannot forget to. One goroutine at a time
// may use a Session.
func (p *Pool) Acquire(ctx context.Context) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, p.ctxError(err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, p.closedError()
	}
	p.inflight.Add(1) // Close waits for this lease
	p.mu.Unlock()
	if err := p.takeSlot(ctx); err != nil {
		p.inflight.Done()
		return nil, err
	}
	c, err := p.takeConn(ctx)
	if err != nil {
		<-p.sem
		p.inflight.Done()
		return nil, err
	}
	p.mu.Lock()
	p.inUse++
	p.mu.Unlock()
	return &Session{p: p, c: c, ctx: ctx}, nil
}

// takeSlot takes one of the Size slots of the budget.
func (p *Pool) takeSlot(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
	default:
		p.waits.Add(1)
		start := time.Now()
		var timeout <-chan time.Time
		if p.cfg.AcquireTimeout > 0 {
			t := time.NewTimer(p.cfg.AcquireTimeout)
			defer t.Stop()
			timeout = t.C
		}
		var err error
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			err = p.ctxError(ctx.Err())
		case <-timeout:
			p.timeouts.Add(1)
			err = newError(fmt.Sprintf("hsmpool: token %q: all %d sessions stayed busy for %v (hint: run at most Size workers per pool, raise Size (at most %d) or AcquireTimeout)", p.token, p.cfg.Size, p.cfg.AcquireTimeout, MaxSize), ErrExhausted)
		case <-p.done:
			err = p.closedError()
		}
		waited := time.Since(start)
		p.waitNanos.Add(int64(waited))
		p.logWait(ctx, waited, err)
		if err != nil {
			return err
		}
	}
	select { // Close started while we waited: start no new work
	case <-p.done:
		<-p.sem
		return p.closedError()
	default:
		return nil
	}
}

// takeConn returns an idle session, probing it first if it has been idle
// for longer than HealthInterval, or opens a new one.
func (p *Pool) takeConn(ctx context.Context) (*conn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return p.openConn(ctx)
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if p.cfg.HealthInterval > 0 && time.Since(c.lastOK) >= p.cfg.HealthInterval && !p.probe(c) {
			p.discard(c, true)
			continue
		}
		return c, nil
	}
}

// release takes a session back from a lease.
func (p *Pool) release(c *conn) {
	if c != nil {
		if c.dead {
			p.discard(c, true)
		} else {
			c.lastOK = time.Now()
			p.mu.Lock()
			p.idle = append(p.idle, c)
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	p.inUse--
	p.mu.Unlock()
	<-p.sem
	p.inflight.Done()
}

// openConn opens and logs in a session, retrying transient failures with
// exponential back-off and jitter. Its errors wrap ErrUnavailable, or
// ErrLogin, ErrClosed or the context's error.
func (p *Pool) openConn(ctx context.Context) (*conn, error) {
	delay := p.cfg.ReopenBackoff
	for attempt := 1; ; attempt++ {
		c, err := p.dial()
		if err == nil {
			return c, nil
		}
		if !transient(err) || attempt >= p.cfg.ReopenAttempts {
			if errors.Is(err, ErrLogin) || errors.Is(err, ErrClosed) {
				return nil, err
			}
			msg := err.Error()
			if attempt > 1 {
				msg += fmt.Sprintf(" (gave up after %d attempts)", attempt)
			}
			return nil, newError(msg, ErrUnavailable, err)
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(err, p.ctxError(ctx.Err()))
		case <-p.done:
			t.Stop()
			return nil, p.closedError()
		}
		delay = min(2*delay, p.cfg.ReopenMaxBackoff)
	}
}

// dial opens one session and makes sure the user is logged in.
func (p *Pool) dial() (*conn, error) {
	ctx := p.mod.ctx
	var h pkcs11.SessionHandle
	var err error
	if p.failOpen != nil {
		err = p.failOpen()
	}
	if err == nil {
		h, err = ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	}
	if err != nil {
		p.errs.Add(1)
		return nil, newError(fmt.Sprintf("hsmpool: token %q: open session: %v (hint: check the HSM is reachable and the token present)", p.token, err), err)
	}
	info, err := ctx.GetSessionInfo(h)
	if err == nil {
		if !userState(info.State) {
			err = p.login(h)
		}
	} else {
		p.errs.Add(1)
		err = newError(fmt.Sprintf("hsmpool: token %q: new session: %v", p.token, err), err)
	}
	if err != nil {
		_ = ctx.CloseSession(h)
		return nil, err
	}
	p.mu.Lock()
	p.open++
	if p.pending > 0 {
		p.pending--
		p.reopens.Add(1)
	}
	p.mu.Unlock()
	return &conn{h: h, keys: map[string]pkcs11.ObjectHandle{}, gen: p.keyGen.Load(), lastOK: time.Now()}, nil
}

// userState reports whether a session in state is logged in as the user.
func userState(state uint) bool {
	return state == pkcs11.CKS_RO_USER_FUNCTIONS || state == pkcs11.CKS_RW_USER_FUNCTIONS
}

// login logs the user in through session h. Login state is per token and
// shared by all sessions of the process, so callers call it only for a
// session that is not logged in, or to have the PIN checked.
func (p *Pool) login(h pkcs11.SessionHandle) error {
	err := p.mod.login(p.slot, h, p.pin)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed):
		return p.closedError()
	case errors.Is(err, errPINMismatch), hasCode(err,
		pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE,
		pkcs11.CKR_PIN_EXPIRED, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_USER_PIN_NOT_INITIALIZED,
		pkcs11.CKR_USER_TYPE_INVALID, pkcs11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN):
		p.errs.Add(1)
		return newError(fmt.Sprintf("hsmpool: token %q: login: %v (hint: check the PIN from %s; the pool never retries a refused PIN, but repeated failures can lock the user)", p.token, err, p.cfg.PIN.Source()), ErrLogin, err)
	default:
		p.errs.Add(1)
		return newError(fmt.Sprintf("hsmpool: token %q: login: %v", p.token, err), err)
	}
}

// probe checks that c still answers, logging the token in again if it was
// logged out, and reports whether c can be lent out.
func (p *Pool) probe(c *conn) bool {
	info, err := p.mod.ctx.GetSessionInfo(c.h)
	if err != nil {
		p.errs.Add(1)
		c.gone = handleGone(err)
		return false
	}
	if !userState(info.State) && p.login(c.h) != nil {
		return false
	}
	c.lastOK = time.Now()
	return true
}

// discard closes c; dead says it failed (rather than the pool closing).
func (p *Pool) discard(c *conn, dead bool) {
	// A handle the library reports gone is not closed again: the library
	// may have given its number to a new session since.
	if !c.gone {
		_ = p.mod.ctx.CloseSession(c.h)
	}
	clear(c.keys)
	p.mu.Lock()
	p.open--
	if dead {
		p.pending++
	}
	p.mu.Unlock()
	if dead {
		p.discards.Add(1)
	}
}

// handleGone reports whether err says the session handle no longer exists.
func handleGone(err error) bool {
	return hasCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT)
}

// healthLoop probes idle sessions every HealthInterval until Close.
func (p *Pool) healthLoop() {
	defer close(p.healthDone)
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.sweep()
		}
	}
}

// sweep probes each session idle for longer than HealthInterval, one at a
// time and holding a budget slot, so that Open never exceeds Size. A pool
// with no free slot is busy, and busy sessions need no probe.
func (p *Pool) sweep() {
	cutoff := time.Now().Add(-p.cfg.HealthInterval)
	for {
		select {
		case <-p.done:
			return
		case p.sem <- struct{}{}:
		default:
			return
		}
		p.mu.Lock()
		i := slices.IndexFunc(p.idle, func(c *conn) bool { return c.lastOK.Before(cutoff) })
		var c *conn
		if i >= 0 {
			c = p.idle[i]
			p.idle = slices.Delete(p.idle, i, i+1)
		}
		p.mu.Unlock()
		if c == nil {
			<-p.sem
			return
		}
		if p.probe(c) {
			p.mu.Lock()
			p.idle = append(p.idle, c)
			p.mu.Unlock()
		} else {
			p.discard(c, true)
		}
		<-p.sem
	}
}

// Close closes the pool. Acquires waiting for a session fail with ErrClosed
// at once; sessions lent out are waited for (their operations complete, but
// an operation that would need to reopen a lost session fails with
// ErrClosed). Then Close logs out if this is the last pool of the process on
// the token, closes the sessions, and calls C_Finalize if this is the last
// pool on the module. Close is idempotent: later calls return the first
// call's result. Calling Close from inside Do (or while holding a Session)
// deadlocks: it waits for that very lease.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Pool) close() error {
	p.mu.Lock()
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	if p.healthDone != nil {
		<-p.healthDone
	}
	p.inflight.Wait()

	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var errs []error
	p.mod.releaseToken(p.slot, func() {
		if len(idle) == 0 {
			return // no session left, so the token is logged out already
		}
		err := p.mod.ctx.Logout(idle[0].h)
		if err != nil && !hasCode(err, pkcs11.CKR_USER_NOT_LOGGED_IN) && !handleGone(err) {
			errs = append(errs, newError(fmt.Sprintf("hsmpool: token %q: logout: %v", p.token, err), err))
		}
	})
	for _, c := range idle {
		p.discard(c, false)
	}
	clear(p.pin)
	p.pin = nil
	if err := p.mod.release(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Pool) closedError() error {
	return newError(fmt.Sprintf("hsmpool: token %q: pool closed", p.token), ErrClosed)
}

func (p *Pool) ctxError(err error) error {
	return newError(fmt.Sprintf("hsmpool: token %q: waiting for a session: %v", p.token, err), err)
}
