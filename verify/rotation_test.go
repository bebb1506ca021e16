package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// TestIssuerKeyRotation drives mcpgate's real issuer through a key
// rotation while a resource server verifies its tokens through the JWKS
// over HTTP: tokens signed by the old key stay valid until they expire, the
// new key is fetched once when its first token arrives, and a flood of
// tokens with the new kid costs one fetch.
func TestIssuerKeyRotation(t *testing.T) {
	ctx := t.Context()
	clk := &clock{now: t0}
	iss, err := tokens.NewIssuer(ctx, storetest.SQLite(t), make32("server key"), tokens.Options{
		Issuer: testIssuer, Now: clk.Now, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := newCountingServer(t, iss)
	ks, err := verify.RemoteJWKS(srv.URL+"/jwks", verify.RemoteOptions{
		MinRefreshInterval: time.Minute,
		CacheTTL:           365 * 24 * time.Hour, // only unknown kids refetch in this test
		Now:                clk.Now,
		Logger:             quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, ks, func(o *verify.Options) { o.Now = clk.Now })
	mintAT := func() string {
		t.Helper()
		tok, _, err := iss.MintAccessToken(ctx, tokens.AccessClaims{Subject: "usr_alice", ClientID: "client-1", Audience: testAudience, Scopes: []string{"payments:read"}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	kidOf := func(tok string) string {
		t.Helper()
		if _, err := v.VerifyCompact(ctx, tok); err != nil {
			t.Fatalf("VerifyCompact: %v", err)
		}
		return headerKid(t, tok)
	}

	first := mintAT()
	oldKid := kidOf(first)
	if n := srv.count(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// Rotation becomes due 30 days minus the publish lead after the key
	// activated. The next key is published at once but does not sign yet.
	clk.Add(tokens.DefaultRotateEvery - tokens.DefaultPublishLead)
	if err := iss.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	beforeSwitch := mintAT()
	if k := kidOf(beforeSwitch); k != oldKid {
		t.Fatalf("token minted during the publish lead has kid %s, want the old %s", k, oldKid)
	}

	// The new key signs from its activation on.
	clk.Add(tokens.DefaultPublishLead)
	var newToks []string
	for range 64 {
		newToks = append(newToks, mintAT())
	}
	if headerKid(t, newToks[0]) == oldKid {
		t.Fatal("the new key does not sign after its activation")
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(newToks))
	for _, tok := range newToks {
		wg.Go(func() {
			if _, err := v.Verify(ctx, tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("token of the new key refused: %v", err)
	}
	if n := srv.count(); n != 2 {
		t.Errorf("fetches after the first tokens of the new key = %d, want 2 (the new kid fetched once)", n)
	}

	// The token signed just before the switch stays valid until it
	// expires, and not beyond.
	mustVerify(t, v, beforeSwitch)
	clk.Add(tokens.DefaultAccessTokenTTL - tokens.DefaultPublishLead - time.Second)
	mustVerify(t, v, beforeSwitch)
	clk.Add(verify.DefaultClockSkew + time.Second)
	wantErr(t, v, beforeSwitch, verify.ErrExpired)
	mustVerify(t, v, mintAT())
	if n := srv.count(); n != 2 {
		t.Errorf("fetches at the end = %d, want 2", n)
	}
}

// TestIssuerKeySetInProcess: Issuer.KeySet verifies in process, and a node
// that has not yet seen another node's rotation reloads the keys when a
// token names the new kid.
func TestIssuerKeySetInProcess(t *testing.T) {
	ctx := t.Context()
	clk := &clock{now: t0}
	db := storetest.SQLite(t)
	opts := tokens.Options{Issuer: testIssuer, Now: clk.Now, Logger: quiet}
	nodeA, err := tokens.NewIssuer(ctx, db, make32("shared"), opts)
	if err != nil {
		t.Fatal(err)
	}
	storeB := &countingStore{SigningKeyStore: db}
	nodeB, err := tokens.NewIssuer(ctx, storeB, make32("shared"), opts)
	if err != nil {
		t.Fatal(err)
	}
	vB := newVerifier(t, nodeB.KeySet(), func(o *verify.Options) { o.Now = clk.Now })

	clk.Add(tokens.DefaultRotateEvery)
	if err := nodeA.Sync(ctx); err != nil { // A rotates; B does not sync
		t.Fatal(err)
	}
	clk.Add(tokens.DefaultPublishLead)
	tok, _, err := nodeA.MintAccessToken(ctx, tokens.AccessClaims{Subject: "usr_1", ClientID: "c", Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	storeB.lists.Store(0)
	if _, err := vB.Verify(ctx, tok); err != nil {
		t.Fatalf("node B refused node A's token with the new key: %v", err)
	}
	if n := storeB.lists.Load(); n != 1 {
		t.Errorf("node B reloaded its keys %d times for the new kid, want 1", n)
	}
	// Invented kids do not make B reload again and again (at most once per 10 s).
	k := newTestKey(t, "ES256", "")
	for i := range 100 {
		if _, err := vB.Verify(ctx, mint(t, k, with(k.header(), "kid", fmt.Sprint("bogus-", i)), claims(clk.Now()))); !errors.Is(err, verify.ErrUnknownKey) {
			t.Fatalf("bogus kid: %v", err)
		}
	}
	if n := storeB.lists.Load(); n != 1 {
		t.Errorf("node B reloaded its keys %d times in all after a bogus-kid flood, want 1", n)
	}
	clk.Add(10 * time.Second)
	vB.Verify(ctx, mint(t, k, with(k.header(), "kid", "bogus-late"), claims(clk.Now())))
	if n := storeB.lists.Load(); n != 2 {
		t.Errorf("node B reloads after 10 s = %d, want 2", n)
	}
}

type countingServer struct {
	*httptest.Server
	mu sync.Mutex
	n  int
}

func newCountingServer(t *testing.T, iss *tokens.Issuer) *countingServer {
	s := &countingServer{}
	h := iss.JWKSHandler()
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func make32(seed string) []byte {
	b := make([]byte, 32)
	copy(b, seed)
	return b
}

// headerKid returns the kid of a token's header, without verifying it.
func headerKid(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := split3(tok)
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// countingStore counts the issuer's key reloads.
type countingStore struct {
	store.SigningKeyStore
	lists atomic.Int64
}

func (c *countingStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	c.lists.Add(1)
	return c.SigningKeyStore.ListSigningKeys(ctx)
}
