package oauth

// This file implements dynamic client registration (RFC 7591 §3), kept for
// MCP clients of the 2025 revisions ("Dynamic Client Registration is
// deprecated … remains available for backwards compatibility"), and the
// client metadata rules it shares with Client ID Metadata Documents.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
)

// RFC 7591 §3.2.2 error codes.
const (
	errInvalidRedirectURI    = "invalid_redirect_uri"
	errInvalidClientMetadata = "invalid_client_metadata"
)

// Limits on display metadata.
const (
	maxNameLen   = 200
	maxURILen    = 2000
	maxScopes    = 64
	maxSWTextLen = 200
)

// clientMetadata is registration metadata after validation: what mcpgate
// registers (RFC 7591 §3.2.1: "The authorization server MAY reject or
// replace any of the client's requested metadata values submitted during
// the registration and substitute them with suitable values").
type clientMetadata struct {
	RedirectURIs            []string
	TokenEndpointAuthMethod string
	GrantTypes              []string
	ResponseTypes           []string
	ApplicationType         string
	Name                    string
	ClientURI, LogoURI      string
	Scopes                  []string
	SoftwareID              string
	SoftwareVersion         string
}

// metadataError is a refusal of client metadata (RFC 7591 §3.2.2).
type metadataError struct {
	code        string // errInvalidRedirectURI or errInvalidClientMetadata
	reason      string // audit reason
	description string
}

func badMetadata(reason, description string) *metadataError {
	return &metadataError{code: errInvalidClientMetadata, reason: reason, description: description}
}

func badRedirect(description string) *metadataError {
	return &metadataError{code: errInvalidRedirectURI, reason: errInvalidRedirectURI, description: description}
}

// metadataSource says where metadata comes from; the rules differ a little.
type metadataSource int

const (
	fromRegistration metadataSource = iota // RFC 7591 request body
	fromDocument                           // Client ID Metadata Document
)

// parseClientMetadata validates client metadata JSON. For a document,
// documentURL is the URL it was fetched from. Unknown members are ignored
// (RFC 7591 §2: "The authorization server MUST ignore any client metadata
// sent by the client that it does not understand"); duplicate members are
// refused, since two readers could pick different ones.
func parseClientMetadata(body []byte, src metadataSource, documentURL string, supportedScopes []string) (clientMetadata, *metadataError) {
	m, msg := decodeObject(body)
	if msg != "" {
		return clientMetadata{}, badMetadata("malformed_json", msg)
	}
	var md clientMetadata
	var err *metadataError

	if src == fromDocument {
		// draft-ietf-oauth-client-id-metadata-document §4: "The Client ID
		// Metadata Document MUST contain a client_id property whose value
		// MUST match the Client Identifier URL, which MUST also match the
		// URL that the authorization server used to fetch the document;
		// comparisons MUST be made using simple string comparison".
		id, present, msg := getString(m, "client_id")
		switch {
		case msg != "":
			return clientMetadata{}, badMetadata("invalid_metadata", msg)
		case !present:
			return clientMetadata{}, badMetadata("client_id_mismatch", "the metadata document has no client_id")
		case id != documentURL:
			return clientMetadata{}, badMetadata("client_id_mismatch",
				"the metadata document's client_id "+quoteURI(id)+" is not the URL it was fetched from, "+quoteURI(documentURL))
		}
		// §4.1: "the client_secret and client_secret_expires_at properties
		// MUST NOT be used".
		for _, k := range []string{"client_secret", "client_secret_expires_at"} {
			if _, ok := m[k]; ok {
				return clientMetadata{}, badMetadata("secret_in_document", "a metadata document must not contain "+k)
			}
		}
	}

	if md.TokenEndpointAuthMethod, err = parseAuthMethod(m, src); err != nil {
		return clientMetadata{}, err
	}

	grants, grantsGiven, msg := getStrings(m, "grant_types")
	if msg != "" {
		return clientMetadata{}, badMetadata("invalid_metadata", msg)
	}
	responses, responsesGiven, msg := getStrings(m, "response_types")
	if msg != "" {
		return clientMetadata{}, badMetadata("invalid_metadata", msg)
	}
	if !grantsGiven {
		grants = []string{GrantAuthorizationCode} // RFC 7591 §2 default
	}
	if src == fromRegistration && slices.Contains(grants, GrantClientCredentials) {
		// Open registration must not hand out user-less service clients:
		// anyone could register one and mint tokens without a user. RFC
		// 7591 §3.2.2 lets the server refuse any grant type it will not
		// register.
		return clientMetadata{}, badMetadata("client_credentials_not_allowed",
			"the client_credentials grant cannot be registered dynamically; service clients are registered by the operator with `mcpgate client add --confidential`")
	}
	if src == fromDocument {
		// A document client authenticates with "none": it can use the
		// redirect-based grants only. Other listed grants are dropped
		// rather than failing the client.
		grants = slices.DeleteFunc(slices.Clone(grants), func(g string) bool {
			return g != GrantAuthorizationCode && g != GrantRefreshToken
		})
		if !slices.Contains(grants, GrantAuthorizationCode) {
			return clientMetadata{}, badMetadata("invalid_metadata", "the metadata document does not list the authorization_code grant, the only one a metadata document client can use")
		}
		if responsesGiven {
			if !slices.Contains(responses, "code") {
				return clientMetadata{}, badMetadata("invalid_metadata", `the metadata document's response_types do not include "code"`)
			}
			responses = []string{"code"}
		}
	}
	md.GrantTypes, md.ResponseTypes, msg = checkGrantTypes(grants, responses, responsesGiven, md.TokenEndpointAuthMethod)
	if msg != "" {
		return clientMetadata{}, badMetadata("invalid_metadata", msg)
	}

	appType, _, msg := getString(m, "application_type")
	if msg == "" && appType != "" && appType != AppTypeWeb && appType != AppTypeNative {
		msg = `application_type must be "web" or "native"`
	}
	if msg != "" {
		return clientMetadata{}, badMetadata("invalid_metadata", msg)
	}
	uris, urisGiven, msg := getStrings(m, "redirect_uris")
	if msg != "" {
		return clientMetadata{}, badRedirect(msg)
	}
	switch {
	case slices.Contains(md.GrantTypes, GrantAuthorizationCode):
		// RFC 7591 §2: redirect_uris are required for redirect-based flows.
		if len(uris) == 0 {
			return clientMetadata{}, badRedirect("redirect_uris is required for the authorization_code grant")
		}
		if md.RedirectURIs, md.ApplicationType, msg = validateRedirectURIs(uris, appType); msg != "" {
			return clientMetadata{}, badRedirect(msg)
		}
	case urisGiven && len(uris) > 0:
		return clientMetadata{}, badRedirect("redirect_uris need the authorization_code grant")
	default:
		md.ApplicationType = cmpOr(appType, AppTypeWeb)
	}

	name, _, msg := getString(m, "client_name")
	if msg == "" {
		name = strings.TrimSpace(name)
		msg = checkDisplayText(name, maxNameLen)
	}
	if msg != "" {
		return clientMetadata{}, badMetadata("invalid_metadata", "client_name: "+msg)
	}
	md.Name = name

	// Display URIs: kept only when they are plain https URLs; anything else
	// (javascript:, data:, http:) is dropped rather than shown to users
	// (CIMD §8.6: "only fetch or parse URLs with known and supported URI
	// schemes").
	for _, f := range []struct {
		key string
		dst *string
	}{{"client_uri", &md.ClientURI}, {"logo_uri", &md.LogoURI}} {
		v, _, msg := getString(m, f.key)
		if msg != "" {
			return clientMetadata{}, badMetadata("invalid_metadata", msg)
		}
		*f.dst = displayURI(v)
	}

	scope, scopeGiven, msg := getString(m, "scope")
	if msg != "" {
		return clientMetadata{}, badMetadata("invalid_metadata", msg)
	}
	if scopeGiven {
		if md.Scopes, msg = checkScopes(strings.Fields(scope), supportedScopes); msg != "" {
			return clientMetadata{}, badMetadata("invalid_metadata", msg)
		}
	}

	for _, f := range []struct {
		key string
		dst *string
	}{{"software_id", &md.SoftwareID}, {"software_version", &md.SoftwareVersion}} {
		v, _, msg := getString(m, f.key)
		if msg == "" {
			msg = checkDisplayText(v, maxSWTextLen)
		}
		if msg != "" {
			return clientMetadata{}, badMetadata("invalid_metadata", f.key+": "+msg)
		}
		*f.dst = v
	}
	return md, nil
}

// parseAuthMethod reads token_endpoint_auth_method.
func parseAuthMethod(m map[string]json.RawMessage, src metadataSource) (string, *metadataError) {
	method, present, msg := getString(m, "token_endpoint_auth_method")
	if msg != "" {
		return "", badMetadata("invalid_metadata", msg)
	}
	if src == fromDocument {
		switch {
		case !present || method == AuthMethodNone:
			return AuthMethodNone, nil
		case method == AuthMethodPrivateKeyJWT:
			return "", badMetadata("unsupported_auth_method",
				`the metadata document asks for token_endpoint_auth_method "private_key_jwt", which this server does not support; publish "none" (public client with PKCE)`)
		default:
			// draft §4.1: "the token_endpoint_auth_method property MUST NOT
			// include client_secret_post, client_secret_basic,
			// client_secret_jwt, or any other method based around a shared
			// symmetric secret".
			return "", badMetadata("unsupported_auth_method",
				"the metadata document asks for token_endpoint_auth_method "+strconv.Quote(method)+
					`, which a metadata document client cannot use (no shared secret can be established); publish "none"`)
		}
	}
	if !present {
		// RFC 7591 §2: "If unspecified or omitted, the default is
		// "client_secret_basic"".
		return AuthMethodClientSecretBasic, nil
	}
	switch method {
	case AuthMethodNone, AuthMethodClientSecretBasic, AuthMethodClientSecretPost:
		return method, nil
	}
	return "", badMetadata("unsupported_auth_method", "token_endpoint_auth_method "+strconv.Quote(method)+
		" is not supported; use none, client_secret_basic or client_secret_post")
}

// checkGrantTypes validates grant and response types together (RFC 7591
// §2.1: "the authorization server MUST ensure that the grant_types and
// response_types are consistent"). responses is used only when
// responsesGiven; otherwise it follows from the grants.
func checkGrantTypes(grants, responses []string, responsesGiven bool, method string) ([]string, []string, string) {
	var outG []string
	for _, g := range grants {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials:
		default:
			return nil, nil, "grant type " + strconv.Quote(g) + " is not supported (supported: authorization_code, refresh_token, client_credentials)"
		}
		if !slices.Contains(outG, g) {
			outG = append(outG, g)
		}
	}
	if len(outG) == 0 {
		return nil, nil, "no grant type"
	}
	if slices.Contains(outG, GrantClientCredentials) && method == AuthMethodNone {
		return nil, nil, "the client_credentials grant needs a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)"
	}
	code := slices.Contains(outG, GrantAuthorizationCode)
	if !responsesGiven {
		if code {
			return outG, []string{"code"}, ""
		}
		return outG, nil, ""
	}
	var outR []string
	for _, r := range responses {
		if r != "code" {
			return nil, nil, "response type " + strconv.Quote(r) + ` is not supported: only "code" (OAuth 2.1)`
		}
		if !slices.Contains(outR, r) {
			outR = append(outR, r)
		}
	}
	switch {
	case len(outR) > 0 && !code:
		return nil, nil, `response type "code" needs the authorization_code grant`
	case len(outR) == 0 && code:
		return nil, nil, `the authorization_code grant needs response type "code"`
	}
	return outG, outR, ""
}

// checkScopes validates scope tokens (RFC 6749 §3.3: scope-token =
// 1*( %x21 / %x23-5B / %x5D-7E )) and keeps those in supported (all when
// supported is empty), without duplicates.
func checkScopes(tokens []string, supported []string) ([]string, string) {
	var out []string
	for _, t := range tokens {
		if !validScopeToken(t) {
			return nil, "scope " + strconv.QuoteToASCII(t) + " is not a valid scope token"
		}
		if len(supported) > 0 && !slices.Contains(supported, t) {
			continue
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > maxScopes {
		return nil, "at most " + strconv.Itoa(maxScopes) + " scopes"
	}
	if len(tokens) > 0 && len(out) == 0 {
		return nil, "none of the requested scopes is offered by this server (offered: " + strings.Join(supported, " ") + ")"
	}
	return out, ""
}

func validScopeToken(t string) bool {
	if t == "" || len(t) > 200 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// checkDisplayText accepts text shown to users: valid UTF-8, at most max
// bytes, no control characters and no format characters (a right-to-left
// override could make a client name read as another).
func checkDisplayText(s string, max int) string {
	switch {
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case len(s) > max:
		return "longer than " + strconv.Itoa(max) + " bytes"
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		return "contains control or formatting characters"
	}
	return ""
}

// displayURI returns s when it is a plain https URL fit to show or link
// to, and "" otherwise.
func displayURI(s string) string {
	if s == "" || len(s) > maxURILen || !strings.HasPrefix(s, "https://") {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '\\' {
			return ""
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.Hostname() == "" || checkAuthority(u) != "" {
		return ""
	}
	return s
}

// decodeObject reads a JSON object into its members, refusing anything
// else, duplicate members and trailing data.
func decodeObject(body []byte) (map[string]json.RawMessage, string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, "the body must be a JSON object"
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "malformed JSON"
		}
		key, ok := tok.(string)
		if !ok {
			return nil, "malformed JSON"
		}
		if _, dup := m[key]; dup {
			return nil, "member " + strconv.QuoteToASCII(key) + " appears twice"
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, "malformed JSON"
		}
		m[key] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, "malformed JSON"
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "unexpected data after the JSON object"
	}
	return m, ""
}

// getString reads a string member; null counts as absent.
func getString(m map[string]json.RawMessage, key string) (v string, present bool, msg string) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return "", false, ""
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false, key + " must be a string"
	}
	return v, true, ""
}

// getStrings reads an array of strings; null counts as absent.
func getStrings(m map[string]json.RawMessage, key string) (v []string, present bool, msg string) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return nil, false, ""
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, false, key + " must be an array of strings"
	}
	return v, true, ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// registrationResponse is the client information response of RFC 7591
// §3.2.1: the client identifier, the secret for a confidential client,
// and "all registered metadata about the client".
type registrationResponse struct {
	ClientID         string `json:"client_id"`
	ClientIDIssuedAt int64  `json:"client_id_issued_at"`
	ClientSecret     string `json:"client_secret,omitempty"`
	// "REQUIRED if "client_secret" is issued. … 0 if it will not expire."
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ApplicationType         string   `json:"application_type"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
}

func newRegistrationResponse(cl store.OAuthClient, secret string) registrationResponse {
	resp := registrationResponse{
		ClientID: cl.ClientID, ClientIDIssuedAt: cl.CreatedAt.Unix(), ClientSecret: secret,
		RedirectURIs: nonNil(cl.RedirectURIs), TokenEndpointAuthMethod: cl.TokenEndpointAuthMethod,
		GrantTypes: nonNil(cl.GrantTypes), ResponseTypes: nonNil(cl.ResponseTypes), ApplicationType: cl.ApplicationType,
		ClientName: cl.Name, ClientURI: cl.ClientURI, LogoURI: cl.LogoURI, Scope: strings.Join(cl.Scopes, " "),
		SoftwareID: cl.SoftwareID, SoftwareVersion: cl.SoftwareVersion,
	}
	if secret != "" {
		zero := int64(0)
		resp.ClientSecretExpiresAt = &zero
	}
	return resp
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// RegisterHandler serves POST /register, the client registration endpoint
// of RFC 7591 §3:
//
//   - §3.1: the body is a JSON object of client metadata (Content-Type
//     application/json), at most MaxRegisterBytes (413 beyond);
//   - §3.2.1: success is 201 Created with the client information: for a
//     confidential client (token_endpoint_auth_method client_secret_basic,
//     the RFC 7591 default, or client_secret_post) a fresh client_secret
//     with client_secret_expires_at 0, shown only in this response;
//   - §3.2.2: errors are 400 with "invalid_redirect_uri" or
//     "invalid_client_metadata" and an error_description.
//
// Registration is open (no initial access token), so it must not grow
// without bound: requests are rate-limited per client IP, identical
// registrations of public clients get the same client (their metadata
// hash is the dedup key), and the reaper removes registrations nobody
// uses. Browser-based clients register too, so any origin may call it;
// no credential is involved.
func (c *Clients) RegisterHandler() http.Handler {
	return http.HandlerFunc(c.register)
}

func (c *Clients) register(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Accept, Mcp-Protocol-Version")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		h.Set("Allow", "POST, OPTIONS")
		httpx.WriteOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	ctx := r.Context()
	if c.opts.RegistrationLimiter != nil {
		d, err := c.opts.RegistrationLimiter.Allow(ctx, "oauth-register:"+httpx.ClientKey(r))
		if err != nil {
			c.opts.Logger.Error("oauth: registration rate limiter failed; refusing", "err", err)
			h.Set("Retry-After", "5")
			c.refuseRegistration(ctx, w, http.StatusServiceUnavailable, "temporarily_unavailable", "rate_limiter_unavailable",
				"registration is temporarily unavailable")
			return
		}
		if !d.Allowed {
			h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.RetryAfter.Seconds())), 10))
			c.refuseRegistration(ctx, w, http.StatusTooManyRequests, "too_many_requests", "rate_limited",
				"too many registrations from this address; retry later")
			return
		}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		c.refuseRegistration(ctx, w, http.StatusBadRequest, errInvalidClientMetadata, "unsupported_media_type",
			"the registration request must be a JSON object with Content-Type application/json")
		return
	}
	max := c.opts.MaxRegisterBytes
	if r.ContentLength > max {
		c.refuseRegistration(ctx, w, http.StatusRequestEntityTooLarge, errInvalidClientMetadata, "body_too_large",
			"the registration request is larger than "+strconv.FormatInt(max, 10)+" bytes")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			c.refuseRegistration(ctx, w, http.StatusRequestEntityTooLarge, errInvalidClientMetadata, "body_too_large",
				"the registration request is larger than "+strconv.FormatInt(min(max, mbe.Limit), 10)+" bytes")
			return
		}
		c.refuseRegistration(ctx, w, http.StatusBadRequest, errInvalidClientMetadata, "malformed_json", "the request body could not be read")
		return
	}
	md, merr := parseClientMetadata(body, fromRegistration, "", c.opts.SupportedScopes)
	if merr != nil {
		c.refuseRegistration(ctx, w, http.StatusBadRequest, merr.code, merr.reason, merr.description)
		return
	}
	cl, secret, dedup, err := c.registerClient(ctx, md)
	if err != nil {
		c.opts.Logger.Error("oauth: storing a client registration failed", "err", err)
		httpx.WriteOAuthError(w, http.StatusInternalServerError, "server_error", "the registration could not be stored")
		return
	}
	c.rec.Record(ctx, audit.Event{
		Type: EventClientRegistered, Outcome: store.OutcomeAllow, CredentialID: cl.ID,
		Details: clientDetails(cl, map[string]any{"deduplicated": dedup, "application_type": cl.ApplicationType}),
	})
	noStore(w)
	httpx.WriteJSON(w, http.StatusCreated, newRegistrationResponse(cl, secret))
}

// registerClient stores a registration, or returns the client an identical
// public registration already created (dedup true).
func (c *Clients) registerClient(ctx context.Context, md clientMetadata) (cl store.OAuthClient, secret string, dedup bool, err error) {
	now := toMillis(c.opts.Now())
	raw, _ := json.Marshal(map[string]any{
		"redirect_uris": md.RedirectURIs, "token_endpoint_auth_method": md.TokenEndpointAuthMethod,
		"grant_types": md.GrantTypes, "response_types": md.ResponseTypes, "application_type": md.ApplicationType,
		"client_name": md.Name, "client_uri": md.ClientURI, "logo_uri": md.LogoURI, "scope": strings.Join(md.Scopes, " "),
		"software_id": md.SoftwareID, "software_version": md.SoftwareVersion,
	})
	cl = store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: newClientID(), Kind: store.ClientKindDCR, Name: md.Name,
		RedirectURIs: md.RedirectURIs, GrantTypes: md.GrantTypes, ResponseTypes: md.ResponseTypes,
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod, ApplicationType: md.ApplicationType, Scopes: md.Scopes,
		ClientURI: md.ClientURI, LogoURI: md.LogoURI, MetadataJSON: string(raw),
		SoftwareID: md.SoftwareID, SoftwareVersion: md.SoftwareVersion, CreatedAt: now,
	}
	if md.TokenEndpointAuthMethod != AuthMethodNone {
		// Every confidential registration gets its own secret: never shared.
		secret, cl.SecretHash = newClientSecret()
		return cl, secret, false, c.st.CreateOAuthClient(ctx, cl)
	}
	cl.DedupKey = dedupKey(md)
	for range 3 {
		existing, err := c.st.FindOAuthClientByDedupKey(ctx, cl.DedupKey)
		if err == nil {
			// A re-registration counts as a use, so a registration about to
			// be reaped for never being used is not deleted under a client
			// that just received it.
			c.NoteUse(ctx, existing)
			return existing, "", true, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.OAuthClient{}, "", false, err
		}
		err = c.st.CreateOAuthClient(ctx, cl)
		if err == nil {
			return cl, "", false, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return store.OAuthClient{}, "", false, err
		}
		// A concurrent identical registration won (or the reaper removed
		// the row between the two statements): look again.
	}
	return store.OAuthClient{}, "", false, errors.New("oauth: registration kept conflicting")
}

// dedupKey hashes the normalised metadata of a public registration: the
// same metadata in any order of list items gives the same key.
func dedupKey(md clientMetadata) string {
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	b, _ := json.Marshal([]any{"v1", sorted(md.RedirectURIs), md.TokenEndpointAuthMethod, sorted(md.GrantTypes),
		sorted(md.ResponseTypes), md.ApplicationType, md.Name, md.ClientURI, md.LogoURI, sorted(md.Scopes),
		md.SoftwareID, md.SoftwareVersion})
	sum := sha256.Sum256(b)
	return "dcr1_" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// refuseRegistration answers an RFC 7591 §3.2.2 error and audits it.
func (c *Clients) refuseRegistration(ctx context.Context, w http.ResponseWriter, status int, code, reason, description string) {
	c.rec.Record(ctx, audit.Event{
		Type: EventClientRegistrationRefused, Outcome: store.OutcomeDeny, Reason: reason,
		Details: map[string]any{"error": code, "description": description},
	})
	noStore(w)
	httpx.WriteJSON(w, status, httpx.OAuthError{Error: code, Description: description})
}
