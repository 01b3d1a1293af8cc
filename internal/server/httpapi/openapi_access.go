package httpapi

import (
	"maps"
	"reflect"

	"github.com/corralhq/corral/internal/wire"
)

// The secure-access part of the API description: enums and notes the wire
// types cannot carry, kept beside the routes that use them.

var (
	jitRequestStates = []string{wire.JITPending, wire.JITRejected, wire.JITApproved, wire.JITApplied, wire.JITFailed, wire.JITRevoked, wire.JITExpired}
	jitMachineStates = []string{wire.JITStateNone, wire.JITStateApplied, wire.JITStateFailed, wire.JITStateRefused}
	sshMachineStates = []string{wire.SSHStateOff, wire.SSHStateManaged, wire.SSHStateFailed, wire.SSHStateRefused}
)

var accessFieldDocs = map[fieldKey]fieldDoc{
	field(wire.JITPolicy{}, "scope"):                {desc: "Where the policy applies: / or /subscriptions/S[/resourceGroups/RG[/machines/M]]; a machine follows the most specific policy above it."},
	field(wire.JITPolicy{}, "ports"):                {desc: "The managed ports, \"22/tcp\" or \"53/udp\": dropped except for granted sources."},
	field(wire.JITPolicy{}, "allowedSources"):       {desc: "CIDR ranges a grant's source must be in; empty: any source."},
	field(wire.JITPolicy{}, "maxDuration"):          {desc: goDurationDoc + " The longest grant."},
	field(wire.JITPolicySet{}, "ports"):             {desc: "1 to 64 ports: \"22\", \"22/tcp\" or \"53/udp\" (1-65535)."},
	field(wire.JITPolicySet{}, "allowedSources"):    {desc: "CIDR ranges (or single addresses) without host bits; empty: any source."},
	field(wire.JITPolicySet{}, "maxDuration"):       {desc: goDurationDoc + " The longest grant: 3h when empty, at most 24h."},
	field(wire.JITMachineStatus{}, "state"):         {enum: jitMachineStates, desc: "What the machine's agent last reported about its JIT table."},
	field(wire.JITRequestCreate{}, "port"):          {desc: "\"22\" or \"22/tcp\": one of the policy's ports."},
	field(wire.JITRequestCreate{}, "sourceIp"):      {desc: "The one address to open the port to; the caller's address as the server sees it when empty."},
	field(wire.JITRequestCreate{}, "duration"):      {desc: goDurationDoc + " Positive, at most the policy's maximum."},
	field(wire.JITRequestCreate{}, "justification"): {desc: "Why, for the activity log and the approver: at most 500 bytes."},
	field(wire.JITRequest{}, "state"): {enum: jitRequestStates, desc: "PendingApproval until another user approves (when the policy asks), Approved until the machine confirms, " +
		"then Applied (open until expiresAt) or Failed (message says why); Rejected, Revoked and Expired are final."},
	field(wire.JITRequest{}, "expiresAt"):            {desc: "When the kernel closes the opening, even if the agent is not running."},
	field(wire.SSHCertificateRequest{}, "publicKey"): {desc: "The client's public key, one authorized_keys line; the client keeps the private key."},
	field(wire.SSHCertificateRequest{}, "login"):     {desc: "The machine's local account; empty: the administrator account for Virtual Machine Administrator Login, else the unprivileged one."},
	field(wire.SSHCertificateRequest{}, "validity"):  {desc: goDurationDoc + " 5m when empty, at most 1h."},
	field(wire.SSHCertificate{}, "certificate"):      {desc: "The OpenSSH user certificate, one authorized_keys line."},
	field(wire.SSHCertificate{}, "principal"):        {desc: "admin@MACHINE-ID or user@MACHINE-ID: valid on this machine only."},
	field(wire.SSHCertificate{}, "id"):               {desc: "The certificate's id: pass it as ?certificate= on the tunnel so the session's login is known."},
	field(wire.SSHCertificate{}, "hostKeys"):         {desc: "The machine's sshd host keys as its agent reported them, to pin in known_hosts."},
	field(wire.SSHSession{}, "state"):                {enum: []string{wire.SessionActive, wire.SessionEnded}},
	field(wire.SSHSession{}, "login"):                {desc: "The local account, when the session named the certificate it logs in with."},
	field(wire.SSHSession{}, "bytesToMachine"):       {desc: "Bytes from the user to the machine so far (refreshed every few seconds while it runs)."},
	field(wire.AccessStatus{}, "jit"):                {desc: "The machine's JIT table."},
	field(wire.JITStatus{}, "state"):                 {enum: jitMachineStates},
	field(wire.SSHStatus{}, "state"):                 {enum: sshMachineStates},
	field(wire.JITGrantStatus{}, "state"):            {enum: []string{wire.JITApplied, wire.JITFailed}},
}

var accessTypeDocs = map[reflect.Type]string{
	reflect.TypeOf(wire.JITPolicy{}):             "A JIT policy at a scope: managed ports, allowed source ranges, maximum duration, approval.",
	reflect.TypeOf(wire.JITRequest{}):            "A just-in-time request for one port, one source address and a duration, and once approved the grant.",
	reflect.TypeOf(wire.SSHCertificate{}):        "A short-lived OpenSSH user certificate for one machine's account.",
	reflect.TypeOf(wire.SSHSession{}):            "One connection relayed to a machine's port through its agent, with its bytes each way.",
	reflect.TypeOf(wire.JITMachineStatus{}):      "A machine's effective JIT policy and what its agent reported about it.",
	reflect.TypeOf(wire.SSHCertificateRequest{}): "A public key to certify for one of the machine's two accounts.",
}

func init() {
	maps.Copy(fieldDocs, accessFieldDocs)
	maps.Copy(typeDocs, accessTypeDocs)
}
