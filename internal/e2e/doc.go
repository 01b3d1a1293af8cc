// Package e2e runs the real binaries — corral server and corral-agent — as
// separate processes on loopback with real TLS, and checks what an operator
// would: onboarding, status lifecycle, push, audit and that no secret leaks.
// It has no code of its own besides tests.
package e2e
