package oauth

// The token endpoint (RFC 6749 §3.2, OAuth 2.1 §3.2): client
// authentication (Clients.AuthenticateClient: none, client_secret_basic,
// client_secret_post), then one grant per grant_type — authorization_code
// and client_credentials (grants.go), refresh_token (refresh.go).
//
// Responses (RFC 6749 §5.1): JSON with "Cache-Control: no-store";
// errors (§5.2) are JSON {error, error_description}, 400 (401 with a Basic
// challenge for invalid_client).
//
// Refresh tokens. OIDC Core §11 ties refresh tokens to offline_access, but
// MCP clients of every revision expect a refresh token after the code
// exchange and most never ask for offline_access (SEP-2207 only says
// clients MAY). mcpgate therefore issues a refresh token to every client
// whose registration allows the refresh_token grant (AllowsGrant: clients
// registered for authorization_code may refresh, OAuth 2.1 §4.3), whether
// or not offline_access was requested; offline_access is accepted, shown
// on the consent page and recorded, and changes nothing else. Refresh
// tokens rotate on every use, for public and confidential clients alike
// (OAuth 2.1 §4.3.1 requires rotation or sender-constraining for public
// clients; doing it for all keeps one code path and replay detection for
// everyone).

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/tokens"
)

// tokenResponse is the successful response of RFC 6749 §5.1 (with the
// OIDC id_token of OIDC Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
}

// tokenError is a refusal of a token request: the RFC 6749 §5.2 error code
// and description for the client, the precise reason for the audit log.
type tokenError struct {
	code, description, reason string
	grantID, userID           string
	details                   map[string]any
}

func (e *tokenError) Error() string { return e.code + ": " + e.description }

func invalidGrant(reason, desc string) *tokenError {
	return &tokenError{code: "invalid_grant", description: desc, reason: reason}
}

// token serves POST /token.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.backChannel(w, r, "RFC 6749 §3.2")
	if !ok {
		return
	}
	ctx := r.Context()
	form := r.PostForm
	grantType := form.Get("grant_type")
	var (
		resp *tokenResponse
		terr *tokenError
		err  error
	)
	if k := singleValues(form, "resource"); k != "" {
		terr = &tokenError{code: "invalid_request", description: "the " + k + " parameter appears more than once", reason: audit.ReasonInvalidRequest}
	} else {
		switch grantType {
		case GrantAuthorizationCode:
			resp, terr, err = s.exchangeCode(ctx, cl, form)
		case GrantRefreshToken:
			resp, terr, err = s.refresh(ctx, cl, form)
		case GrantClientCredentials:
			resp, terr, err = s.clientCredentials(ctx, cl, form)
		case "":
			terr = &tokenError{code: "invalid_request", description: "grant_type is required", reason: audit.ReasonInvalidRequest}
		default:
			terr = &tokenError{code: "unsupported_grant_type", description: "supported grant types: authorization_code, refresh_token, client_credentials", reason: audit.ReasonUnsupportedGrantType}
		}
	}
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if terr != nil {
		d := map[string]any{"client_id": cl.ClientID, "grant_type": clip(grantType, 64), "error": terr.code}
		for k, v := range terr.details {
			d[k] = v
		}
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthTokenRefused, Outcome: store.OutcomeDeny, Reason: terr.reason,
			UserID: terr.userID, CredentialID: terr.grantID, Details: d,
		})
		httpx.WriteOAuthError(w, http.StatusBadRequest, terr.code, terr.description)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// checkResourceParam applies RFC 8707 §2.2 at the token endpoint: a
// resource parameter, when present, must name the resource the grant is
// for (mcpgate binds one resource per grant); "invalid_target" otherwise.
func (s *Server) checkResourceParam(values []string, grantResource string) *tokenError {
	if len(values) == 0 {
		return nil
	}
	if len(values) > 1 {
		return &tokenError{code: "invalid_target", description: "request one resource at a time", reason: audit.ReasonInvalidTarget}
	}
	res, ok := s.resourceByURL(values[0])
	if !ok {
		return &tokenError{code: "invalid_target", description: "this authorization server does not issue tokens for that resource", reason: audit.ReasonInvalidTarget,
			details: map[string]any{"resource": clip(values[0], 300)}}
	}
	if res.URL != grantResource {
		return &tokenError{code: "invalid_target", description: "the resource differs from the one the user authorized", reason: audit.ReasonResourceMismatch,
			details: map[string]any{"resource": clip(values[0], 300)}}
	}
	return nil
}

// narrowScopes applies the scope parameter of a refresh request (RFC 6749
// §6: "MUST NOT include any scope not originally granted").
func narrowScopes(raw string, given bool, granted []string) ([]string, *tokenError) {
	if !given || strings.TrimSpace(raw) == "" {
		return granted, nil
	}
	var out []string
	for _, sc := range strings.Split(raw, " ") {
		if sc == "" {
			continue
		}
		if !slices.Contains(granted, sc) {
			return nil, &tokenError{code: "invalid_scope", description: "scope " + quoteURI(clip(sc, 100)) + " was not granted", reason: audit.ReasonInvalidScope}
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// issued is what one successful grant hands out.
type issued struct {
	resp    *tokenResponse
	expires time.Time
	claims  []string // names of the custom claims in the access token
	// claimsDropped: this token is the first without the grant's custom
	// claims because their sign-in ended (ClaimsDroppedSessionEnded);
	// "" otherwise.
	claimsDropped string
}

// mintTokens issues the access token (with the grant's custom claims
// while their sign-in lives, claims.go) and, for user grants with openid,
// the ID token of grant g with scopes, and the refresh token refresh. A
// token that would be too large is a *tokenError (token_too_large), and g
// is revoked: its claims cannot change, so it could never yield a token.
func (s *Server) mintTokens(ctx context.Context, g store.OAuthGrant, scopes []string, refresh string, user *store.User, nonce string) (issued, *tokenError, error) {
	tc, err := s.tokenClaims(ctx, g)
	if err != nil {
		return issued{}, nil, err
	}
	extra, names := tc.extra, tc.names
	at, exp, err := s.opts.Tokens.MintAccessToken(ctx, tokens.AccessClaims{
		Subject: g.UserID, ClientID: g.ClientID, Audience: g.Resource, Scopes: scopes, GrantID: g.ID, Extra: extra,
	})
	if errors.Is(err, tokens.ErrTokenTooLarge) {
		s.log.ErrorContext(ctx, "oauth: an access token with the grant's custom claims would be too large; the grant is revoked. Copy fewer or smaller claims (--access-token-claims)",
			"grant_id", g.ID, "claims", names, "err", err)
		if err := s.revokeGrant(ctx, g.ID, audit.ReasonTokenTooLarge); err != nil {
			return issued{}, nil, err
		}
		return issued{}, &tokenError{code: "invalid_grant", reason: audit.ReasonTokenTooLarge, grantID: g.ID, userID: g.UserID,
			description: "the access token would be larger than 8 KiB with the custom claims of this sign-in, so none is issued and this authorization is revoked; ask the administrator to copy fewer claims into tokens (--access-token-claims)",
			details:     map[string]any{"claims": names}}, nil
	}
	if err != nil {
		return issued{}, nil, err
	}
	resp := &tokenResponse{
		AccessToken: at, TokenType: "Bearer", ExpiresIn: max(int64(exp.Sub(s.now()).Round(time.Second)/time.Second), 1),
		RefreshToken: refresh, Scope: strings.Join(scopes, " "),
	}
	if user != nil && slices.Contains(scopes, ScopeOpenID) {
		idc := tokens.IDClaims{Subject: user.ID, ClientID: g.ClientID, Nonce: nonce, AuthTime: g.AuthTime}
		// OIDC Core §5.4: email and profile scopes request those claims.
		if slices.Contains(scopes, ScopeEmail) {
			idc.Email, idc.EmailVerified = user.Email, false
		}
		if slices.Contains(scopes, ScopeProfile) {
			idc.Name = user.DisplayName
		}
		if s.opts.IDTokenRoles {
			if idc.Roles, err = s.idTokenRoles(ctx, *user, g); err != nil {
				return issued{}, nil, err
			}
		}
		if resp.IDToken, err = s.opts.Tokens.MintIDToken(ctx, idc); err != nil {
			return issued{}, nil, err
		}
	}
	out := issued{resp: resp, expires: exp, claims: names}
	if tc.ended {
		// After minting: the first token without the claims is the one
		// whose audit event says they were dropped.
		out.claimsDropped = s.dropEndedClaims(ctx, g)
	}
	return out, nil, nil
}

// withClaims adds to audit details the names of the custom claims a token
// carries (names only: values are the sign-in's, and details stay small),
// or that it is the first without them (claims_dropped).
func withClaims(details map[string]any, out issued) map[string]any {
	if len(out.claims) > 0 {
		details["claims"] = out.claims
	}
	if out.claimsDropped != "" {
		details["claims_dropped"] = out.claimsDropped
	}
	return details
}

// grantUser loads the user of a grant; a missing or disabled user is a
// refusal (invalid_grant), not an error.
func (s *Server) grantUser(ctx context.Context, g store.OAuthGrant) (*store.User, *tokenError, error) {
	if g.UserID == "" {
		return nil, nil, nil
	}
	u, err := s.user(ctx, g.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &tokenError{code: "invalid_grant", description: "the user of this grant no longer exists", reason: audit.ReasonUnknown, grantID: g.ID}, nil
	case err != nil:
		return nil, nil, err
	case u.Disabled:
		return nil, &tokenError{code: "invalid_grant", description: "the user's account is disabled", reason: audit.ReasonDisabledUser, grantID: g.ID, userID: u.ID}, nil
	}
	return &u, nil, nil
}

// revokeGrant revokes g for reason (a replay, a failed check on a burnt
// code) and forgets it in the GrantActive cache.
func (s *Server) revokeGrant(ctx context.Context, id, reason string) error {
	_, _, err := s.st.RevokeOAuthGrant(ctx, id, s.now(), reason)
	s.grants.evict(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// user loads a user by id through the identity service.
func (s *Server) user(ctx context.Context, id string) (store.User, error) {
	if id == "" || strings.Contains(id, "@") { // an id, never an email
		return store.User{}, store.ErrNotFound
	}
	return s.opts.Users.Get(ctx, id)
}
