// Package identity is fixture code: a context.
package identity
