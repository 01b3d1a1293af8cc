// Package sshaccess is what the agent does to a machine's OpenSSH server so
// that certificates from the control plane's SSH user CA log in to two local
// accounts: an administrator account that may sudo and an unprivileged one.
// The agent does it only when root allows it (`ssh.manage true` in the local
// configuration); the caller checks that.
//
// Everything happens under a root directory: "/" in production, a Debian
// tree in tests. Files corral owns:
//
//	/etc/ssh/sshd_config.d/corral.conf       the drop-in: TrustedUserCAKeys and AuthorizedPrincipalsFile
//	/etc/ssh/corral/trusted-user-ca-keys.pub the CA public key(s)
//	/etc/ssh/corral/principals/ACCOUNT       the principals that may log in as ACCOUNT (one file per account)
//	/etc/ssh/corral/accounts-created         the accounts corral created (and so removes)
//	/etc/sudoers.d/corral                    NOPASSWD sudo for the administrator account
//
// Accounts (defaults corral-admin and corral-user) are created when absent
// with the tree's own useradd (through chroot when the root is not "/"): a
// home, /bin/bash, and the password field "*" (no password can ever match,
// yet the account is not "locked", which sshd would refuse without PAM). An
// account that already existed is used as it is and never deleted.
//
// Only accounts with a principals file can be reached with a certificate:
// AuthorizedPrincipalsFile applies to every certificate signed by a key in
// TrustedUserCAKeys, and sshd denies a user without the file. Principals
// should be scoped to the machine (for example "admin@MACHINE-ID"), so a
// certificate issued for one machine opens no other.
//
// # Checks before anything is in force
//
//   - The main sshd_config must Include the drop-in (Debian 12's default has
//     `Include /etc/ssh/sshd_config.d/*.conf` at the top). Corral never edits
//     the main file: without such an Include, Enable fails with ErrNotIncluded
//     and says which line to add.
//   - After writing, `sshd -t` must accept the configuration, and `sshd -T`
//     must show our TrustedUserCAKeys and AuthorizedPrincipalsFile as the
//     effective values (sshd keeps the first value it reads, so an earlier
//     drop-in or a line above the Include would silently win).
//   - `visudo -c` must accept the sudoers file, `sudo -l -U` must show the
//     administrator account may run anything without a password, and the
//     unprivileged account must not be allowed to run sudo at all and must not
//     have uid 0.
//
// If any check fails, Enable puts back every file as it was and deletes the
// accounts it created in that call: nothing is half-applied. Only then is
// the caller's Reload hook called (e.g. `systemctl reload ssh`); a failed
// reload is retried by the next Enable or Disable.
//
// Disable removes every file above, deletes the accounts corral created
// (userdel --remove) and reloads. sshd reads the CA keys and principals files
// at each login, so removing them stops certificate logins at once, reload
// or not. Both Enable and Disable are idempotent: a second call changes
// nothing and does not reload.
//
// An Access serialises its own calls; two Access values on one root would
// race.
package sshaccess
