package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/corralhq/corral/internal/wire"
)

// Bodies that are not one JSON value, for Route.Request and Route.Response.

// NoBody is the Request of a POST, PUT or PATCH route that takes no body.
type NoBody struct{}

// Raw is a body sent as it is (an archive), in one of ContentTypes.
type Raw struct {
	ContentTypes []string
	Description  string
}

// Form is an application/x-www-form-urlencoded request body whose fields
// are the JSON names of the fields of Fields, a zero struct value.
type Form struct{ Fields any }

// WebSocket is the Response of a route that upgrades the connection to a
// WebSocket carrying one JSON Message per text frame in both directions
// (Status 101).
type WebSocket struct {
	Message     any
	Description string
}

// apiVersion is info.version of the document: the version of the /api/v1
// contract, not of the server build (the document is checked in and must
// not change with every build).
const apiVersion = "v1"

var pathParamRE = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// OpenAPIJSON is the OpenAPI 3.1 document of the routing table, as served
// at /api/v1/openapi.json and checked in as api/openapi.json (go generate
// ./... writes it): indented, keys sorted, so it is byte for byte stable.
func (a *API) OpenAPIJSON() ([]byte, error) {
	doc, err := openAPIDocument(a.routes)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode the OpenAPI document: %w", err)
	}
	return buf.Bytes(), nil
}

// openAPIDocument builds the document from the routes and the Go types
// they name: every operation with its parameters, body, success and error
// responses and security; the types as components.schemas (only those some
// operation uses). It fails on a route or type it cannot describe truly.
func openAPIDocument(routes []Route) (map[string]any, error) {
	b := &docBuilder{schemas: map[string]any{}, typeNames: map[reflect.Type]string{}, nameTypes: map[string]reflect.Type{},
		responses: map[string]any{}, tags: map[string]bool{}}
	paths := map[string]any{}
	for _, rt := range routes {
		item, _ := paths[rt.Pattern].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.Pattern] = item
		}
		method := strings.ToLower(rt.Method)
		if _, dup := item[method]; dup {
			b.fail("%s %s is declared twice", rt.Method, rt.Pattern)
		}
		item[method] = b.operation(rt)
	}
	if len(b.errs) > 0 {
		return nil, fmt.Errorf("the route table cannot be described: %s", strings.Join(b.errs, "; "))
	}
	var tags []any
	for _, name := range sortedKeys(b.tags) {
		tags = append(tags, map[string]any{"name": name, "description": tagDescription(name)})
	}
	components := map[string]any{
		"schemas":         b.schemas,
		"securitySchemes": securitySchemes,
	}
	if len(b.responses) > 0 {
		components["responses"] = b.responses
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "Corral control plane API",
			"version": apiVersion,
			"description": "The REST API of a Corral control plane: resources under /api/v1 (bearer token), " +
				"the OAuth2 endpoints (public) and the agent protocol under /agent/v1 (the machine's client " +
				"certificate). Errors are {\"error\":{\"code\",\"message\",\"target\"}} with the HTTP status; lists " +
				"are {\"value\":[...],\"nextLink\":\"...\"} paged with $top and $skipToken. x-corral-action on each " +
				"operation is the RBAC action it performs (or names in the activity log). This document is " +
				"generated from the server's route table (api/openapi.json in the repository).",
			"license": map[string]any{"name": "Apache-2.0", "identifier": "Apache-2.0"},
		},
		"servers": []any{map[string]any{
			"url":         "https://{host}",
			"description": "A Corral control plane (its TLS listener serves the API, the OAuth2 endpoints and the agent protocol).",
			"variables": map[string]any{"host": map[string]any{
				"default": "localhost:8443", "description": "Host name and port of the control plane.",
			}},
		}},
		"tags":       tags,
		"paths":      paths,
		"components": components,
	}, nil
}

var securitySchemes = map[string]any{
	"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT or crl_pat_ API token",
		"description": "An access token from POST /oauth2/token, or a long-lived API token (crl_pat_...) from POST /api/v1/tokens."},
	"oauth2": map[string]any{"type": "oauth2",
		"description": "The OAuth2 token endpoint: a service principal's client credentials or a user's password give a bearer token.",
		"flows": map[string]any{
			"clientCredentials": map[string]any{"tokenUrl": wire.PathToken, "scopes": map[string]any{}},
			"password":          map[string]any{"tokenUrl": wire.PathToken, "scopes": map[string]any{}},
		}},
	"machineCertificate": map[string]any{"type": "mutualTLS",
		"description": "The machine's TLS client certificate, issued by the control plane's CA at connect and renewed through /agent/v1/certificate."},
}

// docBuilder accumulates the components while operations are described.
type docBuilder struct {
	schemas   map[string]any
	typeNames map[reflect.Type]string
	nameTypes map[string]reflect.Type
	responses map[string]any
	tags      map[string]bool
	errs      []string
}

func (b *docBuilder) fail(format string, args ...any) {
	b.errs = append(b.errs, fmt.Sprintf(format, args...))
}

func (b *docBuilder) operation(rt Route) map[string]any {
	tag := tagOf(rt)
	b.tags[tag] = true
	op := map[string]any{
		"operationId":     operationID(rt),
		"summary":         rt.Summary,
		"tags":            []any{tag},
		"x-corral-action": rt.Action,
	}
	switch rt.Auth {
	case AuthBearer:
		op["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{"oauth2": []any{}}}
	case AuthMachine:
		op["security"] = []any{map[string]any{"machineCertificate": []any{}}}
	default:
		op["security"] = []any{}
	}

	var params []any
	pathParams := pathParamRE.FindAllStringSubmatch(rt.Pattern, -1)
	for _, m := range pathParams {
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true,
			"description": pathParamDoc(rt.Pattern, m[1]), "schema": map[string]any{"type": "string"}})
	}
	for _, q := range rt.Query {
		params = append(params, b.queryParam(rt, q))
	}
	if len(params) > 0 {
		op["parameters"] = params
	}

	errs := map[int]bool{http.StatusInternalServerError: true}
	if rt.Auth == AuthBearer || rt.Auth == AuthMachine {
		errs[http.StatusUnauthorized], errs[http.StatusForbidden] = true, true
	}
	if len(pathParams) > 0 {
		errs[http.StatusNotFound] = true
	}
	if len(rt.Query) > 0 {
		errs[http.StatusBadRequest] = true
	}
	switch body := rt.Request.(type) {
	case nil, NoBody:
		if rt.Request == nil && (rt.Method == http.MethodPost || rt.Method == http.MethodPut || rt.Method == http.MethodPatch) {
			b.fail("%s %s: Request is not described (NoBody{} if it takes none)", rt.Method, rt.Pattern)
		}
	case Form:
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
			"application/x-www-form-urlencoded": map[string]any{"schema": b.schema(reflect.TypeOf(body.Fields))}}}
		errs[http.StatusBadRequest], errs[http.StatusRequestEntityTooLarge], errs[http.StatusUnsupportedMediaType] = true, true, true
	case Raw:
		op["requestBody"] = map[string]any{"required": true, "description": body.Description, "content": rawContent(body)}
		errs[http.StatusBadRequest], errs[http.StatusRequestEntityTooLarge], errs[http.StatusUnsupportedMediaType] = true, true, true
	default:
		if rt.Method == http.MethodGet || rt.Method == http.MethodDelete {
			b.fail("%s %s: a %s takes no body, yet Request is %T", rt.Method, rt.Pattern, rt.Method, rt.Request)
		}
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
			"application/json": map[string]any{"schema": b.schema(reflect.TypeOf(body))}}}
		errs[http.StatusBadRequest], errs[http.StatusRequestEntityTooLarge], errs[http.StatusUnsupportedMediaType] = true, true, true
	}
	for _, s := range rt.Errors {
		if s < 400 || s > 599 {
			b.fail("%s %s: Errors lists %d, not an error status", rt.Method, rt.Pattern, s)
		}
		errs[s] = true
	}

	responses := map[string]any{}
	status := rt.Status
	if status == 0 {
		status = http.StatusOK
	}
	if rt.Response == nil && status != http.StatusNoContent {
		b.fail("%s %s: Response is not described (Status 204 if it answers with no body)", rt.Method, rt.Pattern)
	}
	for _, s := range append([]int{status}, rt.AlsoStatus...) {
		if s < 100 || s > 299 {
			b.fail("%s %s: success status %d is not 1xx or 2xx", rt.Method, rt.Pattern, s)
		}
		responses[strconv.Itoa(s)] = b.success(rt, s)
	}
	if ws, ok := rt.Response.(WebSocket); ok {
		// The handshake is refused by the WebSocket library in plain text.
		text := map[string]any{"text/plain": map[string]any{"schema": map[string]any{"type": "string"}}}
		responses["400"] = map[string]any{"description": "The WebSocket handshake is malformed (text/plain).", "content": text}
		responses["426"] = map[string]any{"description": "The request is not a WebSocket upgrade (text/plain).", "content": text}
		// Inline: linters and generators do not follow references from
		// extensions, so a component used only here would look unused.
		mt := reflect.TypeOf(ws.Message)
		msg := b.structSchema(mt)
		if d, ok := typeDocs[mt]; ok {
			msg["description"] = d
		}
		op["x-corral-websocket"] = map[string]any{"message": msg,
			"description": "Each text frame, in both directions, is one JSON message of this schema."}
		delete(errs, http.StatusBadRequest)
	}
	for _, s := range sortedKeys(errs) {
		if rt.Pattern == wire.PathToken && oauthErrorStatus[s] {
			responses[strconv.Itoa(s)] = b.oauthErrorResponse(s)
			continue
		}
		responses[strconv.Itoa(s)] = b.errorResponse(s)
	}
	op["responses"] = responses
	return op
}

func (b *docBuilder) success(rt Route, status int) map[string]any {
	desc := http.StatusText(status) + "."
	switch status {
	case http.StatusCreated:
		desc = "Created."
	case http.StatusAccepted:
		desc = "Accepted: the machine carries the operation out next; the body is its state now."
	case http.StatusNoContent:
		desc = "Done; no body."
	}
	if rt.Status != 0 && status != rt.Status {
		desc = "Already as asked, or changed in place (the same body)."
	}
	switch body := rt.Response.(type) {
	case nil:
		return map[string]any{"description": desc}
	case WebSocket:
		return map[string]any{"description": "Switching Protocols: the connection is now the WebSocket. " + body.Description}
	case Raw:
		return map[string]any{"description": desc + " " + body.Description, "content": rawContent(body)}
	case NoBody, Form:
		b.fail("%s %s: Response cannot be %T", rt.Method, rt.Pattern, body)
		return map[string]any{"description": desc}
	default:
		return map[string]any{"description": desc, "content": map[string]any{
			"application/json": map[string]any{"schema": b.schema(reflect.TypeOf(body))}}}
	}
}

func rawContent(r Raw) map[string]any {
	c := map[string]any{}
	for _, ct := range r.ContentTypes {
		c[ct] = map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}
	}
	return c
}

func (b *docBuilder) queryParam(rt Route, q QueryParam) map[string]any {
	s := map[string]any{"type": q.Type}
	switch q.Type {
	case "string", "integer", "boolean":
	default:
		b.fail("%s %s: query parameter %s has type %q (string, integer or boolean)", rt.Method, rt.Pattern, q.Name, q.Type)
	}
	if len(q.Enum) > 0 {
		s["enum"] = stringsToAny(q.Enum)
	}
	if q.Min != 0 {
		s["minimum"] = q.Min
	}
	if q.Max != 0 {
		s["maximum"] = q.Max
	}
	if q.Format != "" {
		s["format"] = q.Format
	}
	if q.Default != nil {
		s["default"] = q.Default
	}
	if q.Description == "" {
		b.fail("%s %s: query parameter %s has no description", rt.Method, rt.Pattern, q.Name)
	}
	return map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": s}
}

// errorStatus describes the error responses: the name of the shared
// response component and what the status means here.
var errorStatus = map[int]struct{ name, desc string }{
	400: {"BadRequest", "The request is invalid: malformed JSON (code InvalidJSON), a field or parameter that fails validation (ValidationFailed; target names it) or another malformed request (BadRequest)."},
	401: {"Unauthorized", "No valid credentials: a missing, expired or revoked token (Unauthenticated), or on the agent protocol a client certificate that is not the machine's current one (InvalidClientCertificate)."},
	403: {"Forbidden", "The caller may not perform this operation's x-corral-action at its scope (AuthorizationFailed), the token is restricted to onboarding, or the machine identity expired (MachineExpired)."},
	404: {"NotFound", "The resource, or one it lives in, does not exist (NotFound)."},
	409: {"Conflict", "The request conflicts with the resource's state: it exists already, was changed concurrently, or still has children (Conflict)."},
	413: {"PayloadTooLarge", "The body is larger than the server accepts (RequestEntityTooLarge)."},
	415: {"UnsupportedMediaType", "The body is not of the media type the operation takes (UnsupportedMediaType)."},
	426: {"UpgradeRequired", "The operation needs HTTP/2 (HTTP2Required); the agent channel then falls back to the WebSocket stream."},
	429: {"TooManyRequests", "Too many requests; retry after the time the message (or Retry-After) names."},
	500: {"InternalError", "The server failed (InternalError); its log has the detail under the X-Correlation-ID of the response."},
	503: {"ServiceUnavailable", "The server cannot serve this now (ServiceUnavailable): busy, or its store (database) cannot be reached; retry after Retry-After. A change not acknowledged may or may not have been made."},
	507: {"InsufficientStorage", "The server has no room to store what was asked (InsufficientStorage)."},
}

func (b *docBuilder) errorResponse(status int) map[string]any {
	es, ok := errorStatus[status]
	if !ok {
		b.fail("no description of error status %d: add it to errorStatus in openapi.go", status)
		return map[string]any{"description": http.StatusText(status)}
	}
	if _, done := b.responses[es.name]; !done {
		b.responses[es.name] = map[string]any{
			"description": es.desc,
			"headers": map[string]any{"X-Correlation-ID": map[string]any{
				"description": "Identifies the request in the server log and the activity log.",
				"schema":      map[string]any{"type": "string"}}},
			"content": map[string]any{"application/json": map[string]any{"schema": b.schema(reflect.TypeOf(wire.ErrorResponse{}))}},
		}
	}
	return map[string]any{"$ref": "#/components/responses/" + es.name}
}

// oauthErrorStatus are the statuses at which the token endpoint answers in
// the RFC 6749 §5.2 shape (a malformed form body is still an ErrorResponse).
var oauthErrorStatus = map[int]bool{400: true, 401: true, 429: true}

func (b *docBuilder) oauthErrorResponse(status int) map[string]any {
	oauth := b.schema(reflect.TypeOf(wire.OAuthError{}))
	schema := oauth
	desc := "Client authentication or the user's password failed (RFC 6749 §5.2: invalid_client, invalid_grant), or the secret expired."
	switch status {
	case http.StatusBadRequest:
		schema = map[string]any{"oneOf": []any{oauth, b.schema(reflect.TypeOf(wire.ErrorResponse{}))}}
		desc = "The grant was refused (RFC 6749 §5.2: invalid_request, unsupported_grant_type, invalid_grant, " +
			"authorization_pending, expired_token), or the form body is malformed (an ErrorResponse)."
	case http.StatusTooManyRequests:
		desc = "Too many failed sign-ins for this account from this address (temporarily_locked); the description says until when."
	}
	return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
}

// tagOf groups an operation: the agent protocol, the OAuth2 endpoints, and
// the API by resource provider (the action's Corral.X prefix).
func tagOf(rt Route) string {
	switch {
	case strings.HasPrefix(rt.Pattern, "/agent/"):
		return "Agent protocol"
	case strings.HasPrefix(rt.Pattern, "/oauth2/"):
		return "OAuth2"
	case rt.Auth == AuthPublic:
		return "Server"
	}
	provider, _, _ := strings.Cut(rt.Action, "/")
	return strings.TrimPrefix(provider, "Corral.")
}

var tagDescriptions = map[string]string{
	"Agent protocol": "What corral-agent calls: onboarding (connect, with the onboarding principal's bearer token), then with the machine's client certificate the push channel, desired state, reports, certificate renewal, extension catalogs and packages.",
	"OAuth2":         "Token endpoint (client_credentials, password and device_code grants) and device authorization (RFC 8628).",
	"Server":         "The server itself: this document.",
	"Resources":      "Subscriptions and resource groups: the scopes everything else lives in.",
	"HybridCompute":  "Machines: inventory, tags, onboarding approvals, extensions and run commands.",
	"Authorization":  "Role definitions and role assignments (role-based access control).",
	"Identity":       "Users, service principals, API tokens and the calling principal.",
	"Insights":       "The activity log: every mutating call and every denied one.",
	"Extensions":     "Extension publishers, their packages and signed catalogs.",
}

func tagDescription(tag string) string {
	if d, ok := tagDescriptions[tag]; ok {
		return d
	}
	return "Operations of the Corral." + tag + " resource provider."
}

// pathParamDocs describe a path parameter by the collection it names an
// item of; others get "Name of the <collection, singular>".
var pathParamDocs = map[string]string{
	"subscriptions":     "Name of the subscription.",
	"resourceGroups":    "Name of the resource group.",
	"machines":          "Name of the machine.",
	"extensions":        "Name of the extension on the machine.",
	"runCommands":       "Name of the run command.",
	"publishers":        "Name of the extension publisher.",
	"users":             "Name of the user.",
	"servicePrincipals": "Client id (a UUID) of the service principal.",
	"roleDefinitions":   "Id of the role: a built-in role's (e.g. Owner) or a custom role's.",
	"roleAssignments":   "Id of the role assignment.",
	"tokens":            "Id of the API token.",
	"deviceCodes":       "The user code of the pending device-code onboarding.",
	"catalogs":          "Name of the publisher whose signed catalog to fetch.",
	"packages":          "Digest of the package archive: sha256: and 64 lowercase hex digits.",
}

func pathParamDoc(pattern, param string) string {
	segs := strings.Split(pattern, "/")
	coll := ""
	for i, s := range segs {
		if s == "{"+param+"}" && i > 0 {
			coll = segs[i-1]
		}
	}
	if d, ok := pathParamDocs[coll]; ok {
		return d
	}
	words := strings.TrimSuffix(splitCamel(coll), "s")
	if param == "id" {
		return "Id of the " + words + "."
	}
	return "Name of the " + words + "."
}

func splitCamel(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
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

func (a *API) getOpenAPI(w http.ResponseWriter, _ *http.Request, _ *Caller) error {
	if a.openapiErr != nil {
		return a.openapiErr
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(a.openapi)
	return err
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Schemas of Go types, following encoding/json.

var (
	timeType     = reflect.TypeOf(time.Time{})
	rawJSONType  = reflect.TypeOf(json.RawMessage(nil))
	durationType = reflect.TypeOf(wire.Duration(0))
	marshalerT   = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshalT = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
	wirePkg      = reflect.TypeOf(wire.Machine{}).PkgPath()
)

// durationSchema is the string form of wire.Duration (time.Duration's).
var durationSchema = map[string]any{
	"type":        "string",
	"description": "A duration as Go writes it: a sequence of numbers with units h, m, s, ms, us, ns, e.g. 30s, 1h30m0s.",
	"pattern":     `^-?(0|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+)$`,
	"examples":    []any{"30s", "10m0s", "1h30m0s"},
}

// typeSchemas describe the types that marshal themselves (or whose Go
// kind says too little), inline where used. A wire type that implements
// json.Marshaler or encoding.TextMarshaler needs a line here.
var typeSchemas = map[reflect.Type]map[string]any{
	timeType:    {"type": "string", "format": "date-time"},
	rawJSONType: {"description": "Any JSON value, passed through as is."},
}

// schema returns the schema of t where it is used: a $ref for a named
// struct (described once in components.schemas), inline otherwise.
func (b *docBuilder) schema(t reflect.Type) map[string]any {
	if s, ok := typeSchemas[t]; ok {
		out := make(map[string]any, len(s))
		for k, v := range s {
			out[k] = v
		}
		return out
	}
	switch {
	case t == durationType:
		return b.component(t, "Duration", func() map[string]any { return durationSchema })
	case isWireList(t):
		elem := t.Field(0).Type.Elem()
		name := b.componentName(elem) + "List"
		return b.component(t, name, func() map[string]any {
			return map[string]any{
				"type":        "object",
				"description": "A list of " + b.componentName(elem) + ", one page at a time.",
				"required":    []any{"value"},
				"properties": map[string]any{
					"value": map[string]any{"type": "array", "items": b.schema(elem)},
					"nextLink": map[string]any{"type": "string", "format": "uri-reference",
						"description": "The path and query of the next page (with its $skipToken); absent on the last page."},
				},
			}
		})
	case t.Kind() == reflect.Pointer:
		return b.schema(t.Elem())
	case t.Implements(marshalerT) || reflect.PointerTo(t).Implements(marshalerT) ||
		t.Implements(textMarshalT) || reflect.PointerTo(t).Implements(textMarshalT):
		b.fail("type %s marshals itself: describe its JSON form in typeSchemas (openapi.go)", t)
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Uint:
		return map[string]any{"type": "integer"}
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64", "minimum": 0}
	case reflect.Float32:
		return map[string]any{"type": "number", "format": "float"}
	case reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": b.schema(t.Elem())}
	case reflect.Map:
		switch t.Key().Kind() {
		case reflect.String, reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint32:
		default:
			b.fail("map %s: JSON object keys must be strings or integers", t)
		}
		return map[string]any{"type": "object", "additionalProperties": b.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if t.Name() == "" {
			return b.structSchema(t)
		}
		return b.component(t, b.componentName(t), func() map[string]any { return b.structSchema(t) })
	}
	b.fail("type %s has no JSON form", t)
	return map[string]any{}
}

func isWireList(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t.PkgPath() == wirePkg && strings.HasPrefix(t.Name(), "List[")
}

// component describes t once under name and returns a reference to it.
func (b *docBuilder) component(t reflect.Type, name string, build func() map[string]any) map[string]any {
	ref := map[string]any{"$ref": "#/components/schemas/" + name}
	if _, done := b.typeNames[t]; done {
		return ref
	}
	if other, taken := b.nameTypes[name]; taken && other != t {
		b.fail("component %s would describe both %s and %s", name, other, t)
		return ref
	}
	b.typeNames[t], b.nameTypes[name] = name, t
	b.schemas[name] = map[string]any{} // taken while built: recursive types refer to it
	s := build()
	if d, ok := typeDocs[t]; ok {
		s["description"] = d
	}
	b.schemas[name] = s
	return ref
}

// componentName is a type's name in components.schemas: its Go name with
// a capital, prefixed by its package when another package's type of the
// same name came first.
func (b *docBuilder) componentName(t reflect.Type) string {
	if n, ok := b.typeNames[t]; ok {
		return n
	}
	if isWireList(t) {
		return b.componentName(t.Field(0).Type.Elem()) + "List"
	}
	name := t.Name()
	if name == "" || strings.ContainsAny(name, "[]") {
		b.fail("type %s needs a name to be a component", t)
		return "Invalid"
	}
	name = strings.ToUpper(name[:1]) + name[1:]
	if other, taken := b.nameTypes[name]; taken && other != t {
		pkg := t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]
		name = strings.ToUpper(pkg[:1]) + pkg[1:] + name
	}
	return name
}

// structSchema describes a struct's JSON object: encoding/json's field
// names, embedded structs flattened, a field required unless omitempty or
// omitzero, and nullable when Go would write null for it.
func (b *docBuilder) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	depth := map[string]int{}
	var required []string
	var walk func(t reflect.Type, level int)
	walk = func(t reflect.Type, level int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if tag == "-" {
				continue
			}
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					walk(et, level+1)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if d, seen := depth[name]; seen {
				if d == level {
					b.fail("%s: two fields are named %q in JSON", t, name)
				}
				if d <= level {
					continue
				}
			}
			omit := false
			for _, o := range strings.Split(opts, ",") {
				switch o {
				case "omitempty", "omitzero":
					omit = true
				case "string":
					b.fail("%s.%s: the json \"string\" option is not described", t, f.Name)
				}
			}
			s := b.schema(ft)
			if !omit && nullable(ft) {
				s = withNull(s)
			}
			if fd, ok := fieldDocs[fieldKey{t, name}]; ok {
				s = fd.apply(s)
			}
			props[name] = s
			depth[name] = level
			if !omit && !slices.Contains(required, name) {
				required = append(required, name)
			}
		}
	}
	walk(t, 0)
	out := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		sort.Strings(required)
		out["required"] = stringsToAny(required)
	}
	return out
}

// nullable reports whether encoding/json writes null for a zero t: nil
// pointers, slices, maps and interfaces (a nil []byte is treated as the
// empty string it stands for).
func nullable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Interface:
		return true
	case reflect.Slice:
		return t.Elem().Kind() != reflect.Uint8 && t != rawJSONType
	}
	return false
}

func withNull(s map[string]any) map[string]any {
	if _, ok := s["$ref"]; ok {
		return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
	}
	if typ, ok := s["type"].(string); ok {
		out := map[string]any{}
		for k, v := range s {
			out[k] = v
		}
		out["type"] = []any{typ, "null"}
		return out
	}
	return s
}

// fieldKey names a field of a struct by its JSON name.
type fieldKey struct {
	t    reflect.Type
	name string
}

// fieldDoc adds what reflection cannot see to a field's schema.
type fieldDoc struct {
	desc    string
	enum    []string
	pattern string
	format  string
}

func (d fieldDoc) apply(s map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range s {
		out[k] = v
	}
	if d.desc != "" {
		out["description"] = d.desc
	}
	if len(d.enum) > 0 {
		out["enum"] = stringsToAny(d.enum)
	}
	if d.pattern != "" {
		out["pattern"] = d.pattern
	}
	if d.format != "" {
		out["format"] = d.format
	}
	return out
}

func field(v any, name string) fieldKey { return fieldKey{reflect.TypeOf(v), name} }

const (
	goDurationDoc = "A duration as Go writes it, e.g. 720h or 90m."
	digestPattern = "^sha256:[0-9a-f]{64}$"
)

var (
	machineStatuses = []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired}
	extStates       = []string{wire.ExtCreating, wire.ExtUpdating, wire.ExtDeleting, wire.ExtSucceeded, wire.ExtFailed}
	runStates       = []string{wire.RunPending, wire.RunRunning, wire.RunSucceeded, wire.RunFailed, wire.RunTimedOut}
	principalTypes  = []string{wire.PrincipalUser, wire.PrincipalServicePrincipal, wire.PrincipalMachine}
)

// fieldDocs are the enums, patterns and notes of wire fields whose Go type
// says less than the contract.
var fieldDocs = map[fieldKey]fieldDoc{
	field(wire.Machine{}, "status"):                       {enum: machineStatuses},
	field(wire.Machine{}, "id"):                           {desc: "Resource id: /subscriptions/{sub}/resourceGroups/{rg}/machines/{name}."},
	field(wire.Machine{}, "machineId"):                    {desc: "Stable id (UUID) of this onboarding.", format: "uuid"},
	field(wire.Machine{}, "agentSupported"):               {desc: "False once the agent version is more than a year old."},
	field(wire.MachineProperties{}, "environment"):        {enum: wire.Environments},
	field(wire.MachineUpdate{}, "tags"):                   {desc: "The machine's tags after the update (replaces them all)."},
	field(wire.ServicePrincipal{}, "clientId"):            {format: "uuid"},
	field(wire.ServicePrincipalCreate{}, "expiresIn"):     {desc: goDurationDoc + " How long the secret is valid; one year when empty."},
	field(wire.ServicePrincipalCreated{}, "clientSecret"): {desc: "The secret, shown this once."},
	field(wire.APITokenCreate{}, "expiresIn"):             {desc: goDurationDoc + " How long the token is valid; 30 days when empty."},
	field(wire.APITokenCreated{}, "token"):                {desc: "The token, shown this once."},
	field(wire.RoleAssignment{}, "principalType"):         {enum: []string{wire.PrincipalUser, wire.PrincipalServicePrincipal}},
	field(wire.RoleAssignmentCreate{}, "principal"):       {desc: "A principal id, a user name or a service principal's client id."},
	field(wire.RoleAssignmentCreate{}, "role"):            {desc: "A role id or a role name."},
	field(wire.RoleAssignmentCreate{}, "scope"):           {desc: "Where the role applies, and below: / or a resource id."},
	field(wire.ActivityEntry{}, "result"):                 {enum: []string{wire.ResultSucceeded, wire.ResultFailed, wire.ResultDenied}},
	field(wire.Me{}, "type"):                              {enum: principalTypes},
	field(wire.TokenResponse{}, "token_type"):             {enum: []string{"Bearer"}},
	field(wire.TokenResponse{}, "expires_in"):             {desc: "Seconds until the access token expires."},
	field(wire.DeviceCodeResponse{}, "expires_in"):        {desc: "Seconds until the device code expires."},
	field(wire.DeviceCodeResponse{}, "interval"):          {desc: "Seconds to wait between polls of the token endpoint."},
	field(wire.ErrorBody{}, "code"):                       {desc: "What went wrong, for scripts to branch on: BadRequest, InvalidJSON, ValidationFailed, Unauthenticated, AuthorizationFailed, NotFound, Conflict, RequestEntityTooLarge, UnsupportedMediaType, InternalError, or a code of the operation."},
	field(wire.ErrorBody{}, "message"):                    {desc: "What went wrong, for people; never holds secrets."},
	field(wire.ErrorBody{}, "target"):                     {desc: "The field or parameter at fault, if one is."},
	field(wire.ConnectRequest{}, "csr"):                   {desc: "PEM CERTIFICATE REQUEST of the key pair the agent made; the private key never leaves the machine."},
	field(wire.ConnectRequest{}, "sealingKey"):            {desc: "The machine's X25519 public key (32 bytes) that protected settings are sealed to."},
	field(wire.ConnectResponse{}, "certificate"):          {desc: "PEM client certificate, signed by the control plane's CA."},
	field(wire.ConnectResponse{}, "caCertificate"):        {desc: "PEM certificate of the control plane's CA."},
	field(wire.RenewRequest{}, "csr"):                     {desc: "PEM CERTIFICATE REQUEST of a new key pair."},
	field(wire.RenewResponse{}, "certificate"):            {desc: "PEM client certificate for the new key pair."},
	field(wire.StreamMessage{}, "type"):                   {enum: []string{wire.MsgHello, wire.MsgHeartbeat, wire.MsgSync, wire.MsgPing, wire.MsgPong, wire.MsgWelcome, wire.MsgGoodbye}},
	field(wire.DesiredState{}, "features"):                {desc: "Each agent feature's slice of the desired state, keyed by the feature's name."},
	field(wire.Report{}, "kind"):                          {desc: "What Body holds: properties (MachineProperties), agentConfig (AgentConfig), applied (AppliedState), extension (ExtensionStatus), runCommand (RunCommandResult), feature (FeatureStatus), or a capability's kind."},
	field(wire.Report{}, "body"):                          {desc: "The JSON of the kind's type, base64."},
	field(wire.SignedCatalog{}, "catalog"):                {desc: "The exact JSON bytes of the Catalog the publisher signed, base64."},
	field(wire.SignedCatalog{}, "signature"):              {desc: "The publisher's ed25519 signature over catalog, base64."},
	field(wire.Publisher{}, "publicKey"):                  {desc: "The publisher's ed25519 public key (32 bytes), base64."},
	field(wire.PublisherCreate{}, "publicKey"):            {desc: "The publisher's ed25519 public key (32 bytes), base64."},
	field(wire.PublisherKey{}, "publicKey"):               {desc: "The publisher's ed25519 public key (32 bytes), base64."},
	field(wire.ExtensionPackage{}, "digest"):              {pattern: digestPattern},
	field(wire.ExtensionPackage{}, "listed"):              {desc: "Whether the publisher's current signed catalog lists this package."},
	field(wire.DesiredExtension{}, "digest"):              {pattern: digestPattern},
	field(wire.DesiredExtension{}, "protectedSettings"):   {desc: "The protected settings sealed to the machine's sealing key; only the agent can open them."},
	field(wire.MachineExtension{}, "state"):               {enum: extStates, desc: "Creating, Updating or Deleting while the agent works on the last request, then Succeeded or Failed with message."},
	field(wire.MachineExtension{}, "settings"):            {desc: "The extension's public settings: a JSON object."},
	field(wire.MachineExtensionSet{}, "version"):          {desc: "The version to install; empty means the highest version the publisher's signed catalog lists."},
	field(wire.MachineExtensionSet{}, "settings"):         {desc: "Public settings: a JSON object; replaces the previous one."},
	field(wire.MachineExtensionSet{}, "protectedSettings"): {desc: "Secret settings: a JSON object, sealed to the machine at once and never returned. " +
		"Omitted on an update, the sealed ones are kept; null or {} removes them."},
	field(wire.ExtensionStatus{}, "state"):      {enum: extStates},
	field(wire.ExtensionStatus{}, "operation"):  {enum: []string{"install", "update", "upgrade", "remove"}},
	field(wire.RunCommand{}, "state"):           {enum: runStates},
	field(wire.RunCommandResult{}, "state"):     {enum: runStates},
	field(wire.RunCommandCreate{}, "script"):    {desc: "A script body, run with /bin/sh. Exactly one of script and command is given."},
	field(wire.RunCommandCreate{}, "command"):   {desc: "One command line, run with /bin/sh -c. Exactly one of script and command is given."},
	field(wire.RunCommandCreate{}, "runAsUser"): {desc: "The user to run as; root when empty."},
	field(wire.RunCommandCreate{}, "timeout"):   {desc: "How long the run may take: 10m when empty, at most 2h."},
	field(tokenRequest{}, "grant_type"):         {enum: []string{wire.GrantClientCredentials, wire.GrantPassword, wire.GrantDeviceCode}},
	field(tokenRequest{}, "client_id"):          {desc: "client_credentials: the service principal's client id (or use HTTP Basic authentication)."},
	field(tokenRequest{}, "client_secret"):      {desc: "client_credentials: the service principal's secret."},
	field(tokenRequest{}, "username"):           {desc: "password: the user's name."},
	field(tokenRequest{}, "password"):           {desc: "password: the user's password."},
	field(tokenRequest{}, "device_code"):        {desc: "device_code grant: the device code from /oauth2/devicecode."},
	field(deviceCodeRequest{}, "machine_name"):  {desc: "The name the machine will have; the agent's host name when empty."},
}

// typeDocs describe the components.
var typeDocs = map[reflect.Type]string{
	reflect.TypeOf(wire.ErrorResponse{}):           "The body of every error response of the API.",
	reflect.TypeOf(wire.Machine{}):                 "A connected server: /subscriptions/{sub}/resourceGroups/{rg}/machines/{name}.",
	reflect.TypeOf(wire.MachineProperties{}):       "What the agent reports about its host.",
	reflect.TypeOf(wire.AgentConfig{}):             "The agent's local configuration as it reported it; the server can read it but never change it.",
	reflect.TypeOf(wire.ServicePrincipalCreated{}): "A new service principal with its secret, shown this once.",
	reflect.TypeOf(wire.APITokenCreated{}):         "A new API token with its value, shown this once.",
	reflect.TypeOf(wire.RoleAssignment{}):          "A role granted to a principal at a scope (and below).",
	reflect.TypeOf(wire.ActivityEntry{}):           "One entry of the activity log (append-only).",
	reflect.TypeOf(wire.SignedCatalog{}):           "A publisher's catalog (the JSON of Catalog) with the publisher's ed25519 signature over those exact bytes.",
	reflect.TypeOf(wire.MachineExtension{}):        "An extension on a machine: .../machines/{name}/extensions/{ext}.",
	reflect.TypeOf(wire.MachineExtensionSet{}):     "Install, reconfigure (update) or change the version of (upgrade) an extension.",
	reflect.TypeOf(wire.RunCommand{}):              "One run of a script or command on a machine, with its result.",
	reflect.TypeOf(wire.RunCommandCreate{}):        "A script or command to run on a machine.",
	reflect.TypeOf(wire.DesiredState{}):            "What the control plane wants on the machine; the agent reconciles toward it.",
	reflect.TypeOf(wire.ReportBatch{}):             "Agent reports, delivered in order; each is dropped from the agent's outbox once acknowledged.",
	reflect.TypeOf(wire.StreamMessage{}):           "One frame of the push channel: hello, heartbeat and pong from the agent; welcome, sync, ping and goodbye from the server.",
	reflect.TypeOf(tokenRequest{}):                 "The token request (RFC 6749 §4.3, §4.4; RFC 8628 §3.4): grant_type and that grant's fields.",
	reflect.TypeOf(deviceCodeRequest{}):            "The device authorization request (RFC 8628 §3.1): where the machine asks to be onboarded.",
}

// tokenRequest is the form POST /oauth2/token takes (postToken).
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	DeviceCode   string `json:"device_code,omitempty"`
}

// deviceCodeRequest is the form POST /oauth2/devicecode takes (postDeviceCode).
type deviceCodeRequest struct {
	SubscriptionID string `json:"subscription_id"`
	ResourceGroup  string `json:"resource_group"`
	MachineName    string `json:"machine_name,omitempty"`
}
