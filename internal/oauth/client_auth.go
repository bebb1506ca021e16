package oauth

// This file authenticates clients at the token, revocation and
// introspection endpoints (RFC 6749 §2.3, OAuth 2.1 §2.4):
//
//   - "none": a public client sends only its client_id in the body; PKCE
//     (checked by the token endpoint) is what binds it;
//   - "client_secret_basic": RFC 6749 §2.3.1, HTTP Basic where "the client
//     identifier is encoded using the "application/x-www-form-urlencoded"
//     encoding algorithm …, and the encoded value is used as the username;
//     the client password is encoded using the same algorithm and used as
//     the password";
//   - "client_secret_post": client_id and client_secret in the body; "The
//     parameters can only be transmitted in the request-body and MUST NOT
//     be included in the request URI."
//
// RFC 6749 §2.3: "The client MUST NOT use more than one authentication
// method in each request." A confidential client may use either secret
// method, whichever it registered (both prove the same secret).
//
// Secrets are 256-bit random values stored as SHA-256; the presented
// secret is hashed once and compared in constant time. No password hash
// (bcrypt, argon2) runs on this path: it would cap the token endpoint at a
// few hundred requests per second and buys nothing for a random secret.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
)

// BasicRealm is the realm of the Basic challenge sent with invalid_client.
const BasicRealm = "mcpgate"

// ClientAuthError is a refused client authentication, answered as an RFC
// 6749 §5.2 error by Write.
type ClientAuthError struct {
	Code        string // "invalid_client" or "invalid_request"
	Description string // safe to send to the client
	Reason      string // audit reason: unknown_client, bad_secret, missing_secret, multiple_methods, …
	ClientID    string // as presented, if any
}

func (e *ClientAuthError) Error() string { return e.Code + ": " + e.Description }

// Status is the HTTP status of the error: 401 for invalid_client, 400
// otherwise.
func (e *ClientAuthError) Status() int {
	if e.Code == "invalid_client" {
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

// Write answers the error. RFC 6749 §5.2, invalid_client: "If the client
// attempted to authenticate via the "Authorization" request header field,
// the authorization server MUST respond with an HTTP 401 (Unauthorized)
// status code and include the WWW-Authenticate response header field
// matching the authentication scheme used by the client." Every 401 here
// carries the Basic challenge (RFC 9110 §15.5.2 requires a challenge on
// every 401, and Basic is the one scheme mcpgate accepts).
func (e *ClientAuthError) Write(w http.ResponseWriter) {
	if e.Status() == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+BasicRealm+`", charset="UTF-8"`)
	}
	httpx.WriteOAuthError(w, e.Status(), e.Code, e.Description)
}

// Client authentication methods as AuthenticateClient reports them.
const (
	methodNone  = AuthMethodNone
	methodBasic = AuthMethodClientSecretBasic
	methodPost  = AuthMethodClientSecretPost
)

// AuthenticateClient identifies and authenticates the client of a token,
// revocation or introspection request (an application/x-www-form-urlencoded
// POST; it calls r.ParseForm). It returns the client, or a
// *ClientAuthError to answer with its Write method, or another error when
// something failed inside (answer 500). Refusals are audited as
// client.auth_failed; a success notes the client's use.
//
// A Client ID Metadata Document client is authenticated from its cached
// document even when the cache lifetime is over (a refresh must not fail
// because the client's site is down); it is fetched only when it was never
// seen.
func (c *Clients) AuthenticateClient(ctx context.Context, r *http.Request) (store.OAuthClient, error) {
	cl, method, aerr, err := c.authenticate(ctx, r)
	if err != nil {
		return store.OAuthClient{}, err
	}
	if aerr != nil {
		c.rec.Record(ctx, audit.Event{
			Type: EventClientAuthFailed, Outcome: store.OutcomeDeny, Reason: aerr.Reason,
			Details: map[string]any{"client_id": truncate(aerr.ClientID, 300), "method": method, "error": aerr.Code},
		})
		return store.OAuthClient{}, aerr
	}
	c.NoteUse(ctx, cl)
	return cl, nil
}

func (c *Clients) authenticate(ctx context.Context, r *http.Request) (cl store.OAuthClient, method string, aerr *ClientAuthError, err error) {
	invalidRequest := func(reason, desc, id string) (store.OAuthClient, string, *ClientAuthError, error) {
		return store.OAuthClient{}, method, &ClientAuthError{Code: "invalid_request", Description: desc, Reason: reason, ClientID: id}, nil
	}
	invalidClient := func(reason, desc, id string) (store.OAuthClient, string, *ClientAuthError, error) {
		return store.OAuthClient{}, method, &ClientAuthError{Code: "invalid_client", Description: desc, Reason: reason, ClientID: id}, nil
	}
	if r.URL.Query().Has("client_secret") {
		return invalidRequest("secret_in_url", "client credentials must not be sent in the URL", "")
	}
	if err := r.ParseForm(); err != nil {
		return invalidRequest("malformed", "the request body is not a valid form", "")
	}
	form := r.PostForm
	for _, k := range []string{"client_id", "client_secret"} {
		// RFC 6749 §3.2: "Request and response parameters MUST NOT be
		// included more than once."
		if len(form[k]) > 1 {
			return invalidRequest("malformed", "the "+k+" parameter appears more than once", "")
		}
	}
	bodyID, bodySecret, hasBodySecret := form.Get("client_id"), form.Get("client_secret"), form.Has("client_secret")
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return invalidRequest("malformed", "more than one Authorization header", bodyID)
	}

	var id, secret string
	switch {
	case len(authz) == 1:
		method = methodBasic
		scheme, cred, _ := strings.Cut(strings.TrimSpace(authz[0]), " ")
		if !strings.EqualFold(scheme, "Basic") {
			return invalidClient("unsupported_method", "unsupported client authentication scheme; use HTTP Basic (client_secret_basic)", bodyID)
		}
		if hasBodySecret {
			return invalidRequest("multiple_methods", "the client used more than one authentication method (Authorization header and client_secret)", bodyID)
		}
		var ok bool
		if id, secret, ok = decodeBasic(strings.TrimSpace(cred)); !ok {
			return invalidClient("malformed", "malformed Basic credentials (RFC 6749 §2.3.1: form-urlencoded client_id:client_secret, base64)", bodyID)
		}
		if bodyID != "" && bodyID != id {
			return invalidRequest("client_id_mismatch", "client_id in the body differs from the one in the Authorization header", bodyID)
		}
	case hasBodySecret:
		method = methodPost
		if bodyID == "" {
			return invalidClient("malformed", "client_secret without client_id", "")
		}
		id, secret = bodyID, bodySecret
	default:
		method = methodNone
		if bodyID == "" {
			return invalidClient("missing", "client authentication required: send client_id (public clients) or client credentials", "")
		}
		id = bodyID
	}

	cl, err = c.lookup(ctx, id)
	if err != nil {
		var cerr *ClientError
		if errors.As(err, &cerr) {
			if errors.Is(err, ErrUnknownClient) {
				return invalidClient("unknown_client", "unknown client", id)
			}
			return invalidClient(cerr.Reason, cerr.Description, id)
		}
		return store.OAuthClient{}, method, nil, err
	}
	switch method {
	case methodNone:
		if !cl.Public() {
			return invalidClient("missing_secret", "this client must authenticate with its client secret", id)
		}
	default:
		if cl.Public() {
			return invalidClient("unexpected_secret", "this client is public and has no secret: send only client_id", id)
		}
		sum := sha256.Sum256([]byte(secret))
		if subtle.ConstantTimeCompare(sum[:], cl.SecretHash) != 1 {
			return invalidClient("bad_secret", "client authentication failed", id)
		}
	}
	return cl, method, nil, nil
}

// decodeBasic decodes "base64(urlencode(id):urlencode(secret))" (RFC 6749
// §2.3.1 with RFC 7617).
func decodeBasic(cred string) (id, secret string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", false
	}
	user, pass, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(user); err != nil || id == "" {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(pass); err != nil {
		return "", "", false
	}
	return id, secret, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
