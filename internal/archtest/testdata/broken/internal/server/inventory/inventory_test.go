package inventory

import _ "example.com/broken/internal/store/sqlstore" // fine: tests may reach a real store
