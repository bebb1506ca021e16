package tokens

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/verify"
)

// TestMintAccessToken: the RFC 9068 header and claims, checked both raw
// and through the verifier.
func TestMintAccessToken(t *testing.T) {
	clk := &clock{now: t0.Add(123 * time.Millisecond)}
	i := newIssuer(t, sqliteStore(t), clk)
	tok, exp, err := i.MintAccessToken(t.Context(), AccessClaims{
		Subject: "usr_alice", ClientID: "https://app.example.com/client.json", Audience: testResource,
		Scopes: []string{"payments:read", "openid"}, GrantID: "grt_1",
		Extra: map[string]any{"organization_id": "org_acme", "roles": []string{"auditor"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("expiry %v, want %v", exp, t0.Add(time.Hour))
	}
	h, c := decodeJWT(t, tok)
	kid := jwksKids(t, i)[0]
	if d := cmp.Diff(map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}, h); d != "" {
		t.Errorf("header (-want +got):\n%s", d)
	}
	jti, _ := c["jti"].(string)
	if len(jti) != 22 {
		t.Errorf("jti %q, want 128 random bits", jti)
	}
	want := map[string]any{
		"iss": testIssuer, "sub": "usr_alice", "aud": testResource, "client_id": "https://app.example.com/client.json",
		"scope": "payments:read openid", "iat": float64(t0.Unix()), "exp": float64(t0.Add(time.Hour).Unix()),
		"jti": jti, "gid": "grt_1", "organization_id": "org_acme", "roles": []any{"auditor"},
	}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("claims (-want +got):\n%s", d)
	}
	if tok2 := mintAT(t, i); tok2 == tok {
		t.Error("two tokens are identical")
	} else if _, c2 := decodeJWT(t, tok2); c2["jti"] == jti {
		t.Error("two tokens share a jti")
	}

	cl, err := verifierFor(t, i, clk).Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if cl.Subject != "usr_alice" || cl.GrantID != "grt_1" || !cl.ExpiresAt.Equal(exp) {
		t.Errorf("verified claims %+v", cl)
	}
}

// TestMintClientCredentials: without a user, sub is the client id
// (RFC 9068 §2.2); without scopes or grant, those claims are absent.
func TestMintClientCredentials(t *testing.T) {
	clk := &clock{now: t0}
	i := newIssuer(t, sqliteStore(t), clk)
	tok, _, err := i.MintAccessToken(t.Context(), AccessClaims{ClientID: "svc-billing", Audience: testResource})
	if err != nil {
		t.Fatal(err)
	}
	_, c := decodeJWT(t, tok)
	if c["sub"] != "svc-billing" || c["client_id"] != "svc-billing" {
		t.Errorf("sub %v, client_id %v; want both the client id", c["sub"], c["client_id"])
	}
	for _, absent := range []string{"scope", "gid"} {
		if _, ok := c[absent]; ok {
			t.Errorf("claim %s present without a value", absent)
		}
	}
}

// TestMintAccessTokenRefused: what the issuer refuses to sign.
func TestMintAccessTokenRefused(t *testing.T) {
	clk := &clock{now: t0}
	i := newIssuer(t, sqliteStore(t), clk)
	ok := AccessClaims{Subject: "usr_1", ClientID: "c", Audience: testResource}
	for name, mod := range map[string]func(*AccessClaims){
		"no client id":           func(c *AccessClaims) { c.ClientID = "" },
		"no audience":            func(c *AccessClaims) { c.Audience = "" },
		"relative audience":      func(c *AccessClaims) { c.Audience = "/mcp" },
		"audience with fragment": func(c *AccessClaims) { c.Audience = testResource + "#x" },
		"scope with space":       func(c *AccessClaims) { c.Scopes = []string{"a b"} },
		"scope with quote":       func(c *AccessClaims) { c.Scopes = []string{`a"`} },
		"empty scope":            func(c *AccessClaims) { c.Scopes = []string{""} },
		"extra aud":              func(c *AccessClaims) { c.Extra = map[string]any{"aud": "https://evil"} },
		"extra ISS":              func(c *AccessClaims) { c.Extra = map[string]any{"ISS": "https://evil"} },
		"extra Scope":            func(c *AccessClaims) { c.Extra = map[string]any{"Scope": "admin"} },
		"extra exp":              func(c *AccessClaims) { c.Extra = map[string]any{"exp": 1 << 40} },
		"extra gid":              func(c *AccessClaims) { c.Extra = map[string]any{"gid": "grt_other"} },
		"extra typ":              func(c *AccessClaims) { c.Extra = map[string]any{"typ": "JWT"} },
		"extra azp":              func(c *AccessClaims) { c.Extra = map[string]any{"azp": "other-client"} },
		"extra auth_time":        func(c *AccessClaims) { c.Extra = map[string]any{"auth_time": 1} },
		"extra acr":              func(c *AccessClaims) { c.Extra = map[string]any{"acr": "phr"} },
		"extra cnf":              func(c *AccessClaims) { c.Extra = map[string]any{"cnf": map[string]any{"jkt": "x"}} },
		"extra act":              func(c *AccessClaims) { c.Extra = map[string]any{"act": map[string]any{"sub": "admin"}} },
		"extra May_Act":          func(c *AccessClaims) { c.Extra = map[string]any{"May_Act": map[string]any{"sub": "admin"}} },
		"extra unencodable":      func(c *AccessClaims) { c.Extra = map[string]any{"f": func() {}} },
		"invalid UTF-8 subject":  func(c *AccessClaims) { c.Subject = "usr_\xff" },
		"control char client":    func(c *AccessClaims) { c.ClientID = "c\n" },
	} {
		c := ok
		mod(&c)
		if _, _, err := i.MintAccessToken(t.Context(), c); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
	if _, _, err := i.MintAccessToken(t.Context(), ok); err != nil {
		t.Errorf("valid claims refused: %v", err)
	}
}

// TestMintAccessTokenTooLarge: custom claims that would push a token past
// what verifiers accept fail closed (ErrTokenTooLarge), instead of
// yielding a token its resource refuses; just below the limit is fine.
func TestMintAccessTokenTooLarge(t *testing.T) {
	clk := &clock{now: t0}
	i := newIssuer(t, sqliteStore(t), clk)
	mint := func(n int) (string, error) {
		tok, _, err := i.MintAccessToken(t.Context(), AccessClaims{
			Subject: "usr_1", ClientID: "c", Audience: testResource, GrantID: "grt_1",
			Extra: map[string]any{"blob": strings.Repeat("x", n)},
		})
		return tok, err
	}
	if _, err := mint(7 << 10); !errors.Is(err, ErrTokenTooLarge) {
		t.Fatalf("7 KiB claim: err = %v, want ErrTokenTooLarge", err)
	}
	// The largest claim that still fits: the token is at most the limit,
	// and the verifier accepts it.
	lo, hi := 0, 7<<10
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, err := mint(mid); err == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	tok, err := mint(lo)
	if err != nil || len(tok) > MaxAccessTokenBytes || len(tok) < MaxAccessTokenBytes-8 {
		t.Fatalf("largest token: %d bytes, %v", len(tok), err)
	}
	if _, err := verifierFor(t, i, clk).Verify(t.Context(), tok); err != nil {
		t.Errorf("the verifier refuses the largest token mcpgate mints: %v", err)
	}
}

// TestMintIDToken: OIDC Core §2 claims, typ JWT, and the verifier refuses
// it as an access token (RFC 9068 §4) even for an audience that matches.
func TestMintIDToken(t *testing.T) {
	clk := &clock{now: t0}
	i := newIssuer(t, sqliteStore(t), clk, func(o *Options) { o.IDTokenTTL = 10 * time.Minute })
	tok, err := i.MintIDToken(t.Context(), IDClaims{
		Subject: "usr_alice", ClientID: "client-1", Nonce: "n-0S6_WzA2Mj", Email: "alice@example.com",
		EmailVerified: true, Name: "Alice", AuthTime: t0.Add(-time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, c := decodeJWT(t, tok)
	if h["typ"] != "JWT" || h["alg"] != "ES256" || h["kid"] == "" {
		t.Errorf("header %v", h)
	}
	want := map[string]any{
		"iss": testIssuer, "sub": "usr_alice", "aud": "client-1", "iat": float64(t0.Unix()),
		"exp": float64(t0.Add(10 * time.Minute).Unix()), "auth_time": float64(t0.Add(-time.Minute).Unix()),
		"nonce": "n-0S6_WzA2Mj", "email": "alice@example.com", "email_verified": true, "name": "Alice",
	}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("claims (-want +got):\n%s", d)
	}
	minimal, err := i.MintIDToken(t.Context(), IDClaims{Subject: "usr_bob", ClientID: "client-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, c := decodeJWT(t, minimal); len(c) != 5 {
		t.Errorf("minimal ID token claims %v, want iss sub aud iat exp", c)
	}
	v, err := verify.New(verify.Options{Issuer: testIssuer, Audience: "client-1", Keys: i.KeySet(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, verify.ErrType) {
		t.Errorf("ID token as access token: %v, want ErrType", err)
	}
	for name, c := range map[string]IDClaims{
		"no subject":   {ClientID: "c"},
		"no client":    {Subject: "s"},
		"bad nonce":    {Subject: "s", ClientID: "c", Nonce: "\x00"},
		"huge name":    {Subject: "s", ClientID: "c", Name: strings.Repeat("n", 5000)},
		"invalid mail": {Subject: "s", ClientID: "c", Email: "\xff"},
	} {
		if _, err := i.MintIDToken(t.Context(), c); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
}
