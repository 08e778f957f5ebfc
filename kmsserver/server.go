package kmsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Server is a Handler listening on a loopback address.
type Server struct {
	*Handler
	// URL is the base URL, http://127.0.0.1:PORT, to use as the KMS endpoint.
	URL string

	srv       *http.Server
	done      chan struct{}
	serveErr  error
	closeOnce sync.Once
	closeErr  error
}

// CheckLoopback returns an error unless addr (host:port) names a loopback
// host: 127.0.0.0/8, ::1 or localhost. An empty host, which would listen on
// every interface, is refused.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("listen address %q is not a loopback address: the KMS test server only listens on 127.0.0.1, ::1 or localhost", addr)
}

// Start builds a Handler from opts and serves it on opts.Addr (default
// 127.0.0.1:0, a free port) until Close or Shutdown.
func Start(opts Options) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := CheckLoopback(addr); err != nil {
		return nil, fmt.Errorf("kmsserver: %w", err)
	}
	h, err := New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kmsserver: %w", err)
	}
	s := &Server{
		Handler: h,
		URL:     "http://" + ln.Addr().String(),
		srv:     &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		done:    make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
		}
	}()
	return s, nil
}

// Done is closed when the server has stopped serving.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns why the server stopped serving, once Done is closed: nil after
// Close or Shutdown.
func (s *Server) Err() error {
	<-s.done
	return s.serveErr
}

// Shutdown stops the server gracefully: it stops accepting connections and
// waits for requests in flight, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.srv.Shutdown(ctx) })
	return s.closeErr
}

// Close stops the server at once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.srv.Close() })
	<-s.done
	return s.closeErr
}

// Test credentials of the clients AWSConfig builds.
const (
	TestAccessKeyID     = "kmsserver-test"
	TestSecretAccessKey = "kmsserver-test-secret"
)

// AWSConfig returns a configuration for an SDK client of this server: its
// endpoint, static test credentials and region (the server's default region
// when region is empty).
func (s *Server) AWSConfig(region string) aws.Config {
	if region == "" {
		region = s.Region()
	}
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(TestAccessKeyID, TestSecretAccessKey, ""),
	}
}

// Client returns an aws-sdk-go-v2 KMS client of this server, for region (the
// server's default region when empty).
func (s *Server) Client(region string, optFns ...func(*kms.Options)) *kms.Client {
	return kms.NewFromConfig(s.AWSConfig(region), optFns...)
}

// NewTestServer starts a server for a test and stops it when the test ends.
func NewTestServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := Start(opts)
	if err != nil {
		tb.Fatalf("start KMS test server: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
