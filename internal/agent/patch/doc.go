// Package patch is the engine of update management on a machine: it finds
// the pending updates through the machine's own package manager (apt on
// Debian and Ubuntu, dnf on the RHEL family, zypper on SUSE, chosen from the
// os-release of the root it works on), classifies them Critical, Security or
// Other, and installs a selection of them inside a maintenance window.
//
// Everything works against a root tree as well as the real root ("/"): apt
// through a generated APT_CONFIG and dpkg --root, dnf with --installroot,
// zypper with --root. Nothing here guesses from files the manager owns: every
// list, version and classification is the package manager's own answer.
//
// Contract:
//   - An assessment refreshes the package lists and lists what would be
//     upgraded; it never installs, removes or holds anything.
//   - A deployment first repairs what an interrupted run left (dpkg
//     --configure -a, or the manager's equivalent), refreshes, then installs
//     the selected updates one at a time, most important first. Once the time
//     left before the deadline is too short for another install, no new
//     install starts and the result says MaintenanceWindowExceeded; an install
//     already running is never killed for the deadline (killing dpkg midway is
//     what breaks machines), only for ctx. The deployment never removes a
//     package: a selection that needs a removal fails with the manager's own
//     message and nothing changed.
//   - A deployment keeps a journal file in a directory the caller owns, so a
//     run cut short by a killed agent is reported truthfully by the next one
//     (and by LastRun at start-up), and its leftover processes are killed
//     before the repair.
//   - Rebooting is the caller's: results only say whether a reboot is needed.
//
// Every package-manager command runs with a timeout, in its own process
// group that dies with the agent (Pdeathsig), with a fixed environment and
// captured, capped output. A Manager holds no goroutines and no open files
// between calls; its methods are safe to call from one goroutine at a time
// (the package manager's own lock refuses concurrent changes anyway).
package patch
