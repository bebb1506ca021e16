package oauth

// Direct login: the tokens of POST /auth/login ("simple login for simple
// clients": scripts, CI jobs, home-grown MCP clients that can post an
// email and password once and then send a bearer token).
//
// The caller (internal/api) has already checked the password with
// identity.Service.Login (rate limits, no account enumeration,
// login.succeeded / login.failed audited). This file turns the
// authenticated user into ordinary authorization-server state, so nothing
// downstream needs to know the tokens came from a password:
//
//   - a built-in first-party public client, DirectLoginClientID, created
//     on first use (kind static: an operator's client, never reaped; no
//     redirect URIs, so it can never be used at /authorize; grant types
//     refresh_token only, so /token refuses it authorization_code and
//     client_credentials);
//   - a consent of the user for that client and the MCP resource (it shows
//     under Account → Connected apps, where the user can revoke every
//     script's access at once) and a grant per login, with the resource's
//     scopes and the usual absolute lifetime (--refresh-lifetime);
//   - an RFC 9068 access token bound to the resource (aud = the MCP URL,
//     gid = the grant: revocable like any other), and the first refresh
//     token of the grant's family (rotation, replay detection and the
//     grace window of refresh.go apply unchanged at /token with
//     client_id=DirectLoginClientID);
//   - oauth.token_issued audited with grant_type "direct_login".
//
// Password changes, resets and disables revoke these grants like every
// other (RevokeUserGrants).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// DirectLoginClientID is the client_id of the built-in client that owns
// the grants of POST /auth/login. Generated client ids start with
// "client_" and CIMD ids with "https://", so no registration can take it.
const DirectLoginClientID = "mcpgate-direct-login"

// DirectLoginClientName is its name on the Connected apps page.
const DirectLoginClientName = "Simple login (POST /auth/login)"

// GrantDirectLogin is the grant_type recorded in the audit log for tokens
// issued by DirectLogin (not a grant type of the token endpoint).
const GrantDirectLogin = "direct_login"

// DirectLoginTokens is what DirectLogin issues.
type DirectLoginTokens struct {
	AccessToken  string
	ExpiresIn    int64     // seconds
	ExpiresAt    time.Time // of the access token
	RefreshToken string
	Scopes       []string
	ClientID     string // DirectLoginClientID: the client_id for /token and /revoke
	GrantID      string
	Resource     string // the token's audience
}

// DirectLogin issues an access token and a refresh token for the MCP
// resource (the first Resource) to u, a user the caller has just
// authenticated with a password. The scopes are the resource's scopes.
func (s *Server) DirectLogin(ctx context.Context, u store.User) (DirectLoginTokens, error) {
	if u.ID == "" || u.Disabled {
		return DirectLoginTokens{}, errors.New("oauth: direct login: no usable user")
	}
	cl, err := s.directLoginClient(ctx)
	if err != nil {
		return DirectLoginTokens{}, err
	}
	res := s.resources[0]
	scopes := slices.Clone(res.Scopes)
	now := s.now()
	g := store.OAuthGrant{
		ID: store.NewID("grt"), UserID: u.ID, ClientID: cl.ClientID, Resource: res.URL,
		Scopes: scopes, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(s.opts.RefreshAbsolute),
	}
	// No pending request and no authorization code: the consent and the
	// grant are stored in one transaction.
	consent, g, err := s.st.ApproveOAuthRequest(ctx, "", scopes, g)
	if err != nil {
		return DirectLoginTokens{}, fmt.Errorf("oauth: direct login: grant: %w", err)
	}
	refresh, hash := newSecret(refreshTokenPrefix)
	if _, err := s.st.CreateOAuthRefreshToken(ctx, store.OAuthRefreshToken{
		ID: store.NewID("ort"), GrantID: g.ID, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(s.opts.RefreshIdle),
	}); err != nil {
		return DirectLoginTokens{}, fmt.Errorf("oauth: direct login: refresh token: %w", err)
	}
	out, terr, err := s.mintTokens(ctx, g, scopes, refresh, &u, "")
	if terr != nil { // a direct-login grant has no custom claims: cannot be too large
		err = terr
	}
	if err != nil {
		return DirectLoginTokens{}, fmt.Errorf("oauth: direct login: %w", err)
	}
	if err := s.st.TouchOAuthGrant(ctx, g.ID, now); err != nil {
		s.log.WarnContext(ctx, "oauth: recording the use of a direct-login grant failed", "grant_id", g.ID, "err", err)
	}
	s.opts.Clients.NoteUse(ctx, cl)
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthTokenIssued, Outcome: store.OutcomeAllow, UserID: u.ID, CredentialID: g.ID, Resource: res.URL,
		Details: map[string]any{"client_id": cl.ClientID, "grant_type": GrantDirectLogin, "scopes": scopes,
			"consent_id": consent.ID, "refresh_token": true, "expires_at": out.expires.Format(time.RFC3339)},
	})
	return DirectLoginTokens{
		AccessToken: out.resp.AccessToken, ExpiresIn: out.resp.ExpiresIn, ExpiresAt: out.expires,
		RefreshToken: refresh, Scopes: scopes, ClientID: cl.ClientID, GrantID: g.ID, Resource: res.URL,
	}, nil
}

// directLoginClient returns the built-in client, creating it on first use
// (concurrent first uses: one insert wins, the others read it).
func (s *Server) directLoginClient(ctx context.Context) (store.OAuthClient, error) {
	cl, err := s.opts.Clients.Get(ctx, DirectLoginClientID)
	if errors.Is(err, store.ErrNotFound) {
		now := s.now()
		cl = store.OAuthClient{
			ID: store.NewID("ocl"), ClientID: DirectLoginClientID, Kind: store.ClientKindStatic, Name: DirectLoginClientName,
			GrantTypes: []string{GrantRefreshToken}, TokenEndpointAuthMethod: AuthMethodNone,
			ApplicationType: AppTypeNative, CreatedAt: toMillis(now),
		}
		err = s.opts.Clients.st.CreateOAuthClient(ctx, cl)
		switch {
		case err == nil:
			s.opts.Audit.Record(ctx, audit.Event{
				Time: now, Type: EventClientCreated, Outcome: store.OutcomeAllow, CredentialID: cl.ID,
				Details: clientDetails(cl, map[string]any{"actor": "system", "built_in": true}),
			})
			return cl, nil
		case errors.Is(err, store.ErrConflict):
			cl, err = s.opts.Clients.Get(ctx, DirectLoginClientID)
		}
	}
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("oauth: direct login client: %w", err)
	}
	// Nobody else can create this client_id; still, never mint for a row
	// that is not the built-in public client.
	if cl.Kind != store.ClientKindStatic || !cl.Public() || len(cl.RedirectURIs) > 0 || cl.ClientID != DirectLoginClientID {
		return store.OAuthClient{}, fmt.Errorf("oauth: direct login client: the row for %q is not the built-in client", DirectLoginClientID)
	}
	return cl, nil
}
