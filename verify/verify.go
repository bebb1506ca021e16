package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Defaults of Options.
const (
	DefaultClockSkew     = 30 * time.Second
	DefaultCacheSize     = 10_000
	DefaultMaxTokenBytes = 8 << 10
)

// Options configure a Verifier.
type Options struct {
	// Issuer is the expected "iss", compared byte for byte: no trailing
	// slash is added or removed (RFC 8414 §3.3, RFC 9068 §4). Required.
	Issuer string
	// Audience is this resource's identifier, usually its URL (RFC 8707);
	// "aud" must contain it. Required: a token minted for another resource
	// is refused, never passed through.
	Audience string
	// Keys supplies the issuer's public keys: StaticKeys, RemoteJWKS, or
	// an issuer's own key set. Required.
	Keys KeySource
	// Algorithms the token's "alg" may name; default DefaultAlgorithms.
	// "none" and the HMAC algorithms (HS256…) are refused: a verifier of
	// public-key signatures must never treat a public key as a secret.
	Algorithms []string
	// ClockSkew is the leeway for exp, nbf and iat. 0 means
	// DefaultClockSkew (30 s); a negative value means none.
	ClockSkew time.Duration
	// CacheSize bounds the verified-token cache (entries). 0 means
	// DefaultCacheSize; a negative value disables the cache.
	CacheSize int
	// MaxTokenBytes refuses longer tokens before any decoding. 0 means
	// DefaultMaxTokenBytes (8 KiB).
	MaxTokenBytes int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Verifier checks JWT access tokens (RFC 9068) for one resource. It is
// safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	keys     KeySource
	algs     map[string]*algorithm
	skew     time.Duration
	maxBytes int
	now      func() time.Time
	cache    *tokenCache
}

// New returns a Verifier, or an error when opts are unusable.
func New(opts Options) (*Verifier, error) {
	if opts.Issuer == "" {
		return nil, errors.New("verify: Options.Issuer is required")
	}
	if opts.Audience == "" {
		return nil, errors.New("verify: Options.Audience is required (tokens for other resources must be refused)")
	}
	if opts.Keys == nil {
		return nil, errors.New("verify: Options.Keys is required")
	}
	names := opts.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	algs := make(map[string]*algorithm, len(names))
	for _, n := range names {
		a, ok := algorithms[n]
		if !ok {
			if strings.EqualFold(n, "none") || strings.HasPrefix(strings.ToUpper(n), "HS") {
				return nil, fmt.Errorf("verify: algorithm %q is never allowed (only public-key signatures)", n)
			}
			return nil, fmt.Errorf("verify: unsupported algorithm %q", n)
		}
		algs[n] = a
	}
	v := &Verifier{
		issuer:   opts.Issuer,
		audience: opts.Audience,
		keys:     opts.Keys,
		algs:     algs,
		skew:     opts.ClockSkew,
		maxBytes: opts.MaxTokenBytes,
		now:      opts.Now,
	}
	switch {
	case v.skew == 0:
		v.skew = DefaultClockSkew
	case v.skew < 0:
		v.skew = 0
	}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}
	if v.now == nil {
		v.now = time.Now
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	v.cache = newTokenCache(size)
	return v, nil
}

// Issuer returns the expected issuer.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience returns the resource the verifier accepts tokens for.
func (v *Verifier) Audience() string { return v.audience }

// Compact is the result of a verification in a form that costs nothing to
// return from the cache: the strings alias cache memory (they are
// immutable and stay valid), the times are values. Claims materialises the
// full claim set when needed.
type Compact struct {
	Subject   string // "sub": the user id, or the client id for client_credentials tokens
	ClientID  string // "client_id"
	Scope     string // "scope": the scope tokens separated by single spaces
	GrantID   string // "gid": the grant the token came from; "" if absent
	JTI       string // "jti"
	IssuedAt  time.Time
	ExpiresAt time.Time
	token     string
}

// HasScope reports whether the token's scope contains s. It does not allocate.
func (c Compact) HasScope(s string) bool {
	if s == "" {
		return false
	}
	rest := c.Scope
	for rest != "" {
		var tok string
		tok, rest, _ = strings.Cut(rest, " ")
		if tok == s {
			return true
		}
	}
	return false
}

// Scopes returns the scope tokens as a new slice.
func (c Compact) Scopes() []string { return strings.Fields(c.Scope) }

// Claims decodes the full claim set of the verified token. It re-reads the
// token's payload (no signature check: the token was verified) and
// allocates; call it only when more than Compact is needed.
func (c Compact) Claims() (*Claims, error) {
	if c.token == "" {
		return nil, errors.New("verify: Compact holds no verified token")
	}
	_, payload, _, _ := splitCompact(c.token)
	raw, err := decodeSegment(payload)
	if err != nil {
		return nil, fail(ErrMalformed, "payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fail(ErrMalformed, "payload: %v", err)
	}
	cl := &Claims{
		Subject: c.Subject, ClientID: c.ClientID, Scopes: c.Scopes(), GrantID: c.GrantID, JTI: c.JTI,
		IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt, Raw: m,
	}
	cl.Issuer, _ = m["iss"].(string)
	cl.Audience, _ = audience(m["aud"])
	return cl, nil
}

// Claims is the claim set of a verified access token (RFC 9068 §2.2).
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ClientID  string
	Scopes    []string
	GrantID   string // "gid", mcpgate's grant id (for revocation); "" if absent
	JTI       string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Raw holds every claim as decoded by encoding/json (numbers are float64).
	Raw map[string]any
}

// Verify checks token and returns its claims. Errors wrap one of the
// sentinel errors (ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature,
// ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrType,
// ErrKeysUnavailable).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	now := v.now()
	if c, ok := v.cache.get(token, now.UnixNano()); ok {
		return c.Claims()
	}
	_, cl, err := v.verifySlow(ctx, token, now)
	return cl, err
}

// VerifyCompact is Verify returning the compact result: on a cache hit it
// does not allocate.
func (v *Verifier) VerifyCompact(ctx context.Context, token string) (Compact, error) {
	now := v.now()
	if c, ok := v.cache.get(token, now.UnixNano()); ok {
		return c, nil
	}
	c, _, err := v.verifySlow(ctx, token, now)
	return c, err
}

// PurgeCache forgets every verified token, e.g. after a key was withdrawn
// for compromise. (Revoked grants are for the caller to check: tokens carry
// their grant id.)
func (v *Verifier) PurgeCache() { v.cache.purge() }

// verifySlow is the full verification (RFC 9068 §4 and RFC 7519 §7.2), in
// this order: size and shape, header (alg allowed, typ at+jwt, no crit),
// key lookup, signature, then the claims (iss, aud, exp, nbf, iat and the
// required claims). A success is cached.
func (v *Verifier) verifySlow(ctx context.Context, token string, now time.Time) (Compact, *Claims, error) {
	if len(token) > v.maxBytes {
		return Compact{}, nil, fail(ErrMalformed, "token is %d bytes, limit %d", len(token), v.maxBytes)
	}
	h64, p64, s64, ok := splitCompact(token)
	if !ok {
		return Compact{}, nil, fail(ErrMalformed, "not a JWS compact serialization (three non-empty base64url segments)")
	}

	// Header (RFC 7515 §4).
	hb, err := decodeSegment(h64)
	if err != nil {
		return Compact{}, nil, fail(ErrMalformed, "header: %v", err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr == nil {
		return Compact{}, nil, fail(ErrMalformed, "header is not a JSON object")
	}
	algName, ok := hdr["alg"].(string)
	if !ok {
		return Compact{}, nil, fail(ErrMalformed, "header has no alg")
	}
	alg, ok := v.algs[algName]
	if !ok {
		return Compact{}, nil, fail(ErrAlgorithm, "alg %s", quoteClip(algName))
	}
	// RFC 7515 §4.1.11: extensions marked critical must be understood; we
	// understand none.
	if _, ok := hdr["crit"]; ok {
		return Compact{}, nil, fail(ErrMalformed, "unsupported critical header parameters")
	}
	// RFC 9068 §4: "Resource servers MUST verify that the typ header value
	// is at+jwt or application/at+jwt and reject tokens carrying any other
	// value." (Media types compare case-insensitively, RFC 7515 §4.1.9.)
	typ, _ := hdr["typ"].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return Compact{}, nil, fail(ErrType, "typ %s", quoteClip(typ))
	}
	kid, _ := hdr["kid"].(string)
	if raw, ok := hdr["kid"]; ok && kid == "" {
		if _, isString := raw.(string); !isString {
			return Compact{}, nil, fail(ErrMalformed, "kid is not a string")
		}
	}

	// Key and signature (RFC 7515 §5.2). The key comes from the key source
	// only; header parameters that name keys (jwk, jku, x5u, x5c) are ignored.
	key, err := v.keys.LookupKey(ctx, kid, algName)
	if err != nil {
		if errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrKeysUnavailable) {
			return Compact{}, nil, err
		}
		return Compact{}, nil, fmt.Errorf("verify: %w: %w", ErrKeysUnavailable, err)
	}
	if !alg.fits(key.Key) || (key.Algorithm != "" && key.Algorithm != algName) {
		return Compact{}, nil, fail(ErrAlgorithm, "alg %s does not fit key %s", quoteClip(algName), quoteClip(key.KeyID))
	}
	sig, err := decodeSegment(s64)
	if err != nil {
		return Compact{}, nil, fail(ErrMalformed, "signature: %v", err)
	}
	if !alg.verify(key.Key, token[:len(h64)+1+len(p64)], sig) {
		return Compact{}, nil, fail(ErrSignature, "%s signature does not verify with key %s", algName, quoteClip(key.KeyID))
	}

	// Claims (RFC 7519 §4.1, RFC 9068 §2.2).
	pb, err := decodeSegment(p64)
	if err != nil {
		return Compact{}, nil, fail(ErrMalformed, "payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(pb, &m); err != nil || m == nil {
		return Compact{}, nil, fail(ErrMalformed, "payload is not a JSON object")
	}
	cl, untilNs, err := v.checkClaims(m, now)
	if err != nil {
		return Compact{}, nil, err
	}
	c := Compact{
		Subject: cl.Subject, ClientID: cl.ClientID, GrantID: cl.GrantID, JTI: cl.JTI,
		Scope:    strings.Join(cl.Scopes, " "), // normalised: HasScope splits on single spaces
		IssuedAt: cl.IssuedAt, ExpiresAt: cl.ExpiresAt, token: token,
	}
	v.cache.put(token, &c, untilNs, now.UnixNano())
	return c, cl, nil
}

// checkClaims validates the claim set and returns the claims and the
// instant (unix ns) from which the token is no longer accepted.
func (v *Verifier) checkClaims(m map[string]any, now time.Time) (*Claims, int64, error) {
	cl := &Claims{Raw: m}
	// RFC 9068 §4: the issuer "MUST exactly match" the expected one.
	iss, ok := m["iss"].(string)
	if !ok {
		return nil, 0, fail(ErrMalformed, "iss missing or not a string")
	}
	if iss != v.issuer {
		return nil, 0, fail(ErrIssuer, "iss %s, want %s", quoteClip(iss), quoteClip(v.issuer))
	}
	cl.Issuer = iss
	// RFC 9068 §4: the resource server "MUST validate that the aud claim
	// contains a resource indicator value corresponding to an identifier
	// the resource server expects for itself".
	aud, ok := audience(m["aud"])
	if !ok {
		return nil, 0, fail(ErrMalformed, "aud missing or not a string or array of strings")
	}
	if !slices.Contains(aud, v.audience) {
		return nil, 0, fail(ErrAudience, "aud %s does not contain %s", quoteClip(strings.Join(aud, " ")), quoteClip(v.audience))
	}
	cl.Audience = aud

	nowS := float64(now.UnixNano()) / 1e9
	skew := v.skew.Seconds()
	exp, ok, err := numericDate(m, "exp")
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, fail(ErrMalformed, "exp missing")
	}
	// RFC 7519 §4.1.4: not accepted "on or after" exp.
	if nowS >= exp+skew {
		return nil, 0, fail(ErrExpired, "expired at %s", time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := numericDate(m, "nbf"); err != nil {
		return nil, 0, err
	} else if ok && nowS+skew < nbf {
		return nil, 0, fail(ErrNotYetValid, "nbf %s", time.Unix(int64(nbf), 0).UTC().Format(time.RFC3339))
	}
	iat, ok, err := numericDate(m, "iat")
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, fail(ErrMalformed, "iat missing")
	}
	if nowS+skew < iat {
		return nil, 0, fail(ErrNotYetValid, "issued in the future (iat %s)", time.Unix(int64(iat), 0).UTC().Format(time.RFC3339))
	}
	cl.IssuedAt = time.Unix(int64(iat), 0).UTC()
	cl.ExpiresAt = time.Unix(int64(exp), 0).UTC()

	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"sub", &cl.Subject, true},
		{"client_id", &cl.ClientID, true},
		{"jti", &cl.JTI, true},
		{"gid", &cl.GrantID, false},
	} {
		val, present := m[f.name]
		s, isString := val.(string)
		switch {
		case present && !isString:
			return nil, 0, fail(ErrMalformed, "%s is not a string", f.name)
		case f.required && s == "":
			return nil, 0, fail(ErrMalformed, "%s missing", f.name)
		}
		*f.dst = s
	}
	switch sc := m["scope"].(type) {
	case nil:
		cl.Scopes = scpArray(m["scp"])
	case string:
		cl.Scopes = strings.Fields(sc)
	default:
		return nil, 0, fail(ErrMalformed, "scope is not a string")
	}

	untilNs := int64(math.MaxInt64)
	if u := (exp + skew) * 1e9; u < float64(math.MaxInt64) {
		untilNs = int64(u)
	}
	return cl, untilNs, nil
}

// numericDate reads a NumericDate claim (RFC 7519 §2): seconds since the
// epoch, possibly fractional. Values outside 0…1e11 (beyond year 5000) are
// malformed.
func numericDate(m map[string]any, name string) (float64, bool, error) {
	raw, ok := m[name]
	if !ok {
		return 0, false, nil
	}
	f, isNum := raw.(float64)
	if !isNum || f < 0 || f > 1e11 {
		return 0, false, fail(ErrMalformed, "%s is not a NumericDate", name)
	}
	return f, true, nil
}

// audience reads "aud": a string or an array of strings (RFC 7519 §4.1.3).
func audience(raw any) ([]string, bool) {
	switch a := raw.(type) {
	case string:
		return []string{a}, true
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, len(out) > 0
	}
	return nil, false
}

// scpArray reads the "scp" array some issuers use instead of "scope".
func scpArray(raw any) []string {
	a, ok := raw.([]any)
	if !ok {
		return nil
	}
	var out []string
	for _, x := range a {
		if s, ok := x.(string); ok && s != "" && !strings.ContainsAny(s, " \t\r\n") {
			out = append(out, s)
		}
	}
	return out
}
