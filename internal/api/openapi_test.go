package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type openAPIDocument struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		OperationID string                     `json:"operationId"`
		Responses   map[string]json.RawMessage `json:"responses"`
		RequestBody *struct {
			Content map[string]json.RawMessage `json:"content"`
		} `json:"requestBody"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

// openapi.json describes exactly the routes Routes mounts, with exactly the
// statuses the route table lists. (That every listed status is really
// answered, and no other, is checked while the other tests run: see
// newStack's observer and TestMain.)
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPIDocument
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	documented := map[string][]int{}
	ops := map[string]bool{}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			key := strings.ToUpper(method) + " " + path
			var codes []int
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s: response %q is not a status code", key, code)
				}
				codes = append(codes, n)
			}
			slices.Sort(codes)
			documented[key] = codes
			if op.OperationID == "" || ops[op.OperationID] {
				t.Errorf("%s: missing or duplicate operationId %q", key, op.OperationID)
			}
			ops[op.OperationID] = true
			if op.RequestBody != nil {
				if _, ok := op.RequestBody.Content["application/json"]; !ok {
					t.Errorf("%s: request body is not application/json", key)
				}
			}
		}
	}
	table := map[string][]int{}
	for _, rt := range routes {
		table[rt.Method+" "+rt.Path] = rt.Statuses
	}
	if diff := cmp.Diff(table, documented); diff != "" {
		t.Errorf("route table vs openapi.json (-routes +openapi):\n%s", diff)
	}
	// Every $ref resolves.
	for _, ref := range refs(openAPIDoc) {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if _, ok := doc.Components.Schemas[name]; !ok || name == ref {
			t.Errorf("unresolved $ref %q", ref)
		}
	}
}

// The mux serves exactly the route table (plus the /api/ catch-all), and
// serves the document.
func TestRoutesMounted(t *testing.T) {
	s := newStack(t)
	mux := http.NewServeMux()
	s.api.Routes(mux)
	for _, rt := range routes {
		path := strings.ReplaceAll(rt.Path, "{id}", "x")
		req, _ := http.NewRequest(rt.Method, path, nil)
		if _, pattern := mux.Handler(req); pattern != rt.Method+" "+rt.Path {
			t.Errorf("%s %s is served by %q", rt.Method, path, pattern)
		}
	}
	r := s.keyClient("").do("GET", "/api/openapi.json", nil)
	if r.status != http.StatusOK || string(r.body) != string(openAPIDoc) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /api/openapi.json: %d %q", r.status, r.header.Get("Content-Type"))
	}
}

func refs(doc []byte) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "$ref" {
					out = append(out, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var v any
	_ = json.Unmarshal(doc, &v)
	walk(v)
	return out
}
