// Command corral is the Corral control plane (corral server), a one-command
// development setup (corral dev), the admin CLI (corral login, corral machine
// list, ...) and the load generator (corral loadgen).
package main
