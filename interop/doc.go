// Package interop proves byte compatibility with the official Amazon S3
// Encryption Client for Go (v3.2.0 writes V2 and reads V2/V3; v4.0.0 writes
// and reads V3). It is a module of its own so that users of rotator never
// download the official clients: they are only the test oracle.
package interop
