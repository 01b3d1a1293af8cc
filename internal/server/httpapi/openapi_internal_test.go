package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/wire"
)

// selfMarshaler writes its own JSON: the generator cannot see its form.
type selfMarshaler struct{}

func (selfMarshaler) MarshalJSON() ([]byte, error) { return []byte(`"x"`), nil }

// Machine has the name of a wire type: the one met second gets a package prefix.
type Machine struct {
	Name string `json:"name"`
}

type embedded struct {
	Inner  string `json:"inner"`
	Shadow string `json:"shadow"`
}

// sample exercises each encoding/json rule the generator follows.
type sample struct {
	embedded
	Shadow   int                        `json:"shadow"`
	Name     string                     `json:"name"`
	Optional string                     `json:"optional,omitempty"`
	When     time.Time                  `json:"when"`
	Later    time.Time                  `json:"later,omitzero"`
	Took     wire.Duration              `json:"took"`
	Raw      json.RawMessage            `json:"raw,omitempty"`
	Bytes    []byte                     `json:"bytes"`
	List     []string                   `json:"list"`
	Tags     map[string]string          `json:"tags,omitempty"`
	Ptr      *wire.CloudMetadata        `json:"ptr"`
	Count    int64                      `json:"count"`
	Size     uint64                     `json:"size,omitempty"`
	Ratio    float64                    `json:"ratio,omitempty"`
	Features map[string]json.RawMessage `json:"features,omitempty"`
	Skipped  string                     `json:"-"`
	private  string
}

func route(method, pattern string, f func(*Route)) Route {
	rt := Route{Method: method, Pattern: pattern, Action: "Corral.Test/things/read", Auth: AuthBearer, Summary: "A test route."}
	if f != nil {
		f(&rt)
	}
	return rt
}

func TestOpenAPIRefusesUndescribedRoutes(t *testing.T) {
	for _, tc := range []struct {
		name string
		rt   Route
		want string
	}{
		{"no response", route("GET", "/api/v1/things", nil), "Response is not described"},
		{"no request", route("POST", "/api/v1/things", func(r *Route) { r.Response = wire.User{} }), "Request is not described"},
		{"body on a GET", route("GET", "/api/v1/things", func(r *Route) { r.Request, r.Response = wire.User{}, wire.User{} }), "takes no body"},
		{"self-marshaling type", route("GET", "/api/v1/things", func(r *Route) { r.Response = selfMarshaler{} }), "marshals itself"},
		{"unknown error status", route("GET", "/api/v1/things", func(r *Route) { r.Response, r.Errors = wire.User{}, []int{418} }), "no description of error status 418"},
		{"not an error status", route("GET", "/api/v1/things", func(r *Route) { r.Response, r.Errors = wire.User{}, []int{200} }), "not an error status"},
		{"bad query type", route("GET", "/api/v1/things", func(r *Route) {
			r.Response, r.Query = wire.User{}, []QueryParam{{Name: "n", Type: "float", Description: "n"}}
		}), `has type "float"`},
		{"query without description", route("GET", "/api/v1/things", func(r *Route) {
			r.Response, r.Query = wire.User{}, []QueryParam{{Name: "n", Type: "string"}}
		}), "has no description"},
		{"channel", route("GET", "/api/v1/things", func(r *Route) { r.Response = make(chan int) }), "has no JSON form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openAPIDocument([]Route{tc.rt})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// Two routes at the same method and pattern.
	ok := route("GET", "/api/v1/things", func(r *Route) { r.Response = wire.User{} })
	if _, err := openAPIDocument([]Route{ok, ok}); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Errorf("duplicate route: %v", err)
	}
}

func TestOpenAPISchemas(t *testing.T) {
	doc, err := openAPIDocument([]Route{
		route("PUT", "/api/v1/things/{name}", func(r *Route) {
			r.Request, r.Response, r.Status, r.AlsoStatus, r.Errors = sample{}, wire.List[Machine]{}, http.StatusCreated, []int{http.StatusOK}, []int{http.StatusConflict}
		}),
		route("DELETE", "/api/v1/things/{name}", func(r *Route) { r.Status = http.StatusNoContent }),
		route("GET", "/api/v1/machines/{name}", func(r *Route) { r.Response = wire.Machine{} }),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	b, _ := json.Marshal(doc)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	schemas := got["components"].(map[string]any)["schemas"].(map[string]any)
	str := map[string]any{"type": "string"}
	want := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"inner":    str,
			"shadow":   map[string]any{"type": "integer"}, // the outer field shadows the embedded one, as in encoding/json
			"name":     str,
			"optional": str,
			"when":     map[string]any{"type": "string", "format": "date-time"},
			"later":    map[string]any{"type": "string", "format": "date-time"},
			"took":     map[string]any{"$ref": "#/components/schemas/Duration"},
			"raw":      map[string]any{"description": "Any JSON value, passed through as is."},
			"bytes":    map[string]any{"type": "string", "format": "byte", "contentEncoding": "base64"},
			"list":     map[string]any{"type": []any{"array", "null"}, "items": str},
			"tags":     map[string]any{"type": "object", "additionalProperties": str},
			"ptr":      map[string]any{"anyOf": []any{map[string]any{"$ref": "#/components/schemas/CloudMetadata"}, map[string]any{"type": "null"}}},
			"count":    map[string]any{"type": "integer", "format": "int64"},
			"size":     map[string]any{"type": "integer", "format": "int64", "minimum": float64(0)},
			"ratio":    map[string]any{"type": "number", "format": "double"},
			"features": map[string]any{"type": "object", "additionalProperties": map[string]any{"description": "Any JSON value, passed through as is."}},
		},
		"required": []any{"bytes", "count", "inner", "list", "name", "ptr", "shadow", "took", "when"},
	}
	if d := cmp.Diff(want, schemas["Sample"]); d != "" {
		t.Errorf("schema of sample (-want +got):\n%s", d)
	}
	list := schemas["MachineList"].(map[string]any)
	if d := cmp.Diff([]any{"value"}, list["required"]); d != "" {
		t.Errorf("list envelope required: %s", d)
	}
	if ref := list["properties"].(map[string]any)["value"].(map[string]any)["items"].(map[string]any)["$ref"]; ref != "#/components/schemas/Machine" {
		t.Errorf("list of the first Machine: %v", ref)
	}
	if _, ok := schemas["WireMachine"]; !ok {
		t.Errorf("wire.Machine, met after this package's Machine, is not WireMachine: %v", keys(schemas))
	}
	if _, ok := schemas["Duration"]; !ok {
		t.Error("no Duration component")
	}
	// No component that no operation uses.
	for _, unused := range []string{"User", "ActivityEntry", "StreamMessage"} {
		if _, ok := schemas[unused]; ok {
			t.Errorf("unused component %s", unused)
		}
	}

	ops := got["paths"].(map[string]any)["/api/v1/things/{name}"].(map[string]any)
	put := ops["put"].(map[string]any)
	if d := cmp.Diff([]string{"200", "201", "400", "401", "403", "404", "409", "413", "415", "500"}, keys(put["responses"].(map[string]any))); d != "" {
		t.Errorf("put responses (-want +got):\n%s", d)
	}
	del := ops["delete"].(map[string]any)["responses"].(map[string]any)
	if d := cmp.Diff([]string{"204", "401", "403", "404", "500"}, keys(del)); d != "" {
		t.Errorf("delete responses (-want +got):\n%s", d)
	}
	if _, ok := del["204"].(map[string]any)["content"]; ok {
		t.Error("a 204 has content")
	}
	if d := cmp.Diff([]any{map[string]any{"bearer": []any{}}, map[string]any{"oauth2": []any{}}}, put["security"]); d != "" {
		t.Errorf("security: %s", d)
	}
	if put["x-corral-action"] != "Corral.Test/things/read" || put["tags"].([]any)[0] != "Test" {
		t.Errorf("action %v, tags %v", put["x-corral-action"], put["tags"])
	}
}

func keys(m map[string]any) []string { return sortedKeys(m) }
