package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/verify"
)

const (
	testIssuer   = "https://mcpgate.example.com"
	testResource = "https://mcpgate.example.com/mcp"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func serverKey(seed string) []byte {
	b := make([]byte, 32)
	copy(b, seed)
	return b
}

// newIssuer returns an issuer on st with the test clock.
func newIssuer(t *testing.T, st store.SigningKeyStore, clk *clock, mod ...func(*Options)) *Issuer {
	t.Helper()
	opts := Options{Issuer: testIssuer, Now: clk.Now, Logger: quiet}
	for _, m := range mod {
		m(&opts)
	}
	i, err := NewIssuer(t.Context(), st, serverKey("test"), opts)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	return i
}

func verifierFor(t *testing.T, i *Issuer, clk *clock) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Options{Issuer: testIssuer, Audience: testResource, Keys: i.KeySet(), Now: clk.Now, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mintAT(t *testing.T, i *Issuer) string {
	t.Helper()
	tok, _, err := i.MintAccessToken(t.Context(), AccessClaims{Subject: "usr_alice", ClientID: "client-1", Audience: testResource, Scopes: []string{"payments:read"}})
	if err != nil {
		t.Fatalf("MintAccessToken: %v", err)
	}
	return tok
}

// decodeJWT returns a token's header and claims, unverified.
func decodeJWT(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func kidOf(t *testing.T, tok string) string {
	h, _ := decodeJWT(t, tok)
	kid, _ := h["kid"].(string)
	return kid
}

// jwksKids fetches the JWKS document from the issuer's view.
func jwksKids(t *testing.T, i *Issuer) []string {
	t.Helper()
	keys, err := verify.ParseJWKS(i.view.Load().jwks)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func storedKeys(t *testing.T, st store.SigningKeyStore) []store.SigningKey {
	t.Helper()
	keys, err := st.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func sqliteStore(t *testing.T) store.SigningKeyStore { return storetest.SQLite(t) }
