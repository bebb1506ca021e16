package oauth_test

// The go-sdk's own OAuth client (auth.AuthorizationCodeHandler plugged
// into mcp.StreamableClientTransport) completes the whole flow against the
// real stack, once per way a client becomes known: dynamic registration,
// a Client ID Metadata Document, and an operator's pre-registered client.
// discovery → registration → login + consent → token → tool call as the
// right user → refresh → revoke → refused.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

const callbackURL = "http://127.0.0.1:4711/callback"

// captured is what the handler's token source started from.
type captured struct {
	mu    sync.Mutex
	cfg   *oauth2.Config
	token *oauth2.Token
}

func (c *captured) get() (*oauth2.Config, *oauth2.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg, c.token
}

// sdkFlow connects the go-sdk client through cfg (registration set by the
// caller), calls a tool, refreshes, revokes and checks the refusal.
func sdkFlow(t *testing.T, s *stack, cfg *auth.AuthorizationCodeHandlerConfig, wantKind string, basic []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := s.browser()
	cap := &captured{}
	cfg.RedirectURL = callbackURL
	cfg.AuthorizationCodeFetcher = b.fetcher("alice@example.com")
	cfg.RequestRefreshToken = true
	cfg.NewTokenSource = func(ctx context.Context, c *oauth2.Config, tok *oauth2.Token) (oauth2.TokenSource, error) {
		cap.mu.Lock()
		cap.cfg, cap.token = c, tok
		cap.mu.Unlock()
		return c.TokenSource(ctx, tok), nil
	}
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	must(t, err)
	client := mcp.NewClient(&mcp.Implementation{Name: "flow-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: s.mcpURL, OAuthHandler: h, MaxRetries: -1, DisableStandaloneSSE: true,
	}, nil)
	must(t, err)
	defer cs.Close()

	// A tool call as alice.
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("CallTool: %v", err)
	}
	if res.IsError {
		t.Fatalf("tool error: %+v", res.Content)
	}
	raw, _ := json.Marshal(res.StructuredContent)
	var bal struct {
		Email string `json:"email"`
	}
	_ = json.Unmarshal(raw, &bal)
	if bal.Email != "alice@example.com" {
		t.Fatalf("tool ran as %q, want alice@example.com (result %s)", bal.Email, raw)
	}

	oc, tok := cap.get()
	if tok == nil || tok.RefreshToken == "" {
		t.Fatalf("no refresh token after the code exchange (token %+v)", tok)
	}
	if !strings.HasPrefix(tok.RefreshToken, "mcpgr_") {
		t.Errorf("refresh token %q lacks the mcpgr_ prefix", tok.RefreshToken[:8])
	}
	issued := s.rec.mustHave(t, audit.TypeOAuthTokenIssued, "")
	clientID, _ := issued.Details["client_id"].(string)
	if issued.UserID != s.alice.ID || clientID != oc.ClientID {
		t.Errorf("token.issued for user %s client %s; want alice and %s", issued.UserID, clientID, oc.ClientID)
	}
	cl, err := s.clients.Get(ctx, oc.ClientID)
	must(t, err)
	if cl.Kind != wantKind {
		t.Errorf("client kind %s, want %s", cl.Kind, wantKind)
	}
	if scope, _ := tok.Extra("scope").(string); !slices.Contains(strings.Fields(scope), "payments:read") {
		t.Errorf("granted scope %q lacks payments:read", scope)
	}

	// Refresh: a new pair; the new access token works.
	rctx := context.WithValue(ctx, oauth2.HTTPClient, http.DefaultClient)
	fresh, err := oc.TokenSource(rctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
		t.Fatalf("refresh did not rotate: %+v", fresh)
	}
	s.rec.mustHave(t, audit.TypeOAuthTokenRefreshed, "")
	if st := s.mcpStatus(fresh.AccessToken); st != http.StatusOK {
		t.Fatalf("refreshed access token: /mcp answered %d", st)
	}

	// The user's connected apps list the client.
	apps, err := s.as.ListGrants(ctx, s.alice.ID)
	must(t, err)
	if len(apps) != 1 || apps[0].ClientID != oc.ClientID || apps[0].LastUsed.IsZero() {
		t.Fatalf("connected apps = %+v; want one, used", apps)
	}

	// Revoke (RFC 7009) the refresh token: the family and its access
	// tokens die; every token of the grant is refused from now on.
	form := url.Values{"token": {fresh.RefreshToken}, "token_type_hint": {"refresh_token"}}
	if len(basic) == 0 {
		form.Set("client_id", oc.ClientID)
	}
	if r := s.post("/revoke", form, basic...); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %v", r.status, r.body)
	}
	s.rec.mustHave(t, audit.TypeOAuthTokenRevoked, "")
	for name, at := range map[string]string{"first": tok.AccessToken, "refreshed": fresh.AccessToken} {
		if st := s.mcpStatus(at); st != http.StatusUnauthorized {
			t.Errorf("%s access token after revocation: /mcp answered %d, want 401", name, st)
		}
	}
	s.rec.mustHave(t, audit.TypeAuthRejected, audit.ReasonGrantRevoked)
	if _, err := oc.TokenSource(rctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); err == nil {
		t.Error("refresh with a revoked token succeeded")
	}
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonGrantRevoked)
}

func TestFlowDynamicRegistration(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{})
		sdkFlow(t, s, &auth.AuthorizationCodeHandlerConfig{
			DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
				RedirectURIs: []string{callbackURL}, TokenEndpointAuthMethod: "none",
				GrantTypes: []string{"authorization_code", "refresh_token"}, ClientName: "SDK DCR client",
			}},
		}, "dcr", nil)
		s.rec.mustHave(t, "client.registered", "")
		// The consent page said so: a DCR client is unverified.
		granted := s.rec.mustHave(t, audit.TypeOAuthConsentGranted, "")
		if granted.Details["client_kind"] != "dcr" {
			t.Errorf("consent.granted client_kind = %v", granted.Details["client_kind"])
		}
	})
}

func TestFlowClientIDMetadataDocument(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{})
		id := s.serveDoc("/oauth/client.json", "")
		sdkFlow(t, s, &auth.AuthorizationCodeHandlerConfig{
			ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: id},
		}, "cimd", nil)
		s.rec.mustHave(t, "client.fetched", "")
	})
}

func TestFlowPreregisteredClient(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{})
		id, secret := s.confidentialClient("Operator's app")
		sdkFlow(t, s, &auth.AuthorizationCodeHandlerConfig{
			PreregisteredClient: &oauthex.ClientCredentials{ClientID: id, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: secret}},
		}, "static", []string{id, secret})
	})
}

// TestFlowStepUp: a token without payments:write gets 403
// insufficient_scope on transfer; the SDK client re-authorizes with the
// extra scope (the consent page asks only for it) and the call succeeds.
func TestFlowStepUp(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := s.browser()
	var asked [][]string
	fetch := b.fetcher("alice@example.com")
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{callbackURL}, TokenEndpointAuthMethod: "none", ClientName: "step-up",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL: callbackURL,
		// First round: read only, like a cautious client.
		ScopeFilter: func(scopes []string) []string {
			if len(asked) == 0 {
				return []string{"payments:read"}
			}
			return scopes
		},
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			u, _ := url.Parse(args.URL)
			asked = append(asked, strings.Fields(u.Query().Get("scope")))
			return fetch(ctx, args)
		},
	})
	must(t, err)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "step-up", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: s.mcpURL, OAuthHandler: h, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	must(t, err)
	defer cs.Close()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}}); err != nil {
		t.Fatalf("read call: %v", err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "transfer", Arguments: map[string]any{
		"to": "bob@example.com", "amount": 1, "idempotency_key": "step-up-1",
	}})
	if err != nil {
		t.Fatalf("transfer after step-up: %v", err)
	}
	_ = res // insufficient funds or success: either way the call reached the tool
	if len(asked) != 2 || !slices.Contains(asked[1], "payments:write") || !slices.Contains(asked[1], "payments:read") {
		t.Fatalf("authorization rounds asked for %v; want a second round with payments:read and payments:write", asked)
	}
	// The second consent added only payments:write.
	ev := s.rec.of(audit.TypeOAuthConsentGranted)
	if len(ev) != 2 {
		t.Fatalf("%d consent events, want 2", len(ev))
	}
	if added, _ := ev[1].Details["added_scopes"].([]string); !slices.Equal(added, []string{"payments:write"}) {
		t.Errorf("second consent added %v, want [payments:write]", ev[1].Details["added_scopes"])
	}
}
