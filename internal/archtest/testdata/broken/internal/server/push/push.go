// Package push is fixture code.
package push

import _ "example.com/broken/internal/server" // broken: imports its ancestor (and closes a cycle)
