package verify_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/verify"
)

// TestVerifyValid: a well-formed token of each supported algorithm is
// accepted, and its claims come back as issued.
func TestVerifyValid(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			k := newTestKey(t, alg, "k-"+alg)
			v := newVerifier(t, staticKeys(t, k), func(o *verify.Options) {
				o.Algorithms = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}
			})
			c := mustVerify(t, v, mint(t, k, k.header(), claims(t0)))
			want := &verify.Claims{
				Issuer:    testIssuer,
				Subject:   "usr_alice",
				Audience:  []string{testAudience},
				ClientID:  "https://client.example.com/metadata.json",
				Scopes:    []string{"payments:read", "payments:write"},
				GrantID:   "grt_1",
				JTI:       "jti-1",
				IssuedAt:  t0,
				ExpiresAt: t0.Add(time.Hour),
			}
			if d := cmp.Diff(want, c, cmpopts.IgnoreFields(verify.Claims{}, "Raw")); d != "" {
				t.Errorf("claims (-want +got):\n%s", d)
			}
			if c.Raw["gid"] != "grt_1" || c.Raw["iss"] != testIssuer {
				t.Errorf("Raw = %v, want every claim", c.Raw)
			}
		})
	}
}

// TestVerifyDefaultAlgorithms: without Algorithms, ES256, EdDSA and RS256
// are accepted and nothing else.
func TestVerifyDefaultAlgorithms(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256", "ES384", "PS256"} {
		k := newTestKey(t, alg, "k")
		v := newVerifier(t, staticKeys(t, k))
		_, err := v.Verify(t.Context(), mint(t, k, k.header(), claims(t0)))
		if ok := slices.Contains(verify.DefaultAlgorithms, alg); ok != (err == nil) {
			t.Errorf("%s: Verify = %v; default algorithms %v", alg, err, verify.DefaultAlgorithms)
		}
	}
}

// TestVerifyOptionalClaims: gid and scope are optional; scp arrays are read
// when there is no scope; aud may be an array; application/at+jwt is the
// same type as at+jwt.
func TestVerifyOptionalClaims(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	c := mustVerify(t, v, mint(t, k, k.header(), with(claims(t0), "gid", nil, "scope", nil)))
	if c.GrantID != "" || len(c.Scopes) != 0 {
		t.Errorf("without gid and scope: GrantID %q, Scopes %v", c.GrantID, c.Scopes)
	}
	c = mustVerify(t, v, mint(t, k, k.header(), with(claims(t0), "scope", nil, "scp", []string{"a", "b"})))
	if d := cmp.Diff([]string{"a", "b"}, c.Scopes); d != "" {
		t.Errorf("scp (-want +got):\n%s", d)
	}
	c = mustVerify(t, v, mint(t, k, k.header(), with(claims(t0), "aud", []string{"https://other.example.com", testAudience})))
	if len(c.Audience) != 2 {
		t.Errorf("aud array: Audience = %v", c.Audience)
	}
	mustVerify(t, v, mint(t, k, with(k.header(), "typ", "application/AT+JWT"), claims(t0)))
}

// TestVerifyRequiredClaims: RFC 9068 §2.2 claims must be present with the
// right types.
func TestVerifyRequiredClaims(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	for _, tc := range []struct {
		name string
		kv   []any
	}{
		{"no sub", []any{"sub", nil}},
		{"no client_id", []any{"client_id", nil}},
		{"no jti", []any{"jti", nil}},
		{"no iat", []any{"iat", nil}},
		{"no exp", []any{"exp", nil}},
		{"no iss", []any{"iss", nil}},
		{"no aud", []any{"aud", nil}},
		{"sub not a string", []any{"sub", 42}},
		{"exp a string", []any{"exp", "tomorrow"}},
		{"aud array with a number", []any{"aud", []any{testAudience, 1}}},
		{"scope an array", []any{"scope", []string{"a"}}},
		{"gid a number", []any{"gid", 7}},
		{"exp negative", []any{"exp", -1}},
		{"exp absurd", []any{"exp", 1e300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, v, mint(t, k, k.header(), with(claims(t0), tc.kv...)), verify.ErrMalformed)
		})
	}
}

// TestReason: every sentinel has its code.
func TestReason(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""}, {verify.ErrMalformed, "malformed"}, {verify.ErrAlgorithm, "algorithm"},
		{verify.ErrUnknownKey, "unknown_key"}, {verify.ErrSignature, "bad_signature"},
		{verify.ErrExpired, "expired"}, {verify.ErrNotYetValid, "not_yet_valid"},
		{verify.ErrIssuer, "wrong_issuer"}, {verify.ErrAudience, "wrong_audience"},
		{verify.ErrType, "wrong_type"}, {verify.ErrKeysUnavailable, "keys_unavailable"},
		{errors.New("other"), "error"},
	}
	for _, tc := range cases {
		if got := verify.Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
