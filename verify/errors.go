package verify

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Verify returns wraps exactly one of them
// (test with errors.Is); the message adds detail for logs and audit
// records and never contains the token. Reason maps them to short codes.
var (
	// ErrMalformed: not a compact JWS, bad base64url or JSON, an
	// oversized token, an unsupported critical header, or a required claim
	// missing or of the wrong type.
	ErrMalformed = errors.New("malformed token")
	// ErrAlgorithm: the "alg" header is not one the verifier allows
	// ("none" and HMAC algorithms never are), or does not fit the key.
	ErrAlgorithm = errors.New("signature algorithm not allowed")
	// ErrUnknownKey: the key source has no key with the token's "kid".
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("invalid signature")
	// ErrExpired: "exp" has passed (beyond the clock skew).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: "nbf" or "iat" lies in the future (beyond the clock skew).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrIssuer: "iss" is not byte-identical to the expected issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrAudience: "aud" does not contain this resource (a token minted
	// for another resource: no token passthrough).
	ErrAudience = errors.New("wrong audience")
	// ErrType: the "typ" header is not at+jwt (RFC 9068 §4), e.g. an ID
	// token presented as an access token.
	ErrType = errors.New("not a JWT access token (typ must be at+jwt)")
	// ErrKeysUnavailable: the key source could not be read (JWKS endpoint
	// down). Not the token's fault: answer 503, not 401.
	ErrKeysUnavailable = errors.New("signing keys unavailable")
)

// Reason returns a short, stable code for err, for audit records and
// metrics: "malformed", "algorithm", "unknown_key", "bad_signature",
// "expired", "not_yet_valid", "wrong_issuer", "wrong_audience",
// "wrong_type", "keys_unavailable"; "" for nil and "error" for anything
// else.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrAlgorithm):
		return "algorithm"
	case errors.Is(err, ErrUnknownKey):
		return "unknown_key"
	case errors.Is(err, ErrSignature):
		return "bad_signature"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrNotYetValid):
		return "not_yet_valid"
	case errors.Is(err, ErrIssuer):
		return "wrong_issuer"
	case errors.Is(err, ErrAudience):
		return "wrong_audience"
	case errors.Is(err, ErrType):
		return "wrong_type"
	case errors.Is(err, ErrKeysUnavailable):
		return "keys_unavailable"
	}
	return "error"
}

// fail wraps a sentinel with detail. Attacker-chosen values in the detail
// are quoted and cut short by quoteClip.
func fail(sentinel error, format string, args ...any) error {
	return fmt.Errorf("verify: %w: %s", sentinel, fmt.Sprintf(format, args...))
}

// quoteClip quotes s for an error message, cut to 80 bytes.
func quoteClip(s string) string {
	const limit = 80
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
