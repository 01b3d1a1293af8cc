// Package a is fixture code.
package a

import _ "example.com/broken/internal/b" // broken: a cycle
