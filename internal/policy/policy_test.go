package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/wire"
)

func testMachine() wire.Machine {
	return wire.Machine{
		ID:             "/subscriptions/s1/resourceGroups/rg1/machines/web-1",
		Name:           "web-1",
		SubscriptionID: "s1",
		ResourceGroup:  "rg1",
		Tags:           map[string]string{"env": "prod", "Owner": "team-a"},
		Status:         wire.StatusConnected,
		LastHeartbeat:  time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC),
		AgentVersion:   "1.4.0",
		AgentSupported: true,
		Properties: wire.MachineProperties{
			OSName: "debian", OSVersion: "12", OSPrettyName: "Debian GNU/Linux 12 (bookworm)", OSType: "linux",
			Kernel: "6.1.0-18-amd64", Arch: "amd64", Hostname: "web-1", Environment: "AWS",
			Cloud:    &wire.CloudMetadata{InstanceID: "i-0abc", Region: "eu-west-1", AccountID: "123456789012"},
			CPUCount: 2, MemoryBytes: 4 << 30, IPAddresses: []string{"10.0.0.5", "fe80::1"},
		},
		AgentConfig: &wire.AgentConfig{Mode: "full", ExtensionsEnabled: true, GuestConfigurationEnabled: true},
	}
}

func testExtensions() []wire.MachineExtension {
	return []wire.MachineExtension{
		{ID: "/subscriptions/s1/resourceGroups/rg1/machines/web-1/extensions/ep", Name: "ep", Publisher: "Corral", Type: "EndpointProtection", Version: "1.2.0", State: wire.ExtSucceeded},
		{ID: "/subscriptions/s1/resourceGroups/rg1/machines/web-1/extensions/rc", Name: "rc", Publisher: "Corral", Type: "RunCommand", Version: "1.0.0", State: wire.ExtFailed},
	}
}

func mustParse(t *testing.T, src string) *Definition {
	t.Helper()
	d, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

func bind(t *testing.T, d *Definition, params map[string]any) *Params {
	t.Helper()
	p, err := d.BindParameters(params)
	if err != nil {
		t.Fatalf("BindParameters: %v", err)
	}
	return &p
}

func TestAzureExportedDefinitions(t *testing.T) {
	m := testMachine()
	withExt := MachineResource(m, testExtensions(), []GuestAssignmentStatus{{Name: "PasswordPolicy_msid121", Configuration: "PasswordPolicy_msid121", ComplianceStatus: "NonCompliant"}})
	untagged := m
	untagged.Tags = map[string]string{"Owner": "x"}
	noTags := MachineResource(untagged, nil, nil)
	compliantGuest := MachineResource(m, nil, []GuestAssignmentStatus{{Name: "PasswordPolicy_msid121", Configuration: "PasswordPolicy_msid121", ComplianceStatus: "Compliant"}})
	noGuest := MachineResource(m, nil, nil)
	ama := MachineResource(m, []wire.MachineExtension{{Name: "AzureMonitorLinuxAgent", Publisher: "Microsoft.Azure.Monitor", Type: "AzureMonitorLinuxAgent", State: wire.ExtSucceeded}}, nil)
	prev := "team-a"
	tests := []struct {
		file    string
		params  map[string]any
		res     *Resource
		effect  Effect
		state   ComplianceState
		matched bool
		changes []TagChange
		reason  string
		deploy  *Deployment
	}{
		{file: "require-tag.json", params: map[string]any{"tagName": "env"}, res: withExt, effect: EffectDeny, state: Compliant},
		{file: "require-tag.json", params: map[string]any{"tagName": "ENV"}, res: withExt, effect: EffectDeny, state: Compliant},
		{file: "require-tag.json", params: map[string]any{"tagName": "env"}, res: noTags, effect: EffectDeny, state: NonCompliant, matched: true, reason: `field tags[env] (missing) exists "false"`},
		{file: "allowed-locations.json", params: map[string]any{"listOfAllowedLocations": []any{"eu-west-1", "eu-central-1"}}, res: withExt, effect: EffectDeny, state: Compliant},
		{file: "allowed-locations.json", params: map[string]any{"listOfAllowedLocations": []any{"us-east-1"}}, res: withExt, effect: EffectDeny, state: NonCompliant, matched: true, reason: `field location ("eu-west-1") notIn ["us-east-1"]`},
		// Arc machines are only in scope with IncludeArcMachines=true; the
		// Microsoft.Compute aliases never exist on a Corral machine.
		{file: "gc-passwd-0644-arc.json", res: withExt, effect: EffectAuditIfNotExists, state: Compliant},
		{file: "gc-passwd-0644-arc.json", params: map[string]any{"IncludeArcMachines": "true"}, res: withExt, effect: EffectAuditIfNotExists, state: NonCompliant, matched: true, reason: `guest configuration assignment "PasswordPolicy_msid121" is NonCompliant`},
		{file: "gc-passwd-0644-arc.json", params: map[string]any{"IncludeArcMachines": "true"}, res: compliantGuest, effect: EffectAuditIfNotExists, state: Compliant, matched: true},
		{file: "gc-passwd-0644-arc.json", params: map[string]any{"IncludeArcMachines": "true"}, res: noGuest, effect: EffectAuditIfNotExists, state: NonCompliant, matched: true, reason: `no Corral.GuestConfiguration/guestConfigurationAssignments "PasswordPolicy_msid121" exists`},
		{file: "gc-passwd-0644-arc.json", params: map[string]any{"IncludeArcMachines": "true", "effect": "Disabled"}, res: noGuest, effect: EffectDisabled},
		{file: "modify-tag.json", params: map[string]any{"tagName": "env", "tagValue": "prod"}, res: withExt, effect: EffectModify, state: Compliant},
		{file: "modify-tag.json", params: map[string]any{"tagName": "owner", "tagValue": "team-b"}, res: withExt, effect: EffectModify, state: NonCompliant, matched: true,
			changes: []TagChange{{Operation: TagAddOrReplace, Key: "Owner", Value: "team-b", Previous: &prev}}},
		{file: "modify-tag.json", params: map[string]any{"tagName": "costCenter", "tagValue": "42"}, res: withExt, effect: EffectModify, state: NonCompliant, matched: true,
			changes: []TagChange{{Operation: TagAddOrReplace, Key: "costCenter", Value: "42"}}},
		{file: "append-tag.json", params: map[string]any{"tagName": "costCenter", "tagValue": "42"}, res: withExt, effect: EffectAppend, state: NonCompliant, matched: true,
			changes: []TagChange{{Operation: TagAddOrReplace, Key: "costCenter", Value: "42"}}},
		{file: "arc-ama-dine.json", res: withExt, effect: EffectDeployIfNotExists, state: NonCompliant, matched: true,
			deploy: &Deployment{Extensions: []ExtensionDeployment{{Name: "AzureMonitorLinuxAgent", Publisher: "Microsoft.Azure.Monitor", Type: "AzureMonitorLinuxAgent", AutoUpgradeMinorVersion: true}}}},
		{file: "arc-ama-dine.json", res: ama, effect: EffectDeployIfNotExists, state: Compliant, matched: true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			d := mustParse(t, string(src))
			res, err := d.Evaluate(tc.res, bind(t, d, tc.params))
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if res.Effect != tc.effect || res.ComplianceState != tc.state || res.Matched != tc.matched {
				t.Fatalf("got effect %s state %q matched %v (%s), want %s %q %v", res.Effect, res.ComplianceState, res.Matched, res.Reason, tc.effect, tc.state, tc.matched)
			}
			if diff := cmp.Diff(tc.changes, res.TagChanges); diff != "" {
				t.Errorf("tag changes (-want +got):\n%s", diff)
			}
			if tc.reason != "" && !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", res.Reason, tc.reason)
			}
			if diff := cmp.Diff(tc.deploy, res.Deployment); diff != "" {
				t.Errorf("deployment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseNamesAndGuestConfiguration(t *testing.T) {
	src, err := os.ReadFile("testdata/gc-passwd-0644-arc.json")
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, string(src))
	if d.Name != "e6955644-301c-44b5-a4c4-528577de6861" || d.DisplayName != "Audit Linux machines that do not have the passwd file permissions set to 0644" || d.Mode != "Indexed" {
		t.Errorf("name %q display %q mode %q", d.Name, d.DisplayName, d.Mode)
	}
	if d.GuestConfiguration == nil || d.GuestConfiguration.Name != "PasswordPolicy_msid121" || d.GuestConfiguration.Version != "1.*" {
		t.Errorf("guest configuration %+v", d.GuestConfiguration)
	}
	bare := mustParse(t, `{"name":"x","displayName":"X","policyRule":{"if":{"field":"name","equals":"a"},"then":{"effect":"audit"}}}`)
	if bare.Name != "x" || bare.DisplayName != "X" || bare.Mode != "All" {
		t.Errorf("bare: %+v", bare)
	}
}

// rule builds a bare definition with one if condition and audit.
func rule(cond string) string {
	return `{"parameters":{"p":{"type":"String","defaultValue":"Corral"},"arr":{"type":"Array","defaultValue":["AWS","GCP"]},"n":{"type":"Integer","defaultValue":2}},
	"policyRule":{"if":` + cond + `,"then":{"effect":"audit"}}}`
}

func TestConditions(t *testing.T) {
	r := MachineResource(testMachine(), testExtensions(), nil)
	ext := r.Related[0]
	tests := []struct {
		name string
		cond string
		res  *Resource
		want bool
	}{
		{"equals folds case", `{"field":"Corral.HybridCompute/machines/osName","equals":"DEBIAN"}`, r, true},
		{"notEquals", `{"field":"Corral.HybridCompute/machines/osName","notEquals":"ubuntu"}`, r, true},
		{"equals number", `{"field":"Corral.HybridCompute/machines/cpuCount","equals":2}`, r, true},
		{"equals bool as string", `{"field":"Corral.HybridCompute/machines/agentSupported","equals":"true"}`, r, true},
		{"alias names fold case", `{"field":"corral.hybridcompute/MACHINES/environment","equals":"aws"}`, r, true},
		{"azure osName is the family", `{"field":"Microsoft.HybridCompute/machines/osName","equals":"linux"}`, r, true},
		{"azure osSku", `{"field":"Microsoft.HybridCompute/machines/osSku","like":"Debian*12*"}`, r, true},
		{"azure cloud provider", `{"field":"Microsoft.HybridCompute/machines/cloudMetadata.provider","equals":"AWS"}`, r, true},
		{"type synonym", `{"field":"type","equals":"Microsoft.HybridCompute/machines"}`, r, true},
		{"type synonym in", `{"field":"type","in":["microsoft.hybridcompute/MACHINES"]}`, r, true},
		{"type like", `{"field":"type","like":"Microsoft.HybridCompute/*"}`, r, true},
		{"like prefix", `{"field":"name","like":"web-*"}`, r, true},
		{"like middle", `{"field":"Corral.HybridCompute/machines/kernel","like":"6.*-amd64"}`, r, true},
		{"notLike", `{"field":"name","notLike":"db-*"}`, r, true},
		{"match digits", `{"field":"name","match":"???-#"}`, r, true},
		{"match is case-sensitive", `{"field":"name","match":"WEB-#"}`, r, false},
		{"matchInsensitively", `{"field":"name","matchInsensitively":"WEB-#"}`, r, true},
		{"notMatch", `{"field":"name","notMatch":"####"}`, r, true},
		{"notMatchInsensitively", `{"field":"name","notMatchInsensitively":"WEB-#"}`, r, false},
		{"contains substring", `{"field":"Corral.HybridCompute/machines/osPrettyName","contains":"BOOKWORM"}`, r, true},
		{"notContains", `{"field":"Corral.HybridCompute/machines/osPrettyName","notContains":"ubuntu"}`, r, true},
		{"contains in array", `{"field":"Corral.HybridCompute/machines/ipAddresses","contains":"10.0.0.5"}`, r, true},
		{"in parameter", `{"field":"Corral.HybridCompute/machines/environment","in":"[parameters('arr')]"}`, r, true},
		{"notIn", `{"field":"Corral.HybridCompute/machines/environment","notIn":["OnPrem"]}`, r, true},
		{"containsKey folds", `{"field":"tags","containsKey":"OWNER"}`, r, true},
		{"notContainsKey", `{"field":"tags","notContainsKey":"cost"}`, r, true},
		{"less", `{"field":"Corral.HybridCompute/machines/cpuCount","less":4}`, r, true},
		{"lessOrEquals", `{"field":"Corral.HybridCompute/machines/cpuCount","lessOrEquals":2}`, r, true},
		{"greater", `{"field":"Corral.HybridCompute/machines/memoryBytes","greater":1073741824}`, r, true},
		{"greaterOrEquals param", `{"field":"Corral.HybridCompute/machines/cpuCount","greaterOrEquals":"[parameters('n')]"}`, r, true},
		{"greater date", `{"field":"Corral.HybridCompute/machines/lastHeartbeat","greater":"2026-01-01"}`, r, true},
		{"less string version folds", `{"field":"Corral.HybridCompute/machines/agentVersion","less":"1.5"}`, r, true},
		{"exists true", `{"field":"tags['env']","exists":true}`, r, true},
		{"exists false", `{"field":"tags['nope']","exists":"false"}`, r, true},
		{"tag dot form", `{"field":"tags.env","equals":"prod"}`, r, true},
		{"tag bracket form folds", `{"field":"tags[OWNER]","equals":"team-a"}`, r, true},
		{"missing field notEquals", `{"field":"tags['nope']","notEquals":"x"}`, r, true},
		{"missing field equals", `{"field":"tags['nope']","equals":""}`, r, false},
		{"missing field in", `{"field":"tags['nope']","in":["x"]}`, r, false},
		{"tags[*] all", `{"field":"tags[*]","notEquals":""}`, r, true},
		{"[*] means all", `{"field":"Corral.HybridCompute/machines/extensions[*].publisher","equals":"Corral"}`, r, true},
		{"[*] all fails", `{"field":"Corral.HybridCompute/machines/extensions[*].type","equals":"RunCommand"}`, r, false},
		{"foreign alias never exists", `{"field":"Microsoft.Compute/imagePublisher","exists":"false"}`, r, true},
		{"alias of another type is missing", `{"field":"Corral.HybridCompute/machines/extensions/publisher","exists":"false"}`, r, true},
		{"extension alias on extension", `{"field":"Microsoft.HybridCompute/machines/extensions/publisher","equals":"corral"}`, ext, true},
		{"allOf", `{"allOf":[{"field":"name","equals":"web-1"},{"field":"location","equals":"eu-west-1"}]}`, r, true},
		{"anyOf", `{"anyOf":[{"field":"name","equals":"x"},{"field":"location","equals":"eu-west-1"}]}`, r, true},
		{"not", `{"not":{"field":"name","equals":"web-1"}}`, r, false},
		{"field count where", `{"count":{"field":"Corral.HybridCompute/machines/extensions[*]","where":{"allOf":[{"field":"Corral.HybridCompute/machines/extensions[*].publisher","equals":"Corral"},{"field":"Corral.HybridCompute/machines/extensions[*].state","equals":"Succeeded"}]}},"equals":1}`, r, true},
		{"field count all", `{"count":{"field":"Corral.HybridCompute/machines/extensions[*]"},"equals":2}`, r, true},
		{"field count current", `{"count":{"field":"Corral.HybridCompute/machines/extensions[*]","where":{"value":"[current('Corral.HybridCompute/machines/extensions[*].type')]","equals":"RunCommand"}},"greater":0}`, r, true},
		{"count tags", `{"count":{"field":"tags[*]"},"equals":2}`, r, true},
		{"value count with name", `{"count":{"value":["a","b","web"],"name":"n","where":{"field":"name","like":"[concat(current('n'), '*')]"}},"equals":1}`, r, true},
		{"value count current()", `{"count":{"value":"[parameters('arr')]","where":{"value":"[current()]","equals":"[field('Corral.HybridCompute/machines/environment')]"}},"greater":0}`, r, true},
		{"value count without where", `{"count":{"value":[1,2,3]},"equals":3}`, r, true},
		{"value toLower", `{"value":"[toLower(field('Corral.HybridCompute/machines/environment'))]","equals":"aws"}`, r, true},
		{"value toUpper case-sensitive match", `{"value":"[toUpper(field('name'))]","match":"WEB-#"}`, r, true},
		{"value if", `{"value":"[if(equals(field('Corral.HybridCompute/machines/osName'), 'debian'), 'apt', 'dnf')]","equals":"apt"}`, r, true},
		{"value contains", `{"value":"[contains(parameters('arr'), 'GCP')]","equals":true}`, r, true},
		{"value empty", `{"value":"[empty(field('tags'))]","equals":false}`, r, true},
		{"value length", `{"value":"[length(field('Corral.HybridCompute/machines/extensions'))]","equals":2}`, r, true},
		{"value concat", `{"value":"[concat(field('name'), '.', parameters('p'))]","equals":"web-1.corral"}`, r, true},
		{"escaped bracket literal", `{"value":"[[not an expression]","equals":"[[not an expression]"}`, r, true},
		{"escaped bracket is literal text", `{"field":"name","notEquals":"[[web-1]"}`, r, true},
		{"field() of [*] gives an array", `{"value":"[field('Corral.HybridCompute/machines/extensions[*].name')]","contains":"rc"}`, r, true},
		{"computed field", `{"field":"[concat('tags[', 'env', ']')]","equals":"prod"}`, r, true},
		{"split and first", `{"value":"[first(split(field('Corral.HybridCompute/machines/kernel'), '.'))]","equals":"6"}`, r, true},
		{"resourceGroup()", `{"value":"[resourceGroup().name]","equals":"rg1"}`, r, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := mustParse(t, rule(tc.cond))
			res, err := d.Evaluate(tc.res, nil)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if res.Matched != tc.want {
				t.Errorf("matched %v, want %v (%s)", res.Matched, tc.want, res.Reason)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	ok := `{"field":"name","equals":"a"}`
	tests := []struct {
		name, src, path, msg string
	}{
		{"invalid JSON", "{\n  \"policyRule\": {\n    \"if\": ,\n", "", "invalid JSON at line 3, column 11"},
		{"not an object", `[1]`, "", "must be a JSON object"},
		{"unknown effect", `{"policyRule":{"if":` + ok + `,"then":{"effect":"denyAction"}}}`, "policyRule.then.effect", `unsupported effect "denyAction": supported are Audit, Deny, Append, Modify, AuditIfNotExists, DeployIfNotExists, Disabled`},
		{"unknown effect in allowedValues", `{"parameters":{"effect":{"type":"String","allowedValues":["Audit","Manual"],"defaultValue":"Audit"}},"policyRule":{"if":` + ok + `,"then":{"effect":"[parameters('effect')]"}}}`, "parameters.effect.allowedValues[1]", `unsupported effect "Manual"`},
		{"unknown operator", `{"policyRule":{"if":{"field":"name","equal":"a"},"then":{"effect":"audit"}}}`, "policyRule.if.equal", `unsupported condition operator "equal"`},
		{"two operators", `{"policyRule":{"if":{"field":"name","equals":"a","like":"b"},"then":{"effect":"audit"}}}`, "policyRule.if", "exactly one operator"},
		{"no subject", `{"policyRule":{"if":{"equals":"a"},"then":{"effect":"audit"}}}`, "policyRule.if", "needs field, value or count"},
		{"unknown alias", `{"properties":{"policyRule":{"if":{"allOf":[` + ok + `,{"field":"Microsoft.HybridCompute/machines/osFoo","equals":"x"}]},"then":{"effect":"audit"}}}}`, "properties.policyRule.if.allOf[1].field", `unknown field or alias "Microsoft.HybridCompute/machines/osFoo"`},
		{"properties path field", `{"policyRule":{"if":{"field":"properties.osName","equals":"x"},"then":{"effect":"audit"}}}`, "policyRule.if.field", "read through aliases"},
		{"wrong default type", `{"parameters":{"n":{"type":"Integer","defaultValue":"three"}},"policyRule":{"if":` + ok + `,"then":{"effect":"audit"}}}`, "parameters.n.defaultValue", "must be of type Integer, got a string"},
		{"default not allowed", `{"parameters":{"s":{"type":"String","allowedValues":["a"],"defaultValue":"b"}},"policyRule":{"if":` + ok + `,"then":{"effect":"audit"}}}`, "parameters.s.defaultValue", "not one of the allowed values"},
		{"unknown parameter type", `{"parameters":{"s":{"type":"Text"}},"policyRule":{"if":` + ok + `,"then":{"effect":"audit"}}}`, "parameters.s.type", `unsupported parameter type "Text"`},
		{"undeclared parameter", `{"policyRule":{"if":{"field":"name","equals":"[parameters('missing')]"},"then":{"effect":"audit"}}}`, "policyRule.if.equals", `parameters("missing"): the definition declares no such parameter`},
		{"unsupported function", `{"policyRule":{"if":{"value":"[utcNow()]","equals":"a"},"then":{"effect":"audit"}}}`, "policyRule.if.value", `unsupported template function "utcNow"`},
		{"bad expression", `{"policyRule":{"if":{"value":"[concat('a', ]","equals":"a"},"then":{"effect":"audit"}}}`, "policyRule.if.value", "in expression [concat('a', ]"},
		{"in needs array", `{"policyRule":{"if":{"field":"name","in":"a"},"then":{"effect":"audit"}}}`, "policyRule.if.in", "in needs an array"},
		{"unsupported mode", `{"mode":"Microsoft.Kubernetes.Data","policyRule":{"if":` + ok + `,"then":{"effect":"audit"}}}`, "mode", `unsupported mode "Microsoft.Kubernetes.Data"`},
		{"unknown property", `{"policyRule":{"if":` + ok + `,"then":{"effect":"audit"},"else":{}}}`, "policyRule.else", `unsupported property "else"`},
		{"details for audit", `{"policyRule":{"if":` + ok + `,"then":{"effect":"audit","details":{}}}}`, "policyRule.then.details", "not used by effect Audit"},
		{"modify non-tag", `{"policyRule":{"if":` + ok + `,"then":{"effect":"modify","details":{"roleDefinitionIds":[],"operations":[{"operation":"addOrReplace","field":"location","value":"x"}]}}}}`, "policyRule.then.details.operations[0].field", "modify in Corral changes only tags"},
		{"modify unknown operation", `{"policyRule":{"if":` + ok + `,"then":{"effect":"modify","details":{"operations":[{"operation":"merge","field":"tags.a","value":"x"}]}}}}`, "policyRule.then.details.operations[0].operation", `unsupported operation "merge"`},
		{"count on non-array", `{"policyRule":{"if":{"count":{"field":"name"},"equals":1},"then":{"effect":"audit"}}}`, "policyRule.if.count.field", "must be an array alias ending in [*]"},
		{"current outside count", `{"policyRule":{"if":{"value":"[current()]","equals":1},"then":{"effect":"audit"}}}`, "policyRule.if.value", "only available inside a count"},
		{"empty allOf", `{"policyRule":{"if":{"allOf":[]},"then":{"effect":"audit"}}}`, "policyRule.if.allOf", "at least one condition"},
		{"unsupported related type", `{"policyRule":{"if":` + ok + `,"then":{"effect":"auditIfNotExists","details":{"type":"Microsoft.Insights/diagnosticSettings"}}}}`, "policyRule.then.details.type", "unsupported related resource type"},
		{"dine without deployment", `{"policyRule":{"if":` + ok + `,"then":{"effect":"deployIfNotExists","details":{"type":"Microsoft.HybridCompute/machines/extensions"}}}}`, "policyRule.then.details.deployment", "deployIfNotExists needs a deployment"},
		{"no policyRule", `{"displayName":"x"}`, "policyRule", "needs a policyRule"},
		{"duplicate key", `{"policyRule":{"if":` + ok + `,"then":{"effect":"audit","Effect":"deny"}}}`, "policyRule.then", "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidDefinition) {
				t.Fatalf("error %v (%T) is not a *PathError wrapping ErrInvalidDefinition", err, err)
			}
			if pe.Path != tc.path {
				t.Errorf("path %q, want %q (%v)", pe.Path, tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
}

func TestBindParametersErrors(t *testing.T) {
	d := mustParse(t, `{"parameters":{"tagName":{"type":"String"},"n":{"type":"Integer","defaultValue":1},"env":{"type":"Array","allowedValues":[["a"],["b"]],"defaultValue":["a"]},
		"effect":{"type":"String","allowedValues":["Audit","Deny","Disabled"],"defaultValue":"Audit"}},
		"policyRule":{"if":{"field":"name","equals":"[parameters('tagName')]"},"then":{"effect":"[parameters('effect')]"}}}`)
	tests := []struct {
		name   string
		params map[string]any
		msg    string
	}{
		{"missing required", map[string]any{}, "tagName: a value is required"},
		{"unknown", map[string]any{"tagName": "a", "colour": "red"}, `colour: the definition has no parameter "colour"`},
		{"wrong type", map[string]any{"tagName": 3.0}, "tagName: must be of type String, got a number"},
		{"not integral", map[string]any{"tagName": "a", "n": 1.5}, "n: must be of type Integer"},
		{"not allowed", map[string]any{"tagName": "a", "effect": "Modify"}, `effect: "Modify" is not one of the allowed values`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.BindParameters(tc.params)
			if err == nil || !errors.Is(err, ErrInvalidParameters) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want ErrInvalidParameters containing %q", err, tc.msg)
			}
		})
	}
	p := bind(t, d, map[string]any{"tagName": "a", "effect": "deny"})
	if d.Effect(*p) != EffectDeny {
		t.Errorf("effect %s, want Deny", d.Effect(*p))
	}
}

func TestParseParameterValues(t *testing.T) {
	got, err := ParseParameterValues([]byte(`{"tagName":{"value":"env"},"list":{"value":["a"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"tagName": "env", "list": []any{"a"}}, got); diff != "" {
		t.Error(diff)
	}
	got, err = ParseParameterValues([]byte(`{"tagName":"env"}`))
	if err != nil || got["tagName"] != "env" {
		t.Errorf("plain form: %v %v", got, err)
	}
	if _, err := ParseParameterValues([]byte(`{"tagName":`)); err == nil || !errors.Is(err, ErrInvalidParameters) {
		t.Errorf("invalid JSON: %v", err)
	}
}

func TestEvalErrorForComputedField(t *testing.T) {
	d := mustParse(t, `{"parameters":{"f":{"type":"String"}},"policyRule":{"if":{"field":"[parameters('f')]","equals":"a"},"then":{"effect":"audit"}}}`)
	_, err := d.Evaluate(MachineResource(testMachine(), nil, nil), bind(t, d, map[string]any{"f": "Corral.HybridCompute/machines/nope"}))
	var ee *EvalError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "unknown field or alias") {
		t.Fatalf("got %v, want an EvalError naming the field", err)
	}
}

func TestApplyTagChanges(t *testing.T) {
	prev := "a"
	got := ApplyTagChanges(map[string]string{"Env": "a", "x": "1"}, []TagChange{
		{Operation: TagAddOrReplace, Key: "env", Value: "b", Previous: &prev},
		{Operation: TagRemove, Key: "X"},
		{Operation: TagAdd, Key: "new", Value: "n"},
	})
	if diff := cmp.Diff(map[string]string{"Env": "b", "new": "n"}, got); diff != "" {
		t.Error(diff)
	}
}

func TestAliasesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatalf("docs/policy.md: %v", err)
	}
	for _, a := range Aliases() {
		if !strings.Contains(string(doc), "`"+a.Name+"`") {
			t.Errorf("alias %s is not documented in docs/policy.md", a.Name)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	src, err := os.ReadFile("testdata/allowed-locations.json")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, src string
		params    map[string]any
	}{
		{"allowed-locations", string(src), map[string]any{"listOfAllowedLocations": []any{"eu-west-1", "eu-central-1"}}},
		{"require-tag-computed-field", `{"parameters":{"tagName":{"type":"String"}},"policyRule":{"if":{"field":"[concat('tags[', parameters('tagName'), ']')]","exists":"false"},"then":{"effect":"deny"}}}`, map[string]any{"tagName": "env"}},
		{"allowed-extensions-count", `{"parameters":{"allowed":{"type":"Array"}},"policyRule":{"if":{"allOf":[{"field":"type","equals":"Microsoft.HybridCompute/machines"},{"count":{"field":"Corral.HybridCompute/machines/extensions[*]","where":{"value":"[concat(current('Corral.HybridCompute/machines/extensions[*].publisher'), '/', current('Corral.HybridCompute/machines/extensions[*].type'))]","notIn":"[parameters('allowed')]"}},"greater":0}]},"then":{"effect":"audit"}}}`, map[string]any{"allowed": []any{"Corral/EndpointProtection", "Corral/RunCommand"}}},
	}
	r := MachineResource(testMachine(), testExtensions(), nil)
	for _, tc := range cases {
		d, err := Parse([]byte(tc.src))
		if err != nil {
			b.Fatal(err)
		}
		p, err := d.BindParameters(tc.params)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Evaluate(r, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
