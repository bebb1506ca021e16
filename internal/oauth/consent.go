package oauth

// The user's decision on a pending authorization request (the consent page
// of internal/web calls Approve or Deny), and the authorization response
// (RFC 6749 §4.1.2, RFC 9207 §2).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Approve records that u allows the pending request id: the requested
// scopes join u's consent for the client and resource, a grant with a
// fresh authorization code is stored, and the request is used up (a
// second Approve or Deny gets ErrRequestNotFound). sess is the browser
// session u approves from: the grant keeps the custom claims of that
// sign-in the AccessTokenClaims names, for its access tokens while the
// session lives (claims.go). It returns the URL to send the browser to:
// the client's redirect URI with code, state and iss.
func (s *Server) Approve(ctx context.Context, id string, u store.User, sess store.Session) (string, error) {
	q, cl, err := s.pending(ctx, id)
	if err != nil {
		s.auditPendingRefusal(ctx, id, u, err)
		return "", err
	}
	if u.ID == "" || u.Disabled {
		return "", errors.New("oauth: approve: no usable user")
	}
	before, err := s.st.GetOAuthConsent(ctx, u.ID, q.ClientID, q.Resource)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("oauth: approve: %w", err)
	}
	added := []string{} // not nil: the user decided on the page
	for _, sc := range q.Scopes {
		if !slices.Contains(before.Scopes, sc) {
			added = append(added, sc)
		}
	}
	return s.issueCode(ctx, q.ID, q, u, sess, cl, added)
}

// Deny records that u refused the pending request id and returns the URL
// that tells the client: its redirect URI with error=access_denied (RFC
// 6749 §4.1.2.1: "The resource owner or authorization server denied the
// request"), state and iss.
func (s *Server) Deny(ctx context.Context, id string, u store.User) (string, error) {
	q, cl, err := s.pending(ctx, id)
	if err != nil {
		s.auditPendingRefusal(ctx, id, u, err)
		return "", err
	}
	if _, err := s.st.TakeOAuthRequest(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", ErrRequestNotFound
		}
		return "", fmt.Errorf("oauth: deny: %w", err)
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthConsentDenied, Outcome: store.OutcomeDeny, Reason: audit.ReasonUserDenied,
		UserID: u.ID, Resource: q.Resource,
		Details: map[string]any{"client_id": cl.ClientID, "client_name": cl.Name, "scopes": q.Scopes},
	})
	back := redirectBack{uri: q.RedirectURI, state: q.State, iss: s.opts.Issuer}
	return back.url(url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}}), nil
}

// issueCode stores a grant holding a fresh authorization code for q and
// u (taking the pending request requestID, if any, in the same
// transaction), tied to u's browser session sess with the custom claims
// of that sign-in the setting names, and returns the redirect URL
// carrying the code. added are the scopes this approval adds to the
// consent; nil means no one decided now (consent given before covered the
// request), otherwise the decision is audited as oauth.consent_granted.
func (s *Server) issueCode(ctx context.Context, requestID string, q store.OAuthRequest, u store.User, sess store.Session, cl store.OAuthClient, added []string) (string, error) {
	now := s.now()
	code, hash := newSecret("")
	claims, claimNames := s.grantClaims(sess.Claims)
	if sess.ID == "" {
		claims, claimNames = "", nil // no sign-in to tie them to
	}
	g := store.OAuthGrant{
		ID: store.NewID("grt"), UserID: u.ID, ClientID: cl.ClientID, Resource: q.Resource,
		Scopes: q.Scopes, Nonce: q.Nonce, AuthTime: now, Claims: claims, SessionID: sess.ID,
		CodeHash: hash, CodeChallenge: q.CodeChallenge, RedirectURI: q.RedirectURI, RedirectURIProvided: q.RedirectURIProvided,
		CodeExpiresAt: now.Add(s.opts.CodeTTL),
		CreatedAt:     now, ExpiresAt: now.Add(s.opts.RefreshAbsolute),
	}
	consent, g, err := s.st.ApproveOAuthRequest(ctx, requestID, q.Scopes, g)
	switch {
	case errors.Is(err, store.ErrNotFound) && requestID != "":
		// Decided meanwhile (a double click, another tab), or the client
		// or user vanished.
		return "", ErrRequestNotFound
	case err != nil:
		return "", fmt.Errorf("oauth: issue code: %w", err)
	}
	if added != nil {
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthConsentGranted, Outcome: store.OutcomeAllow, UserID: u.ID, Resource: q.Resource,
			Details: map[string]any{"client_id": cl.ClientID, "client_name": cl.Name, "client_kind": cl.Kind,
				"consent_id": consent.ID, "added_scopes": added, "scopes": consent.Scopes},
		})
	}
	details := map[string]any{"client_id": cl.ClientID, "scopes": q.Scopes, "consent_remembered": added == nil}
	if len(claimNames) > 0 {
		details["claims"] = claimNames // names only: the values are the session's
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthCodeIssued, Outcome: store.OutcomeAllow, UserID: u.ID, CredentialID: g.ID, Resource: q.Resource,
		Details: details,
	})
	back := redirectBack{uri: q.RedirectURI, state: q.State, iss: s.opts.Issuer}
	return back.url(url.Values{"code": {code}}), nil
}

// auditPendingRefusal records a decision on a request that could not be
// decided (expired or unknown).
func (s *Server) auditPendingRefusal(ctx context.Context, id string, u store.User, err error) {
	reason := ""
	switch {
	case errors.Is(err, ErrRequestExpired):
		reason = audit.ReasonRequestExpired
	case errors.Is(err, ErrRequestNotFound):
		reason = audit.ReasonInvalidRequest
	default:
		return
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthAuthorizeRefused, Outcome: store.OutcomeDeny, Reason: reason, UserID: u.ID,
		Details: map[string]any{"request": clip(id, 64), "redirected": false},
	})
}

// RedirectStatus is the status the consent page should redirect with
// (303: the browser follows with GET after a POST).
const RedirectStatus = http.StatusSeeOther
