package customauth

// Key-pair mode: instead of a shared secret, the operator's application
// authenticates POST /api/login-requests/{id}/user with a short-lived JWT
// signed by its private key, sent as Authorization: Bearer <JWT>. mcpgate
// holds only the public key(s), so nothing it stores can impersonate the
// application. The assertion is modelled on the JWT client assertions of
// RFC 7523 §3, checked in this order:
//
//   - at most MaxAssertionBytes; a compact JWS whose "alg" is RS256,
//     PS256, ES256, ES384 or EdDSA — never "none", never HMAC, so a public
//     key can never serve as an HMAC secret (RFC 8725 §2.1, §3.1);
//     unknown critical headers refused (RFC 7515 §4.1.11);
//   - the key: by "kid" from the configured keys only (never from the
//     token's jwk, jku, x5u or x5c headers); without a kid, the one
//     configured key that fits "alg"; the key's type must fit "alg";
//   - the signature (§3 item 9);
//   - "login_request_id" equals the id in the path, so an assertion cannot
//     be replayed for another login request;
//   - "aud" is exactly the URL being called,
//     <public URL>/api/login-requests/{id}/user (§3 item 3; one value, as
//     draft-ietf-oauth-rfc7523bis asks, against audience injection). The
//     URL names this one action at this one mcpgate, so the assertion is
//     useless at any other endpoint or instance (RFC 8725 §3.9);
//   - "exp" required and not passed (§3 item 4), "nbf" if present and
//     "iat" (required) not in the future (items 5, 6), each with a 60 s
//     clock skew; exp at most 5 minutes after iat (item 4 lets a server
//     refuse an exp "unreasonably far in the future");
//   - "jti" required (item 7). mcpgate keeps no set of used jti: the
//     assertion is bound to one login request, which accepts one user
//     only, so a replay to the same request is refused anyway (replayed).
//
// "iss" and "sub" (§3 items 1, 2) are not required: exactly one
// application holds the configured keys, so the signature names it, and
// the user's "sub" travels in the body. Every failure is answered with the
// same generic 401; the precise cause goes to the audit record only.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/verify"
)

// Limits of assertions.
const (
	MaxAssertionBytes    = 8 << 10
	MaxAssertionLifetime = 5 * time.Minute
	AssertionClockSkew   = 60 * time.Second
)

// ReasonBadAssertion is the refusal reason (and the caller's "error") of a
// refused assertion; the audit details say why, under "assertion", with
// one of the Assertion* causes.
const ReasonBadAssertion = "bad_assertion"

// Causes of a refused assertion (audit detail "assertion").
const (
	AssertionMissing         = "missing"           // no single Authorization: Bearer header
	AssertionMalformed       = "malformed"         // not a compact JWS, bad JSON, a required claim missing or ill-typed
	AssertionBadAlgorithm    = "bad_algorithm"     // alg not allowed (none, HS256, …) or not fitting the key
	AssertionUnknownKID      = "unknown_kid"       // no configured key has the kid (or, without a kid, several could)
	AssertionBadSignature    = "bad_signature"     // the signature does not verify
	AssertionWrongRequest    = "wrong_request"     // login_request_id is another request's
	AssertionWrongAudience   = "wrong_audience"    // aud is not exactly this endpoint's URL
	AssertionExpired         = "expired"           // exp has passed (beyond the skew)
	AssertionNotYetValid     = "not_yet_valid"     // iat or nbf in the future (beyond the skew)
	AssertionLifetimeTooLong = "lifetime_too_long" // exp more than 5 minutes after iat
)

// assertionAlgs are the accepted JWS algorithms; which one a key takes is
// decided by its type (verify.FindKey).
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

// assertionVerifier is the appAuth of key-pair mode.
type assertionVerifier struct {
	keys    []verify.PublicKey
	baseURL string // mcpgate's public URL, without a trailing slash
	now     func() time.Time
}

func newAssertionVerifier(keys []verify.PublicKey, baseURL string, now func() time.Time) (*assertionVerifier, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("customauth.New: BaseURL %q must be mcpgate's absolute public URL (it is the assertions' audience)", baseURL)
	}
	// NewStaticKeySet refuses keys no algorithm could verify with; each key
	// must also fit one of the assertion algorithms.
	if _, err := verify.NewStaticKeySet(keys...); err != nil {
		return nil, fmt.Errorf("customauth.New: %w", err)
	}
	for _, k := range keys {
		if !slices.ContainsFunc(assertionAlgs, func(a jose.SignatureAlgorithm) bool { return fits(k, string(a)) }) {
			return nil, fmt.Errorf("customauth.New: key %q cannot sign login assertions (RSA, ECDSA P-256 or P-384, or Ed25519)", k.KeyID)
		}
	}
	return &assertionVerifier{keys: keys, baseURL: strings.TrimRight(baseURL, "/"), now: now}, nil
}

// fits reports whether k is of the type (and JWK alg) that alg needs.
func fits(k verify.PublicKey, alg string) bool {
	_, ok := verify.FindKey([]verify.PublicKey{k}, "", alg)
	return ok
}

// audience is the "aud" an assertion for login request id must carry.
func (v *assertionVerifier) audience(id string) string {
	return v.baseURL + "/api/login-requests/" + url.PathEscape(id) + "/user"
}

func (v *assertionVerifier) authenticate(r *http.Request, id string) *authFailure {
	bad := v.check(r, id)
	if bad == nil {
		return nil
	}
	return &authFailure{
		reason:  ReasonBadAssertion,
		message: "send a valid login assertion, a JWT signed with your application's private key, as Authorization: Bearer <JWT> (see docs/custom-login.md)",
		details: map[string]any{"assertion": bad.cause, "error": bad.detail},
	}
}

// assertionError is a refused assertion: a cause (Assertion*) and a detail
// for the audit record (attacker-chosen values quoted and clipped).
type assertionError struct{ cause, detail string }

func refuseAssertion(cause, format string, args ...any) *assertionError {
	return &assertionError{cause: cause, detail: fmt.Sprintf(format, args...)}
}

// assertionClaims are the claims read from a verified assertion.
type assertionClaims struct {
	jwt.Claims
	LoginRequestID string `json:"login_request_id"`
}

// check verifies the request's assertion for login request id.
func (v *assertionVerifier) check(r *http.Request, id string) *assertionError {
	token, ok := bearerToken(r)
	switch {
	case !ok || token == "":
		return refuseAssertion(AssertionMissing, "no Authorization: Bearer header")
	case len(token) > MaxAssertionBytes:
		return refuseAssertion(AssertionMalformed, "%d bytes, limit %d", len(token), MaxAssertionBytes)
	}
	tok, err := jwt.ParseSigned(token, assertionAlgs)
	if err != nil {
		if alg, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return refuseAssertion(AssertionBadAlgorithm, "alg %s is not accepted", clip(string(alg.Got)))
		}
		return refuseAssertion(AssertionMalformed, "not a signed JWT: %v", err)
	}
	key, bad := v.key(tok.Headers[0].KeyID, tok.Headers[0].Algorithm)
	if bad != nil {
		return bad
	}
	var cl assertionClaims
	if err := tok.Claims(key.Key, &cl); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return refuseAssertion(AssertionBadSignature, "%s signature does not verify with key %s", tok.Headers[0].Algorithm, clip(key.KeyID))
		}
		return refuseAssertion(AssertionMalformed, "claims: %v", err)
	}
	return v.checkClaims(&cl, id)
}

// key finds the configured key for the header's kid and alg, and says
// precisely why there is none.
func (v *assertionVerifier) key(kid, alg string) (verify.PublicKey, *assertionError) {
	if k, ok := verify.FindKey(v.keys, kid, alg); ok {
		return k, nil
	}
	n := 0 // keys that fit alg
	for _, k := range v.keys {
		if kid != "" && k.KeyID == kid {
			return verify.PublicKey{}, refuseAssertion(AssertionBadAlgorithm, "alg %s does not fit key %s", alg, clip(kid))
		}
		if fits(k, alg) {
			n++
		}
	}
	switch {
	case kid != "":
		return verify.PublicKey{}, refuseAssertion(AssertionUnknownKID, "no configured key has kid %s", clip(kid))
	case n > 1:
		return verify.PublicKey{}, refuseAssertion(AssertionUnknownKID, "no kid, and %d configured keys fit %s: send the kid", n, alg)
	}
	return verify.PublicKey{}, refuseAssertion(AssertionBadAlgorithm, "no configured key fits alg %s", alg)
}

// checkClaims checks the claims of an authentic assertion.
func (v *assertionVerifier) checkClaims(cl *assertionClaims, id string) *assertionError {
	switch {
	case cl.LoginRequestID == "":
		return refuseAssertion(AssertionMalformed, "login_request_id missing")
	case cl.LoginRequestID != id:
		return refuseAssertion(AssertionWrongRequest, "login_request_id names another login request than the path")
	case len(cl.Audience) == 0:
		return refuseAssertion(AssertionMalformed, "aud missing")
	case len(cl.Audience) != 1 || cl.Audience[0] != v.audience(id):
		return refuseAssertion(AssertionWrongAudience, "aud %s, want exactly %s",
			clip(maskID(strings.Join(cl.Audience, " "), id)), clip(maskID(v.audience(id), id)))
	case cl.Expiry == nil || cl.IssuedAt == nil:
		return refuseAssertion(AssertionMalformed, "exp and iat are required")
	case cl.ID == "":
		return refuseAssertion(AssertionMalformed, "jti missing")
	}
	now, exp, iat := v.now(), cl.Expiry.Time(), cl.IssuedAt.Time()
	switch {
	case !now.Before(exp.Add(AssertionClockSkew)): // RFC 7519 §4.1.4: not accepted "on or after" exp
		return refuseAssertion(AssertionExpired, "expired at %s", exp.UTC().Format(time.RFC3339))
	case now.Add(AssertionClockSkew).Before(iat):
		return refuseAssertion(AssertionNotYetValid, "iat %s is in the future", iat.UTC().Format(time.RFC3339))
	case cl.NotBefore != nil && now.Add(AssertionClockSkew).Before(cl.NotBefore.Time()):
		return refuseAssertion(AssertionNotYetValid, "nbf %s is in the future", cl.NotBefore.Time().UTC().Format(time.RFC3339))
	case !exp.After(iat):
		return refuseAssertion(AssertionMalformed, "exp is not after iat")
	case exp.Sub(iat) > MaxAssertionLifetime:
		return refuseAssertion(AssertionLifetimeTooLong, "exp is %s after iat, at most %s is accepted", exp.Sub(iat), MaxAssertionLifetime)
	}
	return nil
}

// maskID replaces login request id in s by "{id}": audit details never
// name a login request by its id (a bearer handle for it while it lives).
func maskID(s, id string) string {
	if id == "" {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, url.PathEscape(id), "{id}"), id, "{id}")
}

// clip quotes an attacker-chosen value for the audit record, cut to 120 bytes.
func clip(s string) string {
	if len(s) > 120 {
		return fmt.Sprintf("%q…", s[:120])
	}
	return fmt.Sprintf("%q", s)
}
