// Package b is fixture code.
package b

import _ "example.com/broken/internal/a"
