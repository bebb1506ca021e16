package tokens

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestJWKSHandler: public keys only, cacheable for less than the publish
// lead, readable from any origin, with conditional requests.
func TestJWKSHandler(t *testing.T) {
	clk := &clock{now: t0}
	i := newIssuer(t, sqliteStore(t), clk)
	clk.Add(DefaultRotateEvery)
	if err := i.Sync(t.Context()); err != nil { // two keys: current and next
		t.Fatal(err)
	}
	srv := httptest.NewServer(i.JWKSHandler())
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	if JWKSMaxAge >= DefaultPublishLead {
		t.Errorf("JWKS max-age %v is not below the publish lead %v", JWKSMaxAge, DefaultPublishLead)
	}
	if o := resp.Header.Get("Access-Control-Allow-Origin"); o != "*" {
		t.Errorf("Access-Control-Allow-Origin %q", o)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys published, want 2", len(doc.Keys))
	}
	for _, k := range doc.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("published key %v has private member %q", k["kid"], private)
			}
		}
		if k["use"] != "sig" || k["alg"] != "ES256" || k["kty"] != "EC" || k["crv"] != "P-256" {
			t.Errorf("published key %v", k)
		}
		raw, _ := json.Marshal(k)
		pk, err := verify.ParseJWK(raw)
		if err != nil {
			t.Fatal(err)
		}
		if tp, _ := thumbprint(pk.Key); tp != k["kid"] {
			t.Errorf("kid %v is not the RFC 7638 thumbprint %s", k["kid"], tp)
		}
	}

	etag := resp.Header.Get("ETag")
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("If-None-Match", etag)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %v %v", resp.StatusCode, err)
	}
	for method, want := range map[string]int{"HEAD": 200, "OPTIONS": 204, "POST": 405, "DELETE": 405} {
		req, _ := http.NewRequest(method, srv.URL, strings.NewReader(""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", method, resp.StatusCode, want)
		}
	}
}
