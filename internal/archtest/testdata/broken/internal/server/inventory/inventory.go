// Package inventory is fixture code: a context.
package inventory

import (
	_ "example.com/broken/internal/server/httpapi"  // broken: a context imports httpapi
	_ "example.com/broken/internal/server/identity" // broken: a context imports another context
	_ "example.com/broken/internal/server/refusal"  // fine: the kernel
	_ "example.com/broken/internal/store"           // fine: the store contract
)
