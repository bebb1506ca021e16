package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/web"
)

// TestIdentitySources: the pages name every configured source by the
// issuer its users are linked under, with the name people know it by.
func TestIdentitySources(t *testing.T) {
	issuers := filepath.Join(t.TempDir(), "issuers.json")
	if err := os.WriteFile(issuers, []byte(`{"issuers":[
	  {"issuer":"https://idp.example.com","jwks_uri":"https://idp.example.com/jwks","audiences":["https://mcp.example.com/mcp"]},
	  {"name":"Corp","issuer":"https://corp.example.com","jwks_uri":"https://corp.example.com/jwks","audiences":["https://mcp.example.com/mcp"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	cfg.CustomLoginURL, cfg.CustomLoginName = "https://App.example.com/login", "Example app"
	cfg.ExternalIssuersFile = issuers
	got, err := identitySources(cfg, []config.UpstreamProvider{{Name: "b", DisplayName: "Instance B", Issuer: "http://127.0.0.1:18081"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []web.IdentitySource{
		{Issuer: "http://127.0.0.1:18081", Label: "Instance B", Kind: web.SourceUpstream},
		{Issuer: "custom:https://app.example.com", Label: "Example app", Kind: web.SourceCustom},
		{Issuer: "https://idp.example.com", Label: "https://idp.example.com", Kind: web.SourceExternal},
		{Issuer: "https://corp.example.com", Label: "Corp", Kind: web.SourceExternal},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("identitySources (-want +got):\n%s", d)
	}
}
