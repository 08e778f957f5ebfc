//go:build race

package pipeline_test

// raceEnabled: built with -race, under which sync.Pool drops what it is
// given at random, so every pooled buffer (the HTTP transport's, bufio's)
// is garbage and a heap's peak says nothing about held memory.
const raceEnabled = true
