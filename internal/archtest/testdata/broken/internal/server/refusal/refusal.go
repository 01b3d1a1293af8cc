// Package refusal is fixture code.
package refusal
