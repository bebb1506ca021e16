package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Instance A trusts instance B (a whole second mcpgate: its OIDC
// discovery, its JWKS, its access tokens from /auth/login) as an external
// JWT issuer. A token of B calls a tool on A as a user provisioned just in
// time; a token of a third instance C, which A does not trust, is refused
// and never passed on.
func TestExternalTokensFromAnotherMcpgate(t *testing.T) {
	b := newEnv(t)
	c := newEnv(t)
	file := filepath.Join(t.TempDir(), "issuers.json")
	issuers := map[string]any{"issuers": []map[string]any{{
		"name": "mcpgate-b", "issuer": b.base, "discovery": true,
		// B's tokens name B's MCP endpoint: A accepts that audience
		// because the operator says so here.
		"audience": b.base + "/mcp",
	}}}
	data, _ := json.Marshal(issuers)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a := newEnv(t, func(cfg *config.Config) { cfg.ExternalIssuersFile = file })

	const bob = "bob@example.com"
	login := b.directLogin(t, bob, b.pws[bob])
	if login.status != 200 {
		t.Fatalf("login at B: %d %s", login.status, login.body)
	}
	tokB, _ := login.json(t)["access_token"].(string)

	// The token of B is accepted by A: the tool runs as A's provisioned
	// user, not as A's own bob (no email is vouched for, so no link).
	cs, err := a.connect(bearer(tokB), "")
	if err != nil {
		t.Fatalf("A refused B's token: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("getAccountBalance with B's token: %v %+v", err, res)
	}
	email, _ := res.StructuredContent.(map[string]any)["email"].(string)
	if !strings.HasSuffix(email, "@"+identity.PlaceholderEmailDomain) {
		t.Errorf("the tool ran as %q, want a provisioned user with a placeholder email", email)
	}
	prov := a.lastAudit(identity.TypeUserProvisioned)
	if prov.Details["issuer"] != b.base || prov.Details["subject"] != b.ids[bob] {
		t.Errorf("user.provisioned details = %v, want issuer %s subject %s", prov.Details, b.base, b.ids[bob])
	}
	acc := a.lastAudit(authn.TypeExternalAccepted)
	if acc.UserID != prov.UserID || acc.Details["issuer"] != b.base {
		t.Errorf("auth.external_accepted = %+v, want user %s issuer %s", acc, prov.UserID, b.base)
	}

	// A second connection with the same token is the same user: one
	// provisioning, not one per request.
	cs2, err := a.connect(bearer(tokB), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs2.Close()
	res2, err := cs2.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil || res2.StructuredContent.(map[string]any)["email"] != email {
		t.Errorf("second call ran as %v (%v), want %s", res2.StructuredContent, err, email)
	}
	if n := countAudit(t, a, identity.TypeUserProvisioned); n != 1 {
		t.Errorf("%d user.provisioned events, want 1", n)
	}

	// C is not configured on A: its token is refused with the RFC 6750
	// challenge, and the audit names the reason.
	loginC := c.directLogin(t, bob, c.pws[bob])
	tokC, _ := loginC.json(t)["access_token"].(string)
	status, challenge := a.mcpStatus(t, tokC)
	if status != 401 || !strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("C's token on A: %d %q, want 401 invalid_token", status, challenge)
	}
	rej := a.lastAudit(audit.TypeAuthRejected)
	if rej.Reason != federation.ReasonUnknownIssuer || rej.Details["method"] == "" {
		t.Errorf("refusal of C's token audited as %q %v, want %s", rej.Reason, rej.Details, federation.ReasonUnknownIssuer)
	}

	// B's token with a damaged signature is refused.
	forged := tokB[:len(tokB)-4] + flip(tokB[len(tokB)-4:])
	status, _ = a.mcpStatus(t, forged)
	if status != 401 {
		t.Errorf("B's token with a damaged signature: %d, want 401", status)
	}
	if r := a.lastAudit(audit.TypeAuthRejected); !slices.Contains([]string{federation.ReasonBadSignature, federation.ReasonMalformed}, r.Reason) {
		t.Errorf("damaged signature audited as %q, want bad_signature", r.Reason)
	}
}

// flip changes every character of s to another base64url character.
func flip(s string) string {
	out := []byte(s)
	for i, ch := range out {
		if ch == 'A' {
			out[i] = 'B'
		} else {
			out[i] = 'A'
		}
	}
	return string(out)
}

func countAudit(t *testing.T, e *env, typ string) int {
	t.Helper()
	core := e.srv.Core()
	if err := core.Audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs, err := core.DB.ListAudit(context.Background(), store.AuditFilter{Type: typ, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}
