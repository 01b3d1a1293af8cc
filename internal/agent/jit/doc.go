// Package jit opens management ports just in time: for one source address,
// one port and a limited time, enforced by the kernel through nftables.
//
// # The table
//
// The agent owns one table, `inet corral`, and touches nothing else of the
// machine's ruleset. It holds:
//
//	set managed { type inet_proto . inet_service }                              # the policy's ports
//	set grants4 { type ipv4_addr . inet_proto . inet_service; flags timeout }    # (source, port) pairs
//	set grants6 { type ipv6_addr . inet_proto . inet_service; flags timeout }
//	chain input {
//		type filter hook input priority filter - 10; policy accept;
//		iifname "lo" accept
//		ct state established,related accept
//		ip saddr . meta l4proto . th dport @grants4 accept
//		ip6 saddr . meta l4proto . th dport @grants6 accept
//		meta l4proto . th dport @managed drop
//	}
//
// Each grant is one set element carrying its own kernel timeout (and the
// grant id as its comment), so it closes on time even when the agent is
// dead: the kernel stops matching an expired element at once and collects it
// later. IPv4 and IPv6 sources live in two sets because a concatenated key
// has one fixed width.
//
// Decisions, with their reasons:
//   - Priority filter - 10 (-10): our drop happens before the usual filter
//     chains (iptables-nft and most nftables.conf files sit at 0). An accept
//     here is not final for other base chains, so the machine's own rules can
//     still refuse what we let through: we only ever narrow.
//   - Packets are dropped, not rejected: a closed management port looks like
//     nothing is there.
//   - Established and related connections keep working after a grant expires
//     or is revoked: a grant governs opening connections (like Azure JIT and
//     any stateful firewall), so an SSH session opened in time is not cut in
//     the middle. Ending a session is the relay's or sshd's job.
//   - Loopback is never filtered: the agent's own SSH relay reaches sshd on
//     127.0.0.1 and must work while the port is closed to the network.
//   - Only tcp and udp ports can be managed (th dport is meaningless for
//     other protocols).
//
// # Transactions
//
// Every change is one netlink batch, which the kernel applies whole or not
// at all: Apply (structure, rules and managed ports), Grant (replacing an
// existing element for the same key in the same batch), Revoke, Restore (drop
// and rebuild the table) and Remove. A machine whose kernel has no nftables,
// or an agent without CAP_NET_ADMIN, gets ErrUnavailable with the reason and
// no change.
//
// # Reboot and state
//
// The kernel forgets the table on reboot. The caller keeps State (policy and
// grants with absolute expiry) on disk and calls Restore at boot: only
// unexpired grants come back, with their remaining time. While the machine is
// up the kernel is the truth: List reads time left back from it. If someone
// flushes the whole ruleset (`nft flush ruleset`, restarting nftables.service)
// the table is gone and managed ports are open again: the caller should call
// Check periodically and Restore when it reports ErrNotApplied.
//
// # Concurrency
//
// A Manager serialises its own operations; it is safe for concurrent use.
// Two Managers on the same network namespace would race (list, then batch);
// the agent has one.
package jit
