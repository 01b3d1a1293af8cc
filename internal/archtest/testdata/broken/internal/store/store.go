// Package store is fixture code: the contract.
package store
