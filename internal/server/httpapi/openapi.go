package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// schemaTypes are the wire types described in components.schemas.
var schemaTypes = []any{
	wire.ErrorResponse{}, wire.Subscription{}, wire.ResourceGroup{}, wire.ResourceGroupCreate{}, wire.Machine{},
	wire.MachineUpdate{}, wire.User{}, wire.UserCreate{}, wire.ServicePrincipal{}, wire.ServicePrincipalCreate{},
	wire.ServicePrincipalCreated{}, wire.APIToken{}, wire.APITokenCreate{}, wire.APITokenCreated{}, wire.RoleDefinition{},
	wire.RoleAssignment{}, wire.RoleAssignmentCreate{}, wire.ActivityEntry{}, wire.DeviceCodeApproval{},
	wire.PendingDeviceCode{}, wire.Me{}, wire.TokenResponse{}, wire.OAuthError{}, wire.DeviceCodeResponse{},
	wire.ConnectRequest{}, wire.ConnectResponse{}, wire.DesiredState{}, wire.ReportBatch{}, wire.ReportAck{},
	wire.RenewRequest{}, wire.RenewResponse{}, wire.StreamMessage{}, wire.Health{},
	wire.Publisher{}, wire.PublisherCreate{}, wire.ExtensionPackage{}, wire.SignedCatalog{}, wire.Catalog{},
	wire.MachineExtension{}, wire.MachineExtensionSet{}, wire.RunCommand{}, wire.RunCommandCreate{},
	wire.ExtensionStatus{}, wire.RunCommandResult{},
	wire.ProtectionEnable{}, wire.ProtectionAssignment{}, wire.MachineProtection{}, wire.ProtectionStatus{}, wire.Alert{},
	wire.ScanCreate{}, wire.Scan{}, wire.RestoreCreate{}, wire.Restore{}, wire.QuarantineEntry{}, wire.SignatureSet{},
	wire.ProtectionDesired{}, wire.ProtectionDetection{}, wire.ProtectionScanResult{}, wire.ProtectionQuarantineReport{},
	wire.ProtectionRestoreResult{},
}

var pathParamRE = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// OpenAPI builds the OpenAPI 3.1 document from the routing table, so the
// document cannot drift from the routes.
func (a *API) OpenAPI() map[string]any {
	paths := map[string]any{}
	for _, rt := range a.routes {
		item, _ := paths[rt.Pattern].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.Pattern] = item
		}
		op := map[string]any{
			"summary":         rt.Summary,
			"operationId":     operationID(rt),
			"x-corral-action": rt.Action,
			"responses": map[string]any{
				"default": map[string]any{"description": "Error", "content": map[string]any{
					"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/ErrorResponse"}}}},
				"2XX": map[string]any{"description": "Success"},
			},
		}
		switch rt.Auth {
		case AuthBearer:
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		case AuthMachine:
			op["security"] = []any{map[string]any{"machineCertificate": []any{}}}
		default:
			op["security"] = []any{}
		}
		var params []any
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.Pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		item[strings.ToLower(rt.Method)] = op
	}
	schemas := map[string]any{}
	for _, t := range schemaTypes {
		rt := reflect.TypeOf(t)
		schemas[rt.Name()] = jsonSchema(rt, 0)
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "Corral control plane API", "version": a.Settings.Version},
		"paths":   paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{
				"bearer":             map[string]any{"type": "http", "scheme": "bearer"},
				"machineCertificate": map[string]any{"type": "mutualTLS"},
			},
		},
	}
}

// operationID names an operation after its method and path segments; a
// path ending in a parameter gets "By" + its name, so a list and a get of
// the same collection stay distinct.
func operationID(rt Route) string {
	p := pathParamRE.ReplaceAllString(rt.Pattern, "")
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "api" || seg == "v1" {
			continue
		}
		seg = strings.Trim(seg, ".")
		b.WriteString(strings.ToUpper(seg[:1]) + seg[1:])
	}
	if m := pathParamRE.FindAllStringSubmatch(rt.Pattern, -1); len(m) > 0 && strings.HasSuffix(rt.Pattern, "}") {
		last := m[len(m)-1][1]
		b.WriteString("By" + strings.ToUpper(last[:1]) + last[1:])
	}
	return strings.ReplaceAll(b.String(), ".json", "")
}

var (
	timeType    = reflect.TypeOf(time.Time{})
	rawJSONType = reflect.TypeOf(json.RawMessage(nil))
)

// jsonSchema describes a Go type as JSON Schema, following encoding/json rules.
func jsonSchema(t reflect.Type, depth int) map[string]any {
	if depth > 6 {
		return map[string]any{}
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	if t == rawJSONType {
		return map[string]any{"description": "any JSON value, sent as is (settings are a JSON object)"}
	}
	if t == reflect.TypeOf(wire.Duration(0)) {
		return map[string]any{"type": "string", "description": "Go duration, e.g. 30s"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonSchema(t.Elem(), depth)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint32:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": jsonSchema(t.Elem(), depth+1)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": jsonSchema(t.Elem(), depth+1)}
	case reflect.Struct:
		props := map[string]any{}
		addStructFields(t, props, depth)
		return map[string]any{"type": "object", "properties": props}
	}
	return map[string]any{}
}

func addStructFields(t reflect.Type, props map[string]any, depth int) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			addStructFields(f.Type, props, depth)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = jsonSchema(f.Type, depth+1)
	}
}

func (a *API) getOpenAPI(w http.ResponseWriter, _ *http.Request, _ *Caller) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(a.openapi)
	return err
}
