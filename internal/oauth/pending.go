package oauth

// Pending authorization requests as the consent page sees them.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Errors of Pending, PendingFor, Approve and Deny.
var (
	// ErrRequestNotFound: no pending request has this id: it never
	// existed, or was already approved or denied (single use).
	ErrRequestNotFound = errors.New("oauth: no such authorization request")
	// ErrRequestExpired: the request outlived its lifetime (10 minutes by
	// default) before the user decided; the client must start again.
	ErrRequestExpired = errors.New("oauth: the authorization request has expired")
)

// PendingView describes a pending authorization request for the consent
// page.
type PendingView struct {
	ID string

	ClientID   string
	ClientName string // the client's own name (client_name); may be empty
	ClientKind string // store.ClientKind*
	// ClientVerified: an operator registered the client. Dynamically
	// registered clients name themselves: show them as unverified.
	ClientVerified bool
	// ClientHost is the host of a Client ID Metadata Document client_id
	// (draft-ietf-oauth-client-id-metadata-document §8.5: "SHOULD display
	// the hostname"); "" for other clients.
	ClientHost string
	ClientURI  string // the client's home page (https only), may be empty

	RedirectURI  string
	RedirectHost string // where the browser goes next: a host, or "cursor:" for a private-use scheme

	Resource Resource
	Scopes   []ScopeView // every requested scope

	// Filled by PendingFor only:
	Granted      []ScopeView // requested scopes the user allowed before
	NewScopes    []ScopeView // requested scopes the user has not allowed yet
	NeedsConsent bool        // false: everything was allowed before; approve without asking

	Prompt    string
	ExpiresAt time.Time
}

// Pending returns the pending request id for the consent page.
// ErrRequestNotFound or ErrRequestExpired when it cannot be decided any
// more.
func (s *Server) Pending(ctx context.Context, id string) (PendingView, error) {
	q, cl, err := s.pending(ctx, id)
	if err != nil {
		return PendingView{}, err
	}
	res, _ := s.resourceByURL(q.Resource)
	return PendingView{
		ID: q.ID, ClientID: cl.ClientID, ClientName: cl.Name, ClientKind: cl.Kind,
		ClientVerified: ClientVerified(cl), ClientHost: ClientDisplayHost(cl), ClientURI: cl.ClientURI,
		RedirectURI: q.RedirectURI, RedirectHost: redirectHost(q.RedirectURI),
		Resource: res, Scopes: describeScopes(res, q.Scopes), NeedsConsent: true,
		Prompt: q.Prompt, ExpiresAt: q.ExpiresAt,
	}, nil
}

// PendingFor is Pending for the signed-in user u: it also says which
// scopes u allowed this client at this resource before. Consent is asked
// for the new scopes only; when there are none (and the request did not
// ask for prompt=consent), NeedsConsent is false and the page approves at
// once.
func (s *Server) PendingFor(ctx context.Context, id string, u store.User) (PendingView, error) {
	v, err := s.Pending(ctx, id)
	if err != nil {
		return PendingView{}, err
	}
	c, err := s.st.GetOAuthConsent(ctx, u.ID, v.ClientID, v.Resource.URL)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return PendingView{}, fmt.Errorf("oauth: consent: %w", err)
	}
	for _, sc := range v.Scopes {
		if slices.Contains(c.Scopes, sc.Name) {
			v.Granted = append(v.Granted, sc)
		} else {
			v.NewScopes = append(v.NewScopes, sc)
		}
	}
	v.NeedsConsent = len(v.NewScopes) > 0 || v.Prompt != ""
	return v, nil
}

// pending loads a live pending request and its client. An expired one is
// deleted.
func (s *Server) pending(ctx context.Context, id string) (store.OAuthRequest, store.OAuthClient, error) {
	if id == "" || len(id) > 64 {
		return store.OAuthRequest{}, store.OAuthClient{}, ErrRequestNotFound
	}
	q, err := s.st.GetOAuthRequest(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.OAuthRequest{}, store.OAuthClient{}, ErrRequestNotFound
	case err != nil:
		return store.OAuthRequest{}, store.OAuthClient{}, fmt.Errorf("oauth: pending request: %w", err)
	}
	if !s.now().Before(q.ExpiresAt) {
		_, _ = s.st.TakeOAuthRequest(ctx, id)
		return store.OAuthRequest{}, store.OAuthClient{}, ErrRequestExpired
	}
	cl, err := s.opts.Clients.Get(ctx, q.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.OAuthRequest{}, store.OAuthClient{}, ErrRequestNotFound // the client was deleted meanwhile
	case err != nil:
		return store.OAuthRequest{}, store.OAuthClient{}, fmt.Errorf("oauth: pending request: %w", err)
	}
	return q, cl, nil
}
