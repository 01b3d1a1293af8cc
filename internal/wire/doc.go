// Package wire holds every type that crosses the network between the control
// plane (corral server), the agent (corral-agent) and the admin CLI / web UI.
//
// It imports nothing of Corral's own, so the agent binary can depend on it
// without pulling in server code. Changing a JSON field name here is a
// protocol change: bump ProtocolVersion and add a line to the changelog below.
//
// Protocol changelog (agent <-> server):
//   - 1: 2026-11-24: first version: connect with CSR, WebSocket push channel
//     carrying heartbeats and sync notifications, batched reports, certificate
//     renewal, disconnect.
//   - 2: 2026-11-25: extensions: the machine's sealing key on connect;
//     desired extensions, publisher keys and run commands in DesiredState;
//     signed catalogs and packages over mTLS; extension and run-command
//     reports.
package wire

// ProtocolVersion is the agent protocol version this build speaks. The agent
// sends it on connect and on the stream; the server refuses versions it does
// not know with ErrCodeUnsupportedProtocol.
const ProtocolVersion = 2
