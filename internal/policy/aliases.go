package policy

import (
	"sort"
	"strings"
)

// An alias names a property of one resource type, as Azure Policy aliases
// do. path is into Resource.Properties; a segment with each=true is an
// array walked element by element ([*]).
type alias struct {
	name    string
	resType string
	path    []seg
	doc     string
}

type seg struct {
	key  string
	each bool
}

// parseAliasPath turns "extensions[*].publisher" into segments.
func parseAliasPath(p string) []seg {
	var out []seg
	for _, part := range strings.Split(p, ".") {
		s := seg{key: part}
		if strings.HasSuffix(part, "[*]") {
			s = seg{key: strings.TrimSuffix(part, "[*]"), each: true}
		}
		out = append(out, s)
	}
	return out
}

// aliasDef: name suffix (after the type prefix), property path, doc.
type aliasDef struct{ name, path, doc string }

var machineAliases = []aliasDef{
	{"osName", "osName", "distribution id from os-release, e.g. debian, ubuntu"},
	{"osVersion", "osVersion", "distribution version, e.g. 12, 22.04"},
	{"osPrettyName", "osPrettyName", "e.g. Debian GNU/Linux 12 (bookworm)"},
	{"osSku", "osPrettyName", "same as osPrettyName"},
	{"osType", "osType", "linux"},
	{"kernel", "kernel", "kernel release, e.g. 6.1.0-18-amd64"},
	{"arch", "arch", "e.g. amd64, arm64"},
	{"hostname", "hostname", ""},
	{"fqdn", "fqdn", ""},
	{"machineFqdn", "fqdn", "same as fqdn"},
	{"ipAddresses", "ipAddresses", "array of addresses"},
	{"ipAddresses[*]", "ipAddresses[*]", "each address"},
	{"environment", "environment", "AWS, GCP, Azure, OCI, VMware or OnPrem"},
	{"cloudMetadata.provider", "environment", "same as environment"},
	{"cloud.instanceId", "cloud.instanceId", "cloud instance id"},
	{"cloud.region", "cloud.region", "cloud region (also the machine's location)"},
	{"cloud.zone", "cloud.zone", ""},
	{"cloud.accountId", "cloud.accountId", "AWS account, GCP project, Azure subscription, OCI tenancy"},
	{"cloud.instanceType", "cloud.instanceType", ""},
	{"manufacturer", "manufacturer", "DMI sys_vendor"},
	{"model", "model", "DMI product_name"},
	{"cpuCount", "cpuCount", "number"},
	{"memoryBytes", "memoryBytes", "number"},
	{"status", "status", "Connected, Disconnected or Expired"},
	{"agentVersion", "agentVersion", ""},
	{"agentSupported", "agentSupported", "boolean: false once the agent version is more than a year old"},
	{"lastHeartbeat", "lastHeartbeat", "RFC 3339 time"},
	{"machineId", "machineId", "stable UUID of the onboarding"},
	{"vmId", "machineId", "same as machineId"},
	{"agentConfiguration.mode", "agentConfiguration.mode", "local config.mode: full or monitor"},
	{"agentConfiguration.extensionsEnabled", "agentConfiguration.extensionsEnabled", "boolean"},
	{"agentConfiguration.guestConfigurationEnabled", "agentConfiguration.guestConfigurationEnabled", "boolean"},
	{"extensions", "extensions", "array of the machine's extensions"},
	{"extensions[*]", "extensions[*]", "each extension (for count)"},
	{"extensions[*].name", "extensions[*].name", ""},
	{"extensions[*].publisher", "extensions[*].publisher", "e.g. Corral"},
	{"extensions[*].type", "extensions[*].type", "e.g. EndpointProtection"},
	{"extensions[*].version", "extensions[*].version", ""},
	{"extensions[*].typeHandlerVersion", "extensions[*].version", "same as version"},
	{"extensions[*].state", "extensions[*].state", "Creating, Updating, Deleting, Succeeded or Failed"},
	{"extensions[*].provisioningState", "extensions[*].state", "same as state"},
}

// azureMachineAliases keep Azure Arc's meaning, so exported definitions
// behave as they do in Azure: osName is the OS family (linux), osVersion
// the kernel, osSku the distribution's pretty name.
var azureMachineAliases = []aliasDef{
	{"osName", "osType", "Azure semantics: the OS family, linux"},
	{"osType", "osType", "linux"},
	{"osVersion", "kernel", "Azure semantics: the kernel release"},
	{"osSku", "osPrettyName", "e.g. Debian GNU/Linux 12 (bookworm)"},
	{"agentVersion", "agentVersion", ""},
	{"status", "status", "Connected, Disconnected or Expired"},
	{"machineFqdn", "fqdn", ""},
	{"vmId", "machineId", ""},
	{"cloudMetadata.provider", "environment", "Corral's environment: AWS, GCP, Azure, OCI, VMware or OnPrem"},
	{"lastStatusChange", "lastHeartbeat", "RFC 3339 time of the last heartbeat"},
}

var extensionAliases = []aliasDef{
	{"publisher", "publisher", ""},
	{"type", "type", ""},
	{"typeHandlerVersion", "typeHandlerVersion", ""},
	{"version", "typeHandlerVersion", "same as typeHandlerVersion"},
	{"provisioningState", "provisioningState", "Creating, Updating, Deleting, Succeeded or Failed"},
	{"state", "provisioningState", "same as provisioningState"},
}

var guestAssignmentAliases = []aliasDef{
	{"complianceStatus", "complianceStatus", "Compliant, NonCompliant or Pending"},
	{"parameterHash", "parameterHash", ""},
	{"guestConfiguration.name", "guestConfiguration.name", "machine configuration name"},
	{"guestConfiguration.version", "guestConfiguration.version", ""},
	{"guestConfiguration.assignmentType", "guestConfiguration.assignmentType", "Audit, ApplyAndMonitor or ApplyAndAutoCorrect"},
}

// foreignAliases belong to resource types Corral never has (Azure VMs). They
// are accepted so Azure guest configuration definitions, which test VMs and
// Arc machines side by side, parse unchanged; on a Corral resource they never
// exist.
var foreignAliases = []string{
	"Microsoft.Compute/imagePublisher",
	"Microsoft.Compute/imageOffer",
	"Microsoft.Compute/imageSKU",
	"Microsoft.Compute/imageVersion",
	"Microsoft.Compute/imageId",
	"Microsoft.Compute/licenseType",
	"Microsoft.Compute/virtualMachines/storageProfile.osDisk.osType",
	"Microsoft.Compute/virtualMachines/osProfile.linuxConfiguration",
	"Microsoft.Compute/virtualMachines/osProfile.windowsConfiguration",
}

const foreignType = "Microsoft.Compute/virtualMachines"

// aliasTable is built once; it is read-only afterwards.
var aliasTable = buildAliases()

func buildAliases() map[string]*alias {
	t := map[string]*alias{}
	add := func(prefix, resType string, defs []aliasDef) {
		for _, d := range defs {
			name := prefix + d.name
			t[strings.ToLower(name)] = &alias{name: name, resType: resType, path: parseAliasPath(d.path), doc: d.doc}
		}
	}
	add("Corral.HybridCompute/machines/", TypeMachine, machineAliases)
	add("Microsoft.HybridCompute/machines/", TypeMachine, azureMachineAliases)
	add("Microsoft.HybridCompute/", TypeMachine, []aliasDef{{"imageOffer", "osType", "Azure semantics: the OS family, linux"}})
	add("Corral.HybridCompute/machines/extensions/", TypeMachineExtension, extensionAliases)
	add("Microsoft.HybridCompute/machines/extensions/", TypeMachineExtension, extensionAliases)
	add("Corral.GuestConfiguration/guestConfigurationAssignments/", TypeGuestConfigurationAssignment, guestAssignmentAliases)
	add("Microsoft.GuestConfiguration/guestConfigurationAssignments/", TypeGuestConfigurationAssignment, guestAssignmentAliases)
	for _, f := range foreignAliases {
		t[strings.ToLower(f)] = &alias{name: f, resType: foreignType, path: parseAliasPath("__foreign__")}
	}
	return t
}

// AliasDoc describes one alias for documentation and `corral policy` help.
type AliasDoc struct {
	Name         string
	ResourceType string
	Path         string // property path in the resource document
	Doc          string
}

// Aliases lists every alias Corral supports, sorted by name.
func Aliases() []AliasDoc {
	var out []AliasDoc
	for _, a := range aliasTable {
		var parts []string
		for _, s := range a.path {
			p := s.key
			if s.each {
				p += "[*]"
			}
			parts = append(parts, p)
		}
		d := AliasDoc{Name: a.name, ResourceType: a.resType, Path: "properties." + strings.Join(parts, "."), Doc: a.doc}
		if a.resType == foreignType {
			d.Path, d.Doc = "", "Azure VM alias: accepted so exported definitions parse; never exists on a Corral resource"
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
