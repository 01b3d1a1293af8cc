// Package cli is Corral's admin command line: "corral login", "corral machine
// list", "corral sp create" and the other operator commands, built on cobra
// and internal/client. NewRootCommand assembles the "corral" root command; the
// server and load generator commands are passed in by cmd/corral.
//
// Credentials saved by "corral login" live in $CORRAL_CONFIG, else
// $XDG_CONFIG_HOME/corral/credentials.json, else
// ~/.config/corral/credentials.json (directory 0700, file 0600). The
// environment variables CORRAL_SERVER, CORRAL_TOKEN and CORRAL_CA_FILE
// override them.
package cli
