// Package server is fixture code: the assembly may import every context.
package server

import (
	_ "example.com/broken/internal/server/httpapi"
	_ "example.com/broken/internal/server/identity"
	_ "example.com/broken/internal/server/inventory"
	_ "example.com/broken/internal/server/push"
)
