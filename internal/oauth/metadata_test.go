package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestServerMetadataDocument(t *testing.T) {
	md := NewServerMetadata("https://auth.example.com", []string{"payments:read", "payments:write", "openid", "offline_access"}, nil)
	rec := httptest.NewRecorder()
	MetadataHandler(md).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	for k, want := range map[string]string{
		"Content-Type":                "application/json",
		"Access-Control-Allow-Origin": "*",
		"Cache-Control":               "public, max-age=300",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	list := func(s ...string) []any {
		out := make([]any, len(s))
		for i, v := range s {
			out[i] = v
		}
		return out
	}
	want := map[string]any{
		"issuer":                                         "https://auth.example.com",
		"authorization_endpoint":                         "https://auth.example.com/authorize",
		"token_endpoint":                                 "https://auth.example.com/token",
		"registration_endpoint":                          "https://auth.example.com/register",
		"revocation_endpoint":                            "https://auth.example.com/revoke",
		"introspection_endpoint":                         "https://auth.example.com/introspect",
		"jwks_uri":                                       "https://auth.example.com/jwks",
		"userinfo_endpoint":                              "https://auth.example.com/userinfo",
		"scopes_supported":                               list("payments:read", "payments:write", "openid", "offline_access"),
		"response_types_supported":                       list("code"),
		"response_modes_supported":                       list("query"),
		"grant_types_supported":                          list("authorization_code", "refresh_token", "client_credentials"),
		"token_endpoint_auth_methods_supported":          list("none", "client_secret_basic", "client_secret_post"),
		"revocation_endpoint_auth_methods_supported":     list("none", "client_secret_basic", "client_secret_post"),
		"introspection_endpoint_auth_methods_supported":  list("client_secret_basic", "client_secret_post"),
		"code_challenge_methods_supported":               list("S256"),
		"client_id_metadata_document_supported":          true,
		"authorization_response_iss_parameter_supported": true,
		"subject_types_supported":                        list("public"),
		"id_token_signing_alg_values_supported":          list("ES256"),
		"claims_supported":                               list("iss", "sub", "aud", "exp", "iat", "nonce", "name", "email"),
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"claims_parameter_supported":                     false,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("metadata document (-want +got):\n%s", d)
	}

	// The issuer is the configured one byte for byte; a trailing slash in
	// the configuration does not double the endpoints' slashes.
	md = NewServerMetadata("https://auth.example.com/", nil, []string{"EdDSA", "RS256"})
	if md.Issuer != "https://auth.example.com/" || md.TokenEndpoint != "https://auth.example.com/token" {
		t.Errorf("issuer %q, token endpoint %q", md.Issuer, md.TokenEndpoint)
	}
	if d := cmp.Diff([]string{"EdDSA", "RS256"}, md.IDTokenSigningAlgValuesSupported); d != "" {
		t.Errorf("signing algs (-want +got):\n%s", d)
	}
}

func TestMetadataHandlerMethods(t *testing.T) {
	h := MetadataHandler(NewServerMetadata("https://auth.example.com", nil, nil))
	tests := []struct {
		method string
		status int
		body   bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodOptions, http.StatusNoContent, false},
		{http.MethodPost, http.StatusMethodNotAllowed, true},
		{http.MethodDelete, http.StatusMethodNotAllowed, true},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tc.method, "/.well-known/openid-configuration", nil)
		req.Header.Set("Origin", "https://inspector.example")
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || (rec.Body.Len() > 0) != tc.body {
			t.Errorf("%s: status %d, body %d bytes; want %d, body %v", tc.method, rec.Code, rec.Body.Len(), tc.status, tc.body)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", tc.method)
		}
	}
}

func TestMetadataPaths(t *testing.T) {
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://auth.example.com", []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}},
		{"https://auth.example.com/", []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}},
		{"https://example.com/tenant1", []string{
			"/.well-known/oauth-authorization-server/tenant1",
			"/tenant1/.well-known/openid-configuration",
			"/.well-known/openid-configuration/tenant1",
		}},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, MetadataPaths(tc.issuer)); d != "" {
			t.Errorf("MetadataPaths(%q) (-want +got):\n%s", tc.issuer, d)
		}
	}
}
