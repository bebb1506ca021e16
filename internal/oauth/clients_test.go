package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/store"
)

func TestCreateStatic(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	ctx := t.Context()

	pub, secret, err := e.c.CreateStatic(ctx, StaticClient{Name: "  Desk app ", RedirectURIs: []string{"http://127.0.0.1/cb", "com.example.desk:/cb"}, Scopes: []string{"payments:read"}})
	if err != nil || secret != "" {
		t.Fatalf("CreateStatic(public) = %v, secret %q", err, secret)
	}
	want := store.OAuthClient{
		ID: pub.ID, ClientID: pub.ClientID, Kind: store.ClientKindStatic, Name: "Desk app",
		RedirectURIs: []string{"http://127.0.0.1/cb", "com.example.desk:/cb"}, GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: AuthMethodNone, ApplicationType: AppTypeNative,
		Scopes: []string{"payments:read"}, CreatedAt: toMillis(e.clock.Now()),
	}
	if d := cmp.Diff(want, pub); d != "" {
		t.Errorf("public static client (-want +got):\n%s", d)
	}
	if strings.HasPrefix(pub.ClientID, "https://") || !strings.HasPrefix(pub.ClientID, "client_") {
		t.Errorf("client_id %q", pub.ClientID)
	}
	if stored, err := e.st.GetOAuthClient(ctx, pub.ClientID); err != nil || stored.ID != pub.ID {
		t.Errorf("not stored: %v", err)
	}

	conf, secret, err := e.c.CreateStatic(ctx, StaticClient{Name: "Service", Confidential: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if !strings.HasPrefix(secret, clientSecretPrefix) || string(conf.SecretHash) != string(sum[:]) ||
		conf.TokenEndpointAuthMethod != AuthMethodClientSecretBasic || !cmp.Equal(conf.GrantTypes, []string{GrantClientCredentials}) ||
		len(conf.ResponseTypes) != 0 || len(conf.RedirectURIs) != 0 {
		t.Errorf("confidential static client = %+v", conf)
	}
	// H1: a client with redirect URIs signs users in; client_credentials
	// only when asked for.
	web, _, err := e.c.CreateStatic(ctx, StaticClient{Name: "Web", Confidential: true, RedirectURIs: []string{"https://web.example/cb"}})
	if err != nil || !cmp.Equal(web.GrantTypes, []string{GrantAuthorizationCode, GrantRefreshToken}) || web.ApplicationType != AppTypeWeb {
		t.Errorf("confidential web client = %+v, %v", web, err)
	}
	both, _, err := e.c.CreateStatic(ctx, StaticClient{Name: "Both", Confidential: true, RedirectURIs: []string{"https://web.example/cb"},
		GrantTypes: []string{GrantAuthorizationCode, GrantClientCredentials}, Scopes: []string{"payments:read"}})
	if err != nil || !cmp.Equal(both.GrantTypes, []string{GrantAuthorizationCode, GrantClientCredentials}) {
		t.Errorf("client with explicit grant types = %+v, %v", both, err)
	}
	web, _, _ = e.c.CreateStatic(ctx, StaticClient{Name: "Web", Confidential: true, RedirectURIs: []string{"https://web.example/cb"}})
	ev := e.rec.last(t, EventClientCreated)
	if ev.Details["actor"] != "cli" || ev.Details["client_id"] != web.ClientID {
		t.Errorf("audit = %+v", ev)
	}

	refusals := []struct {
		req   StaticClient
		field string
		want  string
	}{
		{StaticClient{RedirectURIs: []string{"https://a.example/cb"}}, "name", "required"},
		{StaticClient{Name: "a\u202eb", RedirectURIs: []string{"https://a.example/cb"}}, "name", "control or formatting"},
		{StaticClient{Name: "x"}, "redirect_uris", "at least one redirect URI"},
		{StaticClient{Name: "x", RedirectURIs: []string{"http://evil.example/cb"}}, "redirect_uris", "not loopback"},
		{StaticClient{Name: "x", RedirectURIs: []string{"https://a.example/cb#f"}}, "redirect_uris", "fragment"},
		{StaticClient{Name: "x", RedirectURIs: []string{"http://127.0.0.1/cb"}, ApplicationType: AppTypeWeb}, "redirect_uris", "application_type"},
		{StaticClient{Name: "x", RedirectURIs: []string{"https://a.example/cb"}, ApplicationType: "tv"}, "application_type", "web"},
		{StaticClient{Name: "x", GrantTypes: []string{GrantClientCredentials}}, "grant_types", "confidential"},
		{StaticClient{Name: "x", RedirectURIs: []string{"https://a.example/cb"}, GrantTypes: []string{"implicit"}}, "grant_types", "not supported"},
		{StaticClient{Name: "x", Confidential: true, GrantTypes: []string{GrantClientCredentials}, RedirectURIs: []string{"https://a.example/cb"}}, "redirect_uris", "authorization_code"},
		{StaticClient{Name: "x", RedirectURIs: []string{"https://a.example/cb"}, Scopes: []string{"bad scope"}}, "scopes", "not a valid scope token"},
	}
	for _, tc := range refusals {
		_, _, err := e.c.CreateStatic(ctx, tc.req)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(ve.Message, tc.want) {
			t.Errorf("CreateStatic(%+v) = %v, want %s error mentioning %q", tc.req, err, tc.field, tc.want)
		}
	}
}

func TestDeleteClient(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	ctx := t.Context()
	cl, _, err := e.c.CreateStatic(ctx, StaticClient{Name: "x", RedirectURIs: []string{"https://a.example/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Delete(WithActor(ctx, "usr_admin"), cl.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Resolve(ctx, cl.ClientID); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Resolve after delete: %v", err)
	}
	if ev := e.rec.last(t, EventClientDeleted); ev.Details["actor"] != "usr_admin" {
		t.Errorf("audit = %+v", ev)
	}
	if _, err := e.c.Delete(ctx, cl.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestReap(t *testing.T) {
	e := newEnv(t, ClientsOptions{UnusedTTL: 24 * time.Hour, IdleTTL: 90 * 24 * time.Hour})
	ctx := t.Context()
	reg := func(name string) store.OAuthClient {
		md := clientMetadata{RedirectURIs: []string{"http://127.0.0.1/" + name}, TokenEndpointAuthMethod: AuthMethodNone,
			GrantTypes: []string{GrantAuthorizationCode}, ResponseTypes: []string{"code"}, ApplicationType: AppTypeNative, Name: name}
		cl, _, _, err := e.c.registerClient(ctx, md)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	static, _, _ := e.c.CreateStatic(ctx, StaticClient{Name: "static", RedirectURIs: []string{"https://a.example/cb"}})
	unused := reg("unused")
	used := reg("used")
	e.c.NoteUse(ctx, used)

	e.clock.Advance(23 * time.Hour)
	if n, err := e.c.Reap(ctx); err != nil || n != 0 {
		t.Errorf("Reap at 23h = %d, %v; want 0", n, err)
	}
	e.clock.Advance(2 * time.Hour)
	if n, err := e.c.Reap(ctx); err != nil || n != 1 {
		t.Errorf("Reap at 25h = %d, %v; want 1 (the never-used one)", n, err)
	}
	if _, err := e.st.GetOAuthClient(ctx, unused.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("never-used registration survived: %v", err)
	}
	ev := e.rec.last(t, EventClientReaped)
	if ev.Reason != "never_used" || ev.Details["client_id"] != unused.ClientID {
		t.Errorf("reap audit = %+v", ev)
	}
	// Used 25 h ago; idle 90 days after that use.
	e.clock.Advance(88 * 24 * time.Hour)
	if n, _ := e.c.Reap(ctx); n != 0 {
		t.Errorf("Reap before the idle limit removed %d", n)
	}
	e.clock.Advance(2 * 24 * time.Hour)
	if n, _ := e.c.Reap(ctx); n != 1 {
		t.Errorf("Reap after the idle limit removed %d, want 1", n)
	}
	if ev := e.rec.last(t, EventClientReaped); ev.Reason != "idle" {
		t.Errorf("reason = %q", ev.Reason)
	}
	if _, err := e.st.GetOAuthClient(ctx, static.ClientID); err != nil {
		t.Errorf("static client reaped: %v", err)
	}

	// Negative TTLs switch the rules off.
	off := newEnv(t, ClientsOptions{UnusedTTL: -1, IdleTTL: -1})
	off.c.registerClient(ctx, clientMetadata{RedirectURIs: []string{"http://127.0.0.1/x"}, TokenEndpointAuthMethod: AuthMethodNone,
		GrantTypes: []string{GrantAuthorizationCode}, ResponseTypes: []string{"code"}, ApplicationType: AppTypeNative})
	off.clock.Advance(365 * 24 * time.Hour)
	if n, err := off.c.Reap(ctx); n != 0 || err != nil {
		t.Errorf("Reap with the rules off = %d, %v", n, err)
	}
}

func TestRunReapsUntilCancelled(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	ctx := t.Context()
	e.c.registerClient(ctx, clientMetadata{RedirectURIs: []string{"http://127.0.0.1/x"}, TokenEndpointAuthMethod: AuthMethodNone,
		GrantTypes: []string{GrantAuthorizationCode}, ResponseTypes: []string{"code"}, ApplicationType: AppTypeNative})
	e.clock.Advance(48 * time.Hour)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.c.Run(runCtx, time.Hour); close(done) }()
	deadline := time.After(5 * time.Second)
	for len(e.rec.of(EventClientReaped)) == 0 {
		select {
		case <-deadline:
			t.Fatal("Run did not reap")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
}

func TestNoteUseThrottles(t *testing.T) {
	e := newEnv(t, ClientsOptions{TouchInterval: time.Minute})
	ctx := t.Context()
	cl, _, _ := e.c.CreateStatic(ctx, StaticClient{Name: "x", RedirectURIs: []string{"https://a.example/cb"}})
	e.c.NoteUse(ctx, cl)
	first, _ := e.st.GetOAuthClient(ctx, cl.ClientID)
	if !first.LastUsedAt.Equal(toMillis(e.clock.Now())) {
		t.Fatalf("first use not recorded: %v", first.LastUsedAt)
	}
	e.clock.Advance(30 * time.Second)
	e.c.NoteUse(ctx, first)
	if got, _ := e.st.GetOAuthClient(ctx, cl.ClientID); !got.LastUsedAt.Equal(first.LastUsedAt) {
		t.Error("a use within the touch interval was written")
	}
	e.clock.Advance(time.Minute)
	e.c.NoteUse(ctx, first)
	if got, _ := e.st.GetOAuthClient(ctx, cl.ClientID); !got.LastUsedAt.Equal(toMillis(e.clock.Now())) {
		t.Error("a use after the touch interval was not written")
	}
}

func TestAllowsGrant(t *testing.T) {
	pub := store.OAuthClient{GrantTypes: []string{GrantAuthorizationCode}}
	conf := store.OAuthClient{Kind: store.ClientKindStatic, GrantTypes: []string{GrantClientCredentials}, SecretHash: make([]byte, 32)}
	dcrConf := store.OAuthClient{Kind: store.ClientKindDCR, GrantTypes: []string{GrantClientCredentials}, SecretHash: make([]byte, 32)}
	tests := []struct {
		cl    store.OAuthClient
		grant string
		want  bool
	}{
		{pub, GrantAuthorizationCode, true},
		{pub, GrantRefreshToken, true}, // implied by authorization_code
		{pub, GrantClientCredentials, false},
		{conf, GrantClientCredentials, true},
		{conf, GrantAuthorizationCode, false},
		{conf, GrantRefreshToken, false},
		{store.OAuthClient{GrantTypes: []string{GrantClientCredentials}}, GrantClientCredentials, false}, // public: never
		{dcrConf, GrantClientCredentials, false},                                                         // self-registered: never (H1)
		{pub, "password", false},
	}
	for _, tc := range tests {
		if got := AllowsGrant(tc.cl, tc.grant); got != tc.want {
			t.Errorf("AllowsGrant(%v, %s) = %v, want %v", tc.cl.GrantTypes, tc.grant, got, tc.want)
		}
	}
}
