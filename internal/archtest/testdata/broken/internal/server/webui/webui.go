// Package webui is fixture code.
package webui

import _ "example.com/broken/internal/store" // broken: the web UI reaches the store
