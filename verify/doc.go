// Package verify checks the JWT access tokens mcpgate issues (RFC 9068),
// for any Go program: mcpgate itself and MCP servers behind it. It is the
// one JWT verification path of mcpgate.
//
// A Verifier is bound to one issuer and one audience (the resource's
// identifier, RFC 8707): a token minted for another resource is refused,
// never passed through. It accepts only public-key signatures (ES256,
// EdDSA and RS256 by default; never "none", never HMAC), requires the
// at+jwt type, and checks iss (byte for byte), aud, exp, nbf and iat with a
// clock skew. Keys come from a KeySource: a static JWK Set, a remote JWKS
// URL fetched and cached with a rate limit on refreshes, or the issuer's
// own key set in process.
//
//	keys, err := verify.RemoteJWKS("https://auth.example.com/jwks", verify.RemoteOptions{})
//	v, err := verify.New(verify.Options{
//		Issuer:   "https://auth.example.com",
//		Audience: "https://tools.example.com/mcp",
//		Keys:     keys,
//	})
//	claims, err := v.Verify(ctx, token)
//
// Verified tokens are cached until they expire. VerifyCompact returns the
// cached result without allocating; Verify and Compact.Claims materialise
// the full claim set. TokenVerifier plugs a Verifier into the MCP Go SDK's
// auth.RequireBearerToken.
//
// Errors wrap one sentinel each (ErrMalformed, ErrAlgorithm, ErrUnknownKey,
// ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrType,
// ErrKeysUnavailable); Reason turns them into short codes for audit logs.
// Clients should only ever be told "invalid_token".
package verify
