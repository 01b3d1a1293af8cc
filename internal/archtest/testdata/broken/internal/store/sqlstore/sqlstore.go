// Package sqlstore is fixture code.
package sqlstore

import (
	_ "example.com/broken/internal/server/refusal" // broken: the store imports a server package
	_ "example.com/broken/internal/store"          // fine: the store contract is a declared ancestor contract
)
