package oauth

// The authorization_code grant (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3, RFC
// 7636 §4.5-4.6) and the client_credentials grant (RFC 6749 §4.4).

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// exchangeCode redeems an authorization code.
//
// RFC 6749 §4.1.2: "The client MUST NOT use the authorization code more
// than once. If an authorization code is used more than once, the
// authorization server MUST deny the request and SHOULD revoke (when
// possible) all tokens previously issued based on that authorization
// code." The code is burnt by the first redemption attempt, whatever its
// outcome (the store marks it redeemed atomically); a second attempt is a
// replay and revokes the grant — the refresh-token family and, through
// "gid", every access token issued from the code.
//
// A first attempt that fails a check (wrong client, PKCE, redirect URI,
// expiry) also revokes the grant: a code presented with a wrong verifier
// was intercepted or forged, and the grant must not yield tokens later.
func (s *Server) exchangeCode(ctx context.Context, cl store.OAuthClient, form url.Values) (*tokenResponse, *tokenError, error) {
	code := form.Get("code")
	if code == "" {
		return nil, &tokenError{code: "invalid_request", description: "code is required", reason: audit.ReasonInvalidRequest}, nil
	}
	if !AllowsGrant(cl, GrantAuthorizationCode) {
		return nil, &tokenError{code: "unauthorized_client", description: "this client is not registered for the authorization_code grant", reason: audit.ReasonUnauthorizedClient}, nil
	}
	now := s.now()
	g, err := s.st.RedeemOAuthCode(ctx, hashSecret(code), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidGrant(audit.ReasonUnknownCode, "the authorization code is invalid or expired"), nil
	case errors.Is(err, store.ErrReplayed):
		if err := s.revokeGrant(ctx, g.ID, audit.ReasonCodeReplayed); err != nil {
			return nil, nil, err
		}
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthCodeReplayed, Outcome: store.OutcomeDeny, Reason: audit.ReasonCodeReplayed,
			UserID: g.UserID, CredentialID: g.ID, Resource: g.Resource,
			Details: map[string]any{"client_id": cl.ClientID, "grant_client_id": g.ClientID, "redeemed_at": g.CodeRedeemedAt.Format(time.RFC3339Nano), "grant_revoked": true},
		})
		terr := invalidGrant(audit.ReasonCodeReplayed, "the authorization code was already used")
		terr.grantID, terr.userID = g.ID, g.UserID
		return nil, terr, nil
	case err != nil:
		return nil, nil, err
	}
	fail := func(reason, desc string) (*tokenResponse, *tokenError, error) {
		if err := s.revokeGrant(ctx, g.ID, reason); err != nil {
			return nil, nil, err
		}
		terr := invalidGrant(reason, desc)
		terr.grantID, terr.userID = g.ID, g.UserID
		return nil, terr, nil
	}
	switch {
	// RFC 6749 §4.1.3: "ensure that the authorization code was issued to
	// the authenticated confidential client, or if the client is public,
	// ensure that the code was issued to "client_id" in the request".
	case g.ClientID != cl.ClientID:
		return fail(audit.ReasonClientMismatch, "the authorization code was issued to another client")
	case !now.Before(g.CodeExpiresAt):
		return fail(audit.ReasonCodeExpired, "the authorization code has expired")
	case !g.RevokedAt.IsZero():
		terr := invalidGrant(audit.ReasonGrantRevoked, "the authorization was revoked")
		terr.grantID, terr.userID = g.ID, g.UserID
		return nil, terr, nil
	// RFC 7636 §4.6: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) == code_challenge.
	case !verifierMatches(form.Get("code_verifier"), g.CodeChallenge):
		return fail(audit.ReasonPKCEFailed, "code_verifier does not match the code_challenge")
	// RFC 6749 §4.1.3: redirect_uri is "REQUIRED, if the "redirect_uri"
	// parameter was included in the authorization request …, and their
	// values MUST be identical".
	case (g.RedirectURIProvided || form.Has("redirect_uri")) && form.Get("redirect_uri") != g.RedirectURI:
		return fail(audit.ReasonRedirectMismatch, "redirect_uri differs from the one of the authorization request")
	}
	if terr := s.checkResourceParam(form["resource"], g.Resource); terr != nil {
		if err := s.revokeGrant(ctx, g.ID, terr.reason); err != nil {
			return nil, nil, err
		}
		terr.grantID, terr.userID = g.ID, g.UserID
		return nil, terr, nil
	}
	user, terr, err := s.grantUser(ctx, g)
	if terr != nil || err != nil {
		return nil, terr, err
	}
	refresh := ""
	if AllowsGrant(cl, GrantRefreshToken) {
		var hash []byte
		refresh, hash = newSecret(refreshTokenPrefix)
		if _, err := s.st.CreateOAuthRefreshToken(ctx, store.OAuthRefreshToken{
			ID: store.NewID("ort"), GrantID: g.ID, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(s.opts.RefreshIdle),
		}); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				// Revoked between redemption and now (a concurrent replay).
				return nil, &tokenError{code: "invalid_grant", description: "the authorization was revoked", reason: audit.ReasonGrantRevoked, grantID: g.ID, userID: g.UserID}, nil
			}
			return nil, nil, err
		}
	}
	out, terr, err := s.mintTokens(ctx, g, g.Scopes, refresh, user, g.Nonce)
	if terr != nil || err != nil {
		return nil, terr, err
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthCodeRedeemed, Outcome: store.OutcomeAllow, UserID: g.UserID, CredentialID: g.ID, Resource: g.Resource,
		Details: map[string]any{"client_id": cl.ClientID},
	})
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthTokenIssued, Outcome: store.OutcomeAllow, UserID: g.UserID, CredentialID: g.ID, Resource: g.Resource,
		Details: withClaims(map[string]any{"client_id": cl.ClientID, "grant_type": GrantAuthorizationCode, "scopes": g.Scopes,
			"refresh_token": refresh != "", "id_token": out.resp.IDToken != "", "expires_at": out.expires.Format(time.RFC3339)}, out),
	})
	return out.resp, nil, nil
}

// verifierMatches checks a PKCE code_verifier against an S256 challenge
// (RFC 7636 §4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "."
// / "_" / "~"; §4.6: compare the transformed verifier).
func verifierMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// clientCredentials serves RFC 6749 §4.4: a confidential client gets an
// access token for itself (no user, sub = client_id, RFC 9068 §2.2), with
// scopes from the resource's scopes, limited to the client's registered
// scopes (a client without registered scopes gets invalid_scope). No refresh token (§4.4.3: "A refresh token SHOULD NOT be
// included"). Each token gets its own grant row, so it can be revoked
// (RFC 7009) or introspected like any other, and it goes away with its
// client.
func (s *Server) clientCredentials(ctx context.Context, cl store.OAuthClient, form url.Values) (*tokenResponse, *tokenError, error) {
	if cl.Public() || !AllowsGrant(cl, GrantClientCredentials) {
		return nil, &tokenError{code: "unauthorized_client", description: "this client may not use the client_credentials grant (it must be confidential and registered for it)", reason: audit.ReasonUnauthorizedClient}, nil
	}
	res := s.resources[0]
	switch rs := form["resource"]; {
	case len(rs) > 1:
		return nil, &tokenError{code: "invalid_target", description: "request one resource at a time", reason: audit.ReasonInvalidTarget}, nil
	case len(rs) == 1:
		var ok bool
		if res, ok = s.resourceByURL(rs[0]); !ok {
			return nil, &tokenError{code: "invalid_target", description: "this authorization server does not issue tokens for that resource", reason: audit.ReasonInvalidTarget,
				details: map[string]any{"resource": clip(rs[0], 300)}}, nil
		}
	case len(s.resources) > 1:
		return nil, &tokenError{code: "invalid_target", description: "name the resource (RFC 8707 resource parameter)", reason: audit.ReasonInvalidTarget}, nil
	}
	if len(cl.Scopes) == 0 {
		// No user approves these tokens: the operator's scope list is the
		// only bound, so a client without one gets nothing (never "all
		// scopes").
		return nil, &tokenError{code: "invalid_scope", description: "this client has no registered scopes; register the client with --scopes for client_credentials", reason: audit.ReasonInvalidScope}, nil
	}
	var allowed []string
	for _, sc := range res.Scopes {
		if slices.Contains(cl.Scopes, sc) {
			allowed = append(allowed, sc)
		}
	}
	scopes, terr := narrowScopes(form.Get("scope"), form.Has("scope"), allowed)
	if terr != nil {
		terr.description = "scope not available to this client: " + terr.description
		return nil, terr, nil
	}
	now := s.now()
	g := store.OAuthGrant{
		ID: store.NewID("grt"), ClientID: cl.ClientID, Resource: res.URL, Scopes: scopes,
		CreatedAt: now, ExpiresAt: now.Add(s.opts.Tokens.AccessTokenTTL() + time.Minute),
	}
	if err := s.st.CreateOAuthGrant(ctx, g); err != nil {
		return nil, nil, err
	}
	out, terr, err := s.mintTokens(ctx, g, scopes, "", nil, "")
	if terr != nil || err != nil {
		return nil, terr, err
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthTokenIssued, Outcome: store.OutcomeAllow, CredentialID: g.ID, Resource: res.URL,
		Details: map[string]any{"client_id": cl.ClientID, "grant_type": GrantClientCredentials, "scopes": scopes, "expires_at": out.expires.Format(time.RFC3339)},
	})
	return out.resp, nil, nil
}
