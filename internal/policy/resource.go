package policy

import (
	"strings"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// Corral's resource types. The Microsoft.* spellings are accepted as
// synonyms everywhere a type appears (CanonicalType).
const (
	TypeMachine                      = "Corral.HybridCompute/machines"
	TypeMachineExtension             = "Corral.HybridCompute/machines/extensions"
	TypeGuestConfigurationAssignment = "Corral.GuestConfiguration/guestConfigurationAssignments"
)

var typeSynonyms = map[string]string{
	"corral.hybridcompute/machines":                                            TypeMachine,
	"microsoft.hybridcompute/machines":                                         TypeMachine,
	"corral.hybridcompute/machines/extensions":                                 TypeMachineExtension,
	"microsoft.hybridcompute/machines/extensions":                              TypeMachineExtension,
	"corral.guestconfiguration/guestconfigurationassignments":                  TypeGuestConfigurationAssignment,
	"microsoft.guestconfiguration/guestconfigurationassignments":               TypeGuestConfigurationAssignment,
	"microsoft.hybridcompute/machines/providers/guestconfigurationassignments": TypeGuestConfigurationAssignment,
}

// CanonicalType maps a resource type to Corral's spelling: the
// Microsoft.HybridCompute and Microsoft.GuestConfiguration types Azure
// exports for Arc machines become their Corral synonyms; other types are
// returned unchanged.
func CanonicalType(t string) string {
	lt := strings.ToLower(t)
	if c, ok := typeSynonyms[lt]; ok {
		return c
	}
	// Patterns (like "Microsoft.HybridCompute/*") map by namespace.
	for _, ns := range [][2]string{{"microsoft.hybridcompute/", "Corral.HybridCompute/"}, {"microsoft.guestconfiguration/", "Corral.GuestConfiguration/"}} {
		if strings.HasPrefix(lt, ns[0]) {
			return ns[1] + t[len(ns[0]):]
		}
	}
	return t
}

// Resource is what a definition is evaluated against: a machine, or one of
// the resources related to it (an extension, a guest configuration
// assignment). Properties is a JSON-like document (string, float64, bool,
// nil, []any, map[string]any) that aliases read; Related holds the
// resources auditIfNotExists/deployIfNotExists look for. Evaluate never
// modifies a Resource.
type Resource struct {
	ID             string
	Name           string
	Type           string // canonical (CanonicalType)
	Location       string
	SubscriptionID string
	ResourceGroup  string
	Tags           map[string]string
	Properties     map[string]any
	Related        []*Resource
}

// GuestAssignmentStatus is a guest configuration assignment's state on one
// machine, as the server keeps it from the agent's reports.
type GuestAssignmentStatus struct {
	Name             string // the assignment's name, usually the machine configuration's name
	Configuration    string // machine configuration name
	Version          string
	AssignmentType   string // Audit | ApplyAndMonitor | ApplyAndAutoCorrect
	ComplianceStatus string // Compliant | NonCompliant | Pending
	ParameterHash    string
}

// MachineResource builds the Resource for a machine with its extensions and
// guest configuration assignments. Numbers become float64 as in JSON.
func MachineResource(m wire.Machine, exts []wire.MachineExtension, guest []GuestAssignmentStatus) *Resource {
	p := m.Properties
	props := map[string]any{
		"osName":         p.OSName,
		"osVersion":      p.OSVersion,
		"osPrettyName":   p.OSPrettyName,
		"osType":         p.OSType,
		"kernel":         p.Kernel,
		"arch":           p.Arch,
		"hostname":       p.Hostname,
		"fqdn":           p.FQDN,
		"environment":    p.Environment,
		"manufacturer":   p.Manufacturer,
		"model":          p.Model,
		"cpuCount":       float64(p.CPUCount),
		"memoryBytes":    float64(p.MemoryBytes),
		"status":         m.Status,
		"agentVersion":   m.AgentVersion,
		"agentSupported": m.AgentSupported,
		"machineId":      m.MachineID,
	}
	ips := make([]any, len(p.IPAddresses))
	for i, ip := range p.IPAddresses {
		ips[i] = ip
	}
	props["ipAddresses"] = ips
	if !m.LastHeartbeat.IsZero() {
		props["lastHeartbeat"] = m.LastHeartbeat.UTC().Format(time.RFC3339)
	}
	location := ""
	if c := p.Cloud; c != nil {
		props["cloud"] = map[string]any{"instanceId": c.InstanceID, "region": c.Region, "zone": c.Zone, "accountId": c.AccountID, "instanceType": c.InstanceType}
		location = c.Region
	}
	if ac := m.AgentConfig; ac != nil {
		props["agentConfiguration"] = map[string]any{
			"mode":                      ac.Mode,
			"extensionsEnabled":         ac.ExtensionsEnabled,
			"guestConfigurationEnabled": ac.GuestConfigurationEnabled,
		}
	}
	r := &Resource{
		ID: m.ID, Name: m.Name, Type: TypeMachine, Location: location,
		SubscriptionID: m.SubscriptionID, ResourceGroup: m.ResourceGroup,
		Tags: m.Tags, Properties: props,
	}
	extList := make([]any, 0, len(exts))
	for _, e := range exts {
		extList = append(extList, map[string]any{"name": e.Name, "publisher": e.Publisher, "type": e.Type, "version": e.Version, "state": e.State})
		r.Related = append(r.Related, &Resource{
			ID: e.ID, Name: e.Name, Type: TypeMachineExtension, Location: location,
			SubscriptionID: m.SubscriptionID, ResourceGroup: m.ResourceGroup,
			Properties: map[string]any{"publisher": e.Publisher, "type": e.Type, "typeHandlerVersion": e.Version, "provisioningState": e.State},
		})
	}
	props["extensions"] = extList
	for _, g := range guest {
		r.Related = append(r.Related, &Resource{
			ID: m.ID + "/providers/Corral.GuestConfiguration/guestConfigurationAssignments/" + g.Name, Name: g.Name,
			Type: TypeGuestConfigurationAssignment, Location: location,
			SubscriptionID: m.SubscriptionID, ResourceGroup: m.ResourceGroup,
			Properties: map[string]any{
				"complianceStatus": g.ComplianceStatus,
				"parameterHash":    g.ParameterHash,
				"guestConfiguration": map[string]any{
					"name": g.Configuration, "version": g.Version, "assignmentType": g.AssignmentType,
				},
			},
		})
	}
	return r
}
