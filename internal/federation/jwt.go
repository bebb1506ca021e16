package federation

// Local verification of an external issuer's JWT access tokens.
//
// package verify's Verifier is RFC 9068-strict (typ at+jwt, client_id and
// jti required), which most identity providers' access tokens are not
// (Keycloak, Auth0 by default, Entra, Supabase send typ "JWT" and no
// client_id). So the checks are made here, on verify's key sources (the
// rate-limited RemoteJWKS) and go-jose for the signature, in this order:
//
//  1. shape and size; header: alg on the issuer's allow-list (never
//     "none", never HMAC: a public JWKS key must never become an HMAC
//     secret), no "crit", typ absent, JWT or at+jwt (RFC 8725 §3.11: other
//     kinds of JWT — logout tokens, DPoP proofs — are not access tokens);
//  2. the key by kid from the issuer's JWKS (RFC 7515 §4.1.4), never from
//     the token's own jwk/jku/x5u/x5c headers; the signature;
//  3. the claims (RFC 7519 §7.2, RFC 9068 §4): iss byte for byte, aud
//     containing a configured audience (no token passthrough), exp
//     required, nbf and iat not in the future, each with the issuer's
//     skew; the user id claim present.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/verify"
)

// MaxTokenBytes bounds the tokens tried at all.
const MaxTokenBytes = 8 << 10

var b64 = base64.RawURLEncoding.Strict()

type parsedJWT struct {
	raw    string
	header map[string]any
	claims map[string]any
}

// parseJWT decodes a compact JWS without verifying it: only to learn its
// issuer (routing) and header.
func parseJWT(token string) (*parsedJWT, error) {
	if len(token) > MaxTokenBytes {
		return nil, refuse(ReasonMalformed, "", "token is %d bytes, limit %d", len(token), MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, refuse(ReasonMalformed, "", "not a JWS compact serialization")
	}
	t := &parsedJWT{raw: token}
	for i, dst := range []*map[string]any{&t.header, &t.claims} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			return nil, refuse(ReasonMalformed, "", "segment %d is not base64url", i+1)
		}
		if err := json.Unmarshal(b, dst); err != nil || *dst == nil {
			return nil, refuse(ReasonMalformed, "", "segment %d is not a JSON object", i+1)
		}
	}
	return t, nil
}

// PeekIssuer returns the unverified "iss" of a JWT, or "" when token is
// not a decodable JWT. For routing only: nothing about the token is
// trusted until it is verified.
func PeekIssuer(token string) string {
	t, err := parseJWT(token)
	if err != nil {
		return ""
	}
	iss, _ := t.claims["iss"].(string)
	return iss
}

func (is *issuer) verifyJWT(ctx context.Context, t *parsedJWT) (*Identity, error) {
	iss := is.cfg.Issuer
	alg, ok := t.header["alg"].(string)
	if !ok {
		return nil, refuse(ReasonMalformed, iss, "header has no alg")
	}
	if !is.alg[alg] {
		return nil, refuse(ReasonBadAlgorithm, iss, "alg %s is not allowed for this issuer", quote(alg))
	}
	// RFC 7515 §4.1.11: critical extensions must be understood; none are.
	if _, ok := t.header["crit"]; ok {
		return nil, refuse(ReasonMalformed, iss, "unsupported critical header parameters")
	}
	if typ, present := t.header["typ"]; present {
		s, _ := typ.(string)
		switch strings.ToLower(s) {
		case "jwt", "at+jwt", "application/at+jwt", "application/jwt":
		default:
			return nil, refuse(ReasonWrongType, iss, "typ %s is not an access token type", quote(s))
		}
	}
	kid := ""
	if raw, present := t.header["kid"]; present {
		s, isString := raw.(string)
		if !isString {
			return nil, refuse(ReasonMalformed, iss, "kid is not a string")
		}
		kid = s
	}

	keys, err := is.keySource(ctx)
	if err != nil {
		return nil, err
	}
	key, err := keys.LookupKey(ctx, kid, alg)
	switch {
	case errors.Is(err, verify.ErrUnknownKey):
		return nil, refuse(ReasonUnknownKID, iss, "no %s key with kid %s in the issuer's JWKS", alg, quote(kid))
	case err != nil:
		return nil, refuse(ReasonIssuerUnavailable, iss, "JWKS: %v", err)
	case key.Algorithm != "" && key.Algorithm != alg:
		return nil, refuse(ReasonBadAlgorithm, iss, "alg %s does not fit key %s", quote(alg), quote(key.KeyID))
	}
	jws, err := jose.ParseSignedCompact(t.raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return nil, refuse(ReasonMalformed, iss, "JWS: %v", err)
	}
	if _, err := jws.Verify(key.Key); err != nil {
		return nil, refuse(ReasonBadSignature, iss, "%s signature does not verify with key %s", alg, quote(key.KeyID))
	}

	// Claims, now that they are authentic.
	if got, _ := t.claims["iss"].(string); got != iss {
		return nil, refuse(ReasonUnknownIssuer, iss, "iss %s", quote(got))
	}
	if err := is.checkAudience(t.claims["aud"]); err != nil {
		return nil, err
	}
	exp, err := is.checkTimes(t.claims, true)
	if err != nil {
		return nil, err
	}
	return is.mapIdentity(t.claims, MethodExternalJWT, exp)
}

// checkAudience: RFC 9068 §4 / RFC 7519 §4.1.3: aud (a string or an array
// of strings) must contain one of the configured audiences.
func (is *issuer) checkAudience(raw any) error {
	if is.cfg.AllowAnyAudience {
		return nil
	}
	var aud []string
	switch a := raw.(type) {
	case string:
		aud = []string{a}
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok {
				aud = append(aud, s)
			}
		}
	}
	for _, want := range is.cfg.Audiences {
		for _, got := range aud {
			if got == want {
				return nil
			}
		}
	}
	if len(aud) == 0 {
		return refuse(ReasonBadAudience, is.cfg.Issuer, "the token has no aud; want %s", quote(strings.Join(is.cfg.Audiences, " ")))
	}
	return refuse(ReasonBadAudience, is.cfg.Issuer, "aud %s does not contain %s", quote(strings.Join(aud, " ")), quote(strings.Join(is.cfg.Audiences, " or ")))
}

// checkTimes checks exp (required when needExp), nbf and iat with the
// issuer's skew and returns the expiry (zero when absent).
func (is *issuer) checkTimes(m map[string]any, needExp bool) (time.Time, error) {
	iss := is.cfg.Issuer
	now := is.f.opts.Now()
	skew := is.cfg.ClockSkew
	num := func(name string) (time.Time, bool, error) {
		raw, ok := m[name]
		if !ok {
			return time.Time{}, false, nil
		}
		var f float64
		switch v := raw.(type) {
		case float64:
			f = v
		case json.Number:
			var err error
			if f, err = v.Float64(); err != nil {
				return time.Time{}, false, refuse(ReasonMalformed, iss, "%s is not a NumericDate", name)
			}
		default:
			return time.Time{}, false, refuse(ReasonMalformed, iss, "%s is not a NumericDate", name)
		}
		if f < 0 || f > 1e11 {
			return time.Time{}, false, refuse(ReasonMalformed, iss, "%s is not a NumericDate", name)
		}
		return time.Unix(0, int64(f*1e9)).UTC(), true, nil
	}
	exp, ok, err := num("exp")
	switch {
	case err != nil:
		return time.Time{}, err
	case !ok && needExp:
		return time.Time{}, refuse(ReasonMalformed, iss, "exp missing")
	case ok && !now.Before(exp.Add(skew)): // RFC 7519 §4.1.4: not accepted "on or after" exp
		return time.Time{}, refuse(ReasonExpired, iss, "expired at %s", exp.Format(time.RFC3339))
	}
	for _, name := range []string{"nbf", "iat"} {
		at, present, err := num(name)
		if err != nil {
			return time.Time{}, err
		}
		if present && now.Add(skew).Before(at) {
			return time.Time{}, refuse(ReasonNotYetValid, iss, "%s %s is in the future", name, at.Format(time.RFC3339))
		}
	}
	return exp, nil
}
