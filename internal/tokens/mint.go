package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/verify"
)

// AccessClaims describe an access token.
type AccessClaims struct {
	// Subject is the user id; "" for client_credentials, where sub
	// becomes the client id (RFC 9068 §2.2).
	Subject string
	// ClientID is the OAuth client the token was issued to. Required.
	ClientID string
	// Audience is the resource the token is for (RFC 8707 resource
	// indicator, e.g. the MCP URL). Required: one token, one resource.
	Audience string
	// Scopes granted (RFC 6749 §3.3 scope-tokens).
	Scopes []string
	// GrantID identifies the grant (consent, refresh-token family or
	// client-credentials grant) the token comes from, carried as "gid" so
	// that revoking the grant can refuse its tokens. Optional.
	GrantID string
	// Extra claims: custom claims copied from the user's sign-in
	// (oauth: --access-token-claims). Names with a protocol meaning
	// (principal.ReservedClaim: iss, sub, aud, exp, nbf, iat, jti,
	// client_id, scope, scp, gid, typ, azp, auth_time, acr, amr, cnf, act,
	// may_act, … in any letter case) are refused: a custom claim must
	// never be read as one of them.
	Extra map[string]any
}

// IDClaims describe an OpenID Connect ID token (OIDC Core §2).
type IDClaims struct {
	Subject       string // the user id. Required.
	ClientID      string // the relying party: the token's audience. Required.
	Nonce         string // the authorization request's nonce, echoed when set
	Email         string // with email_verified, when set
	EmailVerified bool
	Name          string
	AuthTime      time.Time // when the user authenticated; omitted when zero
	// Roles become the "roles" claim, a JSON array, when not nil (an
	// empty list is sent as []); nil: no roles claim.
	Roles []string
}

// MaxAccessTokenBytes is the largest access token MintAccessToken signs:
// the size every verifier of mcpgate's tokens accepts (package verify's
// default, authn's limit). A larger token would be refused by the very
// resource it is for.
const MaxAccessTokenBytes = verify.DefaultMaxTokenBytes

// ErrTokenTooLarge: the access token would be larger than
// MaxAccessTokenBytes (its Extra claims are too large).
var ErrTokenTooLarge = errors.New("tokens: the access token would be larger than the 8 KiB verifiers accept; copy fewer or smaller claims into tokens")

// MintAccessToken returns a signed JWT access token (RFC 9068) and its
// expiry. Header: alg, kid, typ "at+jwt" (§2.1). Claims (§2.2): iss, sub,
// aud, client_id, scope (space-separated, omitted when empty), iat, exp,
// jti (128 random bits), gid when GrantID is set, and Extra.
func (i *Issuer) MintAccessToken(ctx context.Context, c AccessClaims) (string, time.Time, error) {
	if err := checkText("client id", c.ClientID, true); err != nil {
		return "", time.Time{}, err
	}
	if err := checkText("subject", c.Subject, false); err != nil {
		return "", time.Time{}, err
	}
	if err := checkText("grant id", c.GrantID, false); err != nil {
		return "", time.Time{}, err
	}
	if err := checkResource(c.Audience); err != nil {
		return "", time.Time{}, err
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return "", time.Time{}, fmt.Errorf("tokens: invalid scope %q", clip(s))
		}
	}
	claims := make(map[string]any, 10+len(c.Extra))
	for k, v := range c.Extra {
		if principal.ReservedClaim(k) {
			return "", time.Time{}, fmt.Errorf("tokens: claim %q cannot be set through Extra", clip(k))
		}
		claims[k] = v
	}
	now := i.opts.Now()
	iat := now.Unix()
	exp := iat + int64(i.opts.AccessTokenTTL/time.Second)
	sub := c.Subject
	if sub == "" {
		sub = c.ClientID // RFC 9068 §2.2: client_credentials tokens name the client
	}
	claims["iss"] = i.opts.Issuer
	claims["sub"] = sub
	claims["aud"] = c.Audience
	claims["client_id"] = c.ClientID
	claims["iat"] = iat
	claims["exp"] = exp
	claims["jti"] = newJTI()
	if len(c.Scopes) > 0 {
		claims["scope"] = strings.Join(c.Scopes, " ")
	}
	if c.GrantID != "" {
		claims["gid"] = c.GrantID
	}
	s, err := i.view.Load().signer(now)
	if err != nil {
		return "", time.Time{}, err
	}
	tok, err := sign(s, true, claims)
	if err != nil {
		return "", time.Time{}, err
	}
	if len(tok) > MaxAccessTokenBytes {
		// Fail closed: a token its resource refuses is no token.
		return "", time.Time{}, fmt.Errorf("%w (%d bytes)", ErrTokenTooLarge, len(tok))
	}
	return tok, time.Unix(exp, 0).UTC(), nil
}

// MintIDToken returns a signed OpenID Connect ID token (OIDC Core §2,
// §3.1.3.6): iss, sub, aud (the client id), exp, iat, auth_time and nonce
// when known, email, email_verified and name when set, and roles when
// Roles is not nil. Its typ is
// "JWT", so package verify refuses it as an access token (RFC 9068 §4).
func (i *Issuer) MintIDToken(ctx context.Context, c IDClaims) (string, error) {
	if err := checkText("subject", c.Subject, true); err != nil {
		return "", err
	}
	if err := checkText("client id", c.ClientID, true); err != nil {
		return "", err
	}
	for _, f := range []struct{ name, v string }{{"nonce", c.Nonce}, {"email", c.Email}, {"name", c.Name}} {
		if err := checkText(f.name, f.v, false); err != nil {
			return "", err
		}
	}
	now := i.opts.Now()
	iat := now.Unix()
	claims := map[string]any{
		"iss": i.opts.Issuer,
		"sub": c.Subject,
		"aud": c.ClientID,
		"iat": iat,
		"exp": iat + int64(i.opts.IDTokenTTL/time.Second),
	}
	if !c.AuthTime.IsZero() {
		claims["auth_time"] = c.AuthTime.Unix()
	}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	if c.Email != "" {
		claims["email"] = c.Email
		claims["email_verified"] = c.EmailVerified
	}
	if c.Name != "" {
		claims["name"] = c.Name
	}
	if c.Roles != nil {
		for _, r := range c.Roles {
			if err := checkText("role", r, true); err != nil {
				return "", err
			}
		}
		claims["roles"] = c.Roles
	}
	s, err := i.view.Load().signer(now)
	if err != nil {
		return "", err
	}
	return sign(s, false, claims)
}

func sign(s *keySigner, access bool, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("tokens: encode claims: %w", err)
	}
	signer := s.id
	if access {
		signer = s.access
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("tokens: sign with key %s: %w", s.kid, err)
	}
	return jws.CompactSerialize()
}

func newJTI() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkText refuses values that would not survive JSON unchanged (invalid
// UTF-8 is silently replaced by encoding/json) or carry control characters.
func checkText(what, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("tokens: %s is required", what)
	case !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("tokens: %s contains invalid UTF-8 or control characters", what)
	case len(v) > 2048:
		return fmt.Errorf("tokens: %s is longer than 2048 bytes", what)
	}
	return nil
}

// checkResource: RFC 8707 §2: a resource indicator "MUST be an absolute
// URI" and "MUST NOT include a fragment component".
func checkResource(r string) error {
	if err := checkText("audience", r, true); err != nil {
		return err
	}
	u, err := url.Parse(r)
	if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(r, "#") {
		return errors.New("tokens: the audience must be an absolute URI without fragment (RFC 8707 §2)")
	}
	return nil
}

// validScopeToken: RFC 6749 §3.3, scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}
