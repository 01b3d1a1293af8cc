// Package imagetest proves the container image of `corral server` the way
// an operator would use it: built by packaging/image/build.sh (twice, from
// two copies of the source: one digest), loaded into podman with its own
// storage, run read-only as its non-root user on a named volume, logged
// into with the admin password it printed, an agent onboarded and
// Connected, then restarted on the same volume with nothing lost. It has no
// code of its own besides tests; they need root, podman and crun, and skip
// (or fail under CORRAL_TEST_STRICT=1) without them.
package imagetest
