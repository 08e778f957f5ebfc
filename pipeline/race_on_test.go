//go:build race

package pipeline_test

// raceEnabled: built with -race, under which sync.Pool drops a quarter of
// what it is given at random (the HTTP transport's and bufio's buffers
// among them) and instrumentation allocates too, so a heap's peak
// overstates held memory.
const raceEnabled = true
