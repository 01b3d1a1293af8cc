package httpapi_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/server/httpapi"
)

// TestEveryRouteIsDescribed: every route of the table, those of
// capabilities added later included, describes its API: a success
// response (or Status 204 when it answers nothing), a request body for a
// POST, PUT or PATCH (or NoBody{} when it takes none), and the document
// built from them is complete: each operation has a described success,
// every reference resolves, every component is used.
func TestEveryRouteIsDescribed(t *testing.T) {
	api := httpapi.New(httpapi.Deps{})
	for _, rt := range api.Routes() {
		name := rt.Method + " " + rt.Pattern
		switch {
		case rt.Summary == "":
			t.Errorf("%s has no Summary", name)
		case rt.Response == nil && rt.Status != http.StatusNoContent:
			t.Errorf("%s lacks a described success response: set Response (a zero value of its body type) or Status 204 if it answers nothing", name)
		case rt.Response != nil && rt.Status == http.StatusNoContent:
			t.Errorf("%s answers 204 No Content, yet describes a Response body", name)
		}
		switch rt.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			if rt.Request == nil {
				t.Errorf("%s lacks a described request body: set Request (a zero value of its body type), or httpapi.NoBody{} if it takes none", name)
			}
		default:
			if _, none := rt.Request.(httpapi.NoBody); rt.Request != nil && !none {
				t.Errorf("%s is a %s, yet describes a request body", name, rt.Method)
			}
		}
	}
	b, err := api.OpenAPIJSON()
	if err != nil {
		t.Fatalf("the OpenAPI document cannot be built: %v", err)
	}
	var doc struct {
		Paths      map[string]map[string]operation `json:"paths"`
		Components map[string]map[string]any       `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, rt := range api.Routes() {
		op, ok := doc.Paths[rt.Pattern][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("the document lacks %s %s", rt.Method, rt.Pattern)
			continue
		}
		success := 0
		for status, resp := range op.Responses {
			if status[0] == '2' || status == "101" {
				success++
				if status != "204" && status != "101" && len(resp.Content) == 0 {
					t.Errorf("%s %s: success %s has no content", rt.Method, rt.Pattern, status)
				}
			}
		}
		if success == 0 {
			t.Errorf("%s %s: no success response", rt.Method, rt.Pattern)
		}
		if _, none := rt.Request.(httpapi.NoBody); (rt.Method == "POST" || rt.Method == "PUT" || rt.Method == "PATCH") && !none && op.RequestBody == nil {
			t.Errorf("%s %s: no requestBody", rt.Method, rt.Pattern)
		}
		if op.Action == "" || op.OperationID == "" || op.Security == nil {
			t.Errorf("%s %s: action %q, operationId %q, security %v", rt.Method, rt.Pattern, op.Action, op.OperationID, op.Security)
		}
	}
	// Every reference resolves and every component is referenced.
	refs := map[string]bool{}
	for _, m := range regexp.MustCompile(`"\$ref":"#/components/([^/"]+)/([^"]+)"`).FindAllStringSubmatch(compact(t, b), -1) {
		refs[m[1]+"/"+m[2]] = true
		if _, ok := doc.Components[m[1]][m[2]]; !ok {
			t.Errorf("$ref to %s/%s, which is not defined", m[1], m[2])
		}
	}
	for _, kind := range []string{"schemas", "responses"} {
		for name := range doc.Components[kind] {
			if !refs[kind+"/"+name] {
				t.Errorf("component %s/%s is never used", kind, name)
			}
		}
	}
}

type operation struct {
	OperationID string                `json:"operationId"`
	Action      string                `json:"x-corral-action"`
	Security    []map[string][]string `json:"security"`
	RequestBody *struct{}             `json:"requestBody"`
	Responses   map[string]struct {
		Content map[string]any `json:"content"`
	} `json:"responses"`
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(v)
	return string(c)
}
