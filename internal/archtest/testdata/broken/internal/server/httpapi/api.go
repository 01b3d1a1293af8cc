// Package httpapi is fixture code: handlers may import contexts.
package httpapi

import _ "example.com/broken/internal/server/identity"
