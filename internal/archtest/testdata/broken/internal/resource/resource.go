// Package resource is fixture code; a leaf must import nothing of ours.
package resource

import _ "example.com/broken/internal/wire" // broken: a leaf imports another package
