// Package archtest holds tests that guard the architecture: what each binary
// may import and that every package documents itself. It has no code.
package archtest
