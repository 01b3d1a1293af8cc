// Package guest evaluates machine configurations: typed guest rules (file
// mode/owner/group, file content, sysctl, sshd effective settings, systemd
// unit state, packages, kernel modules, mount options, local accounts,
// listening ports, key/value configuration files) inside an OS tree, and
// applies and rolls back the remediations that are safe to automate.
//
// Contract:
//   - Everything is read under Env.Root, resolving symlinks inside the root
//     as a chroot would, so a tree never leads the evaluation to the host's
//     own files. Runtime state (/proc: live sysctl values, mounts, loaded
//     modules, listening sockets) is read only when Env.Live is set, which
//     NewEnv does for the root "/".
//   - A rule that cannot be read (permission, a file that must exist but
//     does not, a missing tool, runtime state of a tree) is Unknown with the
//     reason, never Compliant. Evidence is always in words
//     ("/etc/passwd mode 0666, want 0644 or stricter").
//   - A parsed *Configuration is immutable and safe for concurrent use;
//     each Evaluate call has its own read cache. Apply and Rollback change
//     files and must not run concurrently on the same root (the agent
//     feature serialises them).
//   - Apply backs up every file it changes (content, mode, owner) in the
//     returned *Change, verifies the rule is Compliant afterwards and undoes
//     its own writes when not. Rollback restores a Change and refuses
//     (ErrChangedSinceApply) when a file changed since, unless forced.
//
// Machine configurations are JSON (ParseConfiguration); docs/policy.md
// describes the format and every check type.
package guest
