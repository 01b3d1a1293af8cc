// Package cli is fixture code.
package cli

import _ "example.com/broken/internal/server/inventory" // broken: only the assembly and handlers import contexts
