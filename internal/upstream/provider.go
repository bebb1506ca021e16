package upstream

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/config"
)

// provider is one configured upstream, with its discovery result (OIDC)
// fetched on first use and kept.
type provider struct {
	cfg config.UpstreamProvider
	h   *Handler

	mu       sync.Mutex
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	template string // multi-tenant issuer template ("…/{tenantid}/…")
	lastFail time.Time
}

func (p *provider) redirectURL() string {
	return p.h.opts.BaseURL + "/login/upstream/" + p.cfg.Name + "/callback"
}

// oauthConfig returns the client configuration, discovering the OIDC
// provider on first use (a failed discovery is retried at most every 10 s).
func (p *provider) oauthConfig(ctx context.Context) (*oauth2.Config, error) {
	oc := &oauth2.Config{
		ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
		RedirectURL: p.redirectURL(), Scopes: p.cfg.Scopes,
	}
	if p.cfg.Type == config.UpstreamGitHub {
		oc.Endpoint = oauth2.Endpoint{AuthURL: p.cfg.AuthURL, TokenURL: p.cfg.TokenURL, AuthStyle: oauth2.AuthStyleInParams}
		return oc, nil
	}
	op, _, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	oc.Endpoint = op.Endpoint()
	return oc, nil
}

func (p *provider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oidc != nil {
		return p.oidc, p.verifier, nil
	}
	now := p.h.opts.Now()
	if !p.lastFail.IsZero() && now.Sub(p.lastFail) < 10*time.Second {
		return nil, nil, errors.New("discovery failed less than 10 s ago")
	}
	// The key set keeps this context for its fetches: no cancellation, the
	// bounded client.
	bg := oidc.ClientContext(context.WithoutCancel(ctx), p.h.client)
	dctx := bg
	multi := p.cfg.Quirks.AllowIssuerMismatchForMultitenant
	if multi {
		dctx = oidc.InsecureIssuerURLContext(bg, p.cfg.Issuer)
	}
	tctx, cancel := context.WithTimeout(dctx, p.h.opts.Timeout)
	defer cancel()
	op, err := oidc.NewProvider(tctx, p.cfg.Issuer)
	if err != nil {
		p.lastFail = now
		return nil, nil, fmt.Errorf("discovery of %s: %w", p.cfg.Issuer, err)
	}
	if multi {
		var md struct {
			Issuer string `json:"issuer"`
		}
		if err := op.Claims(&md); err != nil {
			p.lastFail = now
			return nil, nil, fmt.Errorf("discovery of %s: %w", p.cfg.Issuer, err)
		}
		p.template = md.Issuer
	}
	p.oidc = op
	p.verifier = op.VerifierContext(bg, &oidc.Config{ClientID: p.cfg.ClientID, SkipIssuerCheck: multi, Now: p.h.opts.Now})
	return op, p.verifier, nil
}

func (p *provider) extraParams() []oauth2.AuthCodeOption {
	var out []oauth2.AuthCodeOption
	if p.cfg.Quirks.Resource != "" && !p.cfg.Quirks.OmitResource {
		out = append(out, oauth2.SetAuthURLParam("resource", p.cfg.Quirks.Resource))
	}
	if p.cfg.Quirks.Audience != "" {
		out = append(out, oauth2.SetAuthURLParam("audience", p.cfg.Quirks.Audience))
	}
	return out
}

// account exchanges the code and learns who the user is.
func (p *provider) account(ctx context.Context, code string, f *flow) (account, *refusal) {
	oc, err := p.oauthConfig(ctx)
	if err != nil {
		return account{}, &refusal{reason: ReasonUpstreamError, err: err}
	}
	tctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, p.h.client), p.h.opts.Timeout)
	defer cancel()
	opts := append([]oauth2.AuthCodeOption{oauth2.VerifierOption(f.verifier)}, p.extraParams()...)
	tok, err := oc.Exchange(tctx, code, opts...)
	if err != nil {
		return account{}, &refusal{reason: ReasonUpstreamError, err: fmt.Errorf("code exchange: %w", err)}
	}
	if p.cfg.Type == config.UpstreamGitHub {
		return p.githubAccount(tctx, tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return account{}, &refusal{reason: ReasonBadIDToken, err: errors.New("the token response has no id_token")}
	}
	_, v, err := p.discover(ctx)
	if err != nil {
		return account{}, &refusal{reason: ReasonUpstreamError, err: err}
	}
	// go-oidc checks the signature, iss (except in multi-tenant mode, see
	// checkTenant), aud (contains client_id) and exp: OIDC Core §3.1.3.7
	// items 2, 3 and 9. It does not look at azp when aud has several
	// values (items 4 and 5, SHOULDs). That is acceptable here: this ID
	// token comes straight from the token endpoint over TLS (item 6), in
	// exchange for this login's code, PKCE verifier and client secret, so
	// it was issued to this client and no other party's token can be
	// substituted for it.
	idt, err := v.Verify(tctx, raw)
	if err != nil {
		return account{}, &refusal{reason: ReasonBadIDToken, err: err}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return account{}, &refusal{reason: ReasonBadIDToken, subject: idt.Subject, err: err}
	}
	if p.cfg.Quirks.AllowIssuerMismatchForMultitenant {
		if rf := p.checkTenant(idt.Issuer, claims); rf != nil {
			rf.subject = idt.Subject
			return account{}, rf
		}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.nonce)) != 1 {
		return account{}, &refusal{reason: ReasonNonceMismatch, subject: idt.Subject, err: errors.New("the ID token's nonce is not this login's")}
	}
	a := account{Issuer: idt.Issuer, Subject: idt.Subject, Claims: claims}
	a.Email, _ = claims["email"].(string)
	a.EmailVerified, _ = claims["email_verified"].(bool)
	a.Name, _ = claims["name"].(string)
	a.Groups = claimStrings(claims["groups"])
	return a, nil
}

// checkTenant stands in for the issuer check go-oidc skips in multi-tenant
// mode (OIDC Core §3.1.3.7 item 2): iss must be the discovered template
// with a tenant in the place of "{tenantid}", that tenant one of
// quirks.allowed_tenants, and a "tid" claim, when present, that same
// tenant. Anybody can create an Entra tenant and be its administrator, and
// the administrator chooses the roles, groups and claims of its accounts:
// without the list every one of those would count here.
func (p *provider) checkTenant(iss string, claims map[string]any) *refusal {
	tenant, ok := issuerTenant(p.template, iss)
	if !ok {
		return &refusal{reason: ReasonBadIDToken, err: fmt.Errorf("issuer %q does not match %q", clip(iss, 200), p.template)}
	}
	if tid, present := claims["tid"]; present {
		if s, _ := tid.(string); s != tenant {
			return &refusal{reason: ReasonBadIDToken, err: fmt.Errorf("claim tid %q is not the issuer's tenant %q", clip(fmt.Sprint(tid), 100), tenant)}
		}
	}
	// Tenant ids are ASCII (issuerTenant), so lower-casing folds nothing
	// else into them; the configured ones are lower case.
	if !slices.Contains(p.cfg.Quirks.AllowedTenants, strings.ToLower(tenant)) {
		return &refusal{reason: ReasonTenantNotAllowed, tenant: tenant, err: fmt.Errorf("tenant %q is not in quirks.allowed_tenants", tenant)}
	}
	return nil
}

// githubAccount asks GitHub's user API who the token belongs to.
func (p *provider) githubAccount(ctx context.Context, tok *oauth2.Token) (account, *refusal) {
	var u struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if err := p.githubGet(ctx, tok, "/user", &u); err != nil {
		return account{}, &refusal{reason: ReasonUpstreamError, err: err}
	}
	if u.ID <= 0 {
		return account{}, &refusal{reason: ReasonUpstreamError, err: errors.New("GitHub /user has no id")}
	}
	a := account{Issuer: p.cfg.Issuer, Subject: strconv.FormatInt(u.ID, 10), Name: u.Name}
	if a.Name == "" {
		a.Name = u.Login
	}
	a.Claims = map[string]any{"login": u.Login}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := p.githubGet(ctx, tok, "/user/emails", &emails); err != nil {
		return account{}, &refusal{reason: ReasonUpstreamError, subject: a.Subject, err: err}
	}
	for _, e := range emails {
		if e.Primary && e.Verified {
			a.Email, a.EmailVerified = e.Email, true
		}
	}
	return a, nil
}

func (p *provider) githubGet(ctx context.Context, tok *oauth2.Token, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.APIURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := p.h.client.Do(req)
	if err != nil {
		return fmt.Errorf("GitHub %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBodyBytes))
	if err != nil {
		return fmt.Errorf("GitHub %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GitHub %s: status %d", path, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GitHub %s: unreadable answer: %w", path, err)
	}
	return nil
}
