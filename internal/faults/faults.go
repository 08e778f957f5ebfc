// Package faults injects faults into every call a rotator process makes, for
// tests that prove the commit protocol: the S3, KMS and DynamoDB requests
// (through an AWS SDK middleware), the embedded ledger's calls and the key
// backends' calls (through decorators of ledger.Ledger and rewrap.Keyring).
//
// Terms:
//   - Process: one simulated rotator process. Every call it makes is
//     numbered, in the order the calls start (1, 2, ...), and recorded
//     (Calls). A retried AWS request is one call: the SDK's attempts share
//     its number.
//   - Fault: what happens to call number At: Fail (every attempt fails
//     before it is sent: the call fails), Lost (the first attempt is
//     carried out, then its response is lost: the SDK retries, the
//     decorators return the error), LostAll (the same, and every retry
//     fails too: the caller sees an error), Die (the call is carried out, then the
//     process dies: this call and every later one fail without being
//     sent, as after kill -9; the test then drops every object of the
//     process and starts a new one).
//
// A scenario is recorded once without faults; then, for each call k and
// each kind of fault, it is run again from scratch with that fault at k.
package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Kind is a kind of fault.
type Kind int

// Kinds of faults.
const (
	None Kind = iota
	// Fail: the call fails; nothing is sent.
	Fail
	// Lost: the call is carried out, its response is lost.
	Lost
	// Die: the call is carried out, then the process dies.
	Die
	// LostAll: the call is carried out, and its response and those of all
	// its retries are lost (the retries fail before they are sent): the
	// caller sees an error for a call that happened.
	LostAll
)

func (k Kind) String() string {
	return [...]string{"none", "fail", "lost", "die", "lostall"}[k]
}

// Kinds are the kinds of faults a matrix injects.
var Kinds = []Kind{Fail, Lost, LostAll, Die}

// Fault is a fault at one call.
type Fault struct {
	At   int
	Kind Kind
}

func (f Fault) String() string { return fmt.Sprintf("%s@%d", f.Kind, f.At) }

// ErrDead is the error of every call a dead process makes.
var ErrDead = errors.New("faults: the process is dead (killed)")

// errInjected is the failure of a Fail call and the lost response of a
// Lost one: a connection reset, which the AWS SDK retries.
func errInjected(what string) error {
	return &net.OpError{Op: "read", Net: "tcp", Err: fmt.Errorf("injected %s: %w", what, syscall.ECONNRESET)}
}

// Process is one simulated process.
type Process struct {
	faults []Fault
	// random, when set, draws a fault for every call (Random).
	random *randomFaults
	// failing: calls named so fail from the given call number on (an
	// outage of one kind of request).
	failing map[string]int

	mu    sync.Mutex
	n     int
	calls []string
	dead  bool
	fired bool
}

// New returns a process that injects the given faults (none, or Fault{}:
// no fault).
func New(faults ...Fault) *Process { return &Process{faults: faults} }

// randomFaults draws faults at given rates from a seeded source.
type randomFaults struct {
	r     *rand.Rand
	rates []rate
}

type rate struct {
	kind Kind
	p    float64
}

func (f *randomFaults) draw() Kind {
	x := f.r.Float64()
	for _, r := range f.rates {
		if x < r.p {
			return r.kind
		}
		x -= r.p
	}
	return None
}

// Random returns a process whose every call gets fault kind k with
// probability rates[k], drawn from a source seeded with seed: a flaky
// network for a whole process. Die is never drawn.
func Random(seed uint64, rates map[Kind]float64) *Process {
	f := &randomFaults{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for _, k := range []Kind{Fail, Lost, LostAll} {
		if p := rates[k]; p > 0 {
			f.rates = append(f.rates, rate{k, p})
		}
	}
	return &Process{random: f}
}

// FailFrom makes every call named name ("S3 HeadObject", "ledger
// SaveUpload", ...) fail from call number from on: an outage that lasts.
func (p *Process) FailFrom(name string, from int) *Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing == nil {
		p.failing = map[string]int{}
	}
	p.failing[name] = from
	return p
}

// Calls returns the calls made so far, "service Operation", in order.
func (p *Process) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// Dead reports whether the process died.
func (p *Process) Dead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}

// Fired reports whether the fault was injected.
func (p *Process) Fired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

// start numbers a new call and returns its number and the fault it gets;
// ErrDead when the process is dead.
func (p *Process) start(name string) (int, Kind, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return 0, None, ErrDead
	}
	p.n++
	p.calls = append(p.calls, name)
	for _, f := range p.faults {
		if p.n == f.At && f.Kind != None {
			p.fired = true
			return p.n, f.Kind, nil
		}
	}
	if from, ok := p.failing[name]; ok && p.n >= from {
		p.fired = true
		return p.n, Fail, nil
	}
	if p.random != nil {
		if k := p.random.draw(); k != None {
			p.fired = true
			return p.n, k, nil
		}
	}
	return p.n, None, nil
}

func (p *Process) die() {
	p.mu.Lock()
	p.dead = true
	p.mu.Unlock()
}

// do runs one call of a decorator (not an AWS request): f carries it out.
func (p *Process) do(name string, f func() error) error {
	_, kind, err := p.start(name)
	if err != nil {
		return err
	}
	switch kind {
	case Fail:
		return errInjected("failure of " + name)
	case Lost, LostAll:
		if err := f(); err != nil {
			return err
		}
		return errInjected("loss of the response of " + name)
	case Die:
		_ = f()
		p.die()
		return ErrDead
	}
	return f()
}

// invocation is the number and fault of one AWS request, shared by its
// attempts.
type invocation struct {
	kind Kind
	sent bool // Lost: the attempt whose response is lost went out
}

type invocationKey struct{}

// Middleware returns the AWS SDK API option that numbers every request of
// every client built from an aws.Config carrying it (aws.Config.APIOptions)
// and injects the process's fault into its attempts.
func (p *Process) Middleware() func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		if err := st.Initialize.Add(middleware.InitializeMiddlewareFunc("faults/Number",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				name := awsmiddleware.GetServiceID(ctx) + " " + awsmiddleware.GetOperationName(ctx)
				_, kind, err := p.start(name)
				if err != nil {
					return middleware.InitializeOutput{}, middleware.Metadata{}, err
				}
				ctx = middleware.WithStackValue(ctx, invocationKey{}, &invocation{kind: kind})
				return next.HandleInitialize(ctx, in)
			}), middleware.Before); err != nil {
			return err
		}
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("faults/Inject",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if p.Dead() {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, ErrDead
				}
				inv, _ := middleware.GetStackValue(ctx, invocationKey{}).(*invocation)
				if inv == nil {
					return next.HandleFinalize(ctx, in)
				}
				switch inv.kind {
				case Fail:
					return middleware.FinalizeOutput{}, middleware.Metadata{}, errInjected("connection failure")
				case Lost, LostAll:
					if inv.sent && inv.kind == LostAll {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, errInjected("connection failure")
					}
					if inv.sent {
						break
					}
					inv.sent = true
					out, md, err := next.HandleFinalize(ctx, in)
					if err != nil {
						return out, md, err
					}
					return middleware.FinalizeOutput{}, md, errInjected("loss of the response")
				case Die:
					out, md, err := next.HandleFinalize(ctx, in)
					p.die()
					_ = out
					return middleware.FinalizeOutput{}, md, errors.Join(ErrDead, err)
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}
