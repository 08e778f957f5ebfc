package testenv

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer a test can read (String) while another
// goroutine writes it: the output of a child process or a server.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
