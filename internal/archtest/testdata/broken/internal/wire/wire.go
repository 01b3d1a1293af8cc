// Package wire is fixture code.
package wire
