package federation

// Introspection mode: RFC 7662 against the provider.
//
// §2.1: the protected resource POSTs token (and token_type_hint) as a form
// and authenticates itself; here with client_secret_basic (RFC 6749
// §2.3.1: id and secret form-encoded, then HTTP Basic). §2.2: the answer
// is a JSON object whose "active" says whether the token may be used;
// every other member is optional. An active answer is still checked here:
// exp/nbf with the skew, iss (when given) byte for byte, aud against the
// configured audiences.
//
// §4 leaves caching to the resource server, trading freshness of
// revocation for load: active answers are cached for at most CacheTTL
// (≤ 30 s) and never past exp; inactive answers are never cached (a token
// that becomes active is not possible, but a provider outage misread as
// "inactive" must not stick). Concurrent requests with the same token share
// one call, and at most maxConcurrentIntrospections calls per provider run
// at once, so a flood of invented tokens queues here rather than at the
// provider (authn's per-IP refusal limit slows the flood itself).

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	maxIntrospectionBytes       = 64 << 10
	maxConcurrentIntrospections = 16
	introspectionCacheMax       = 10_000
)

type introspector struct {
	is  *issuer
	sem chan struct{}

	mu     sync.Mutex
	cache  map[[32]byte]introEntry
	flight map[[32]byte]*introCall
}

type introEntry struct {
	id    *Identity
	until time.Time
}

type introCall struct {
	done chan struct{}
	id   *Identity
	err  error
}

func newIntrospector(is *issuer) *introspector {
	return &introspector{is: is, sem: make(chan struct{}, maxConcurrentIntrospections),
		cache: map[[32]byte]introEntry{}, flight: map[[32]byte]*introCall{}}
}

// introspect returns the identity of token according to the provider.
func (is *issuer) introspect(ctx context.Context, token string) (*Identity, error) {
	if len(token) > MaxTokenBytes {
		return nil, refuse(ReasonMalformed, is.cfg.Issuer, "token is %d bytes, limit %d", len(token), MaxTokenBytes)
	}
	in := is.intro
	key := sha256.Sum256([]byte(token))
	now := is.f.opts.Now()
	in.mu.Lock()
	if e, ok := in.cache[key]; ok {
		if now.Before(e.until) {
			in.mu.Unlock()
			return e.id.clone(), nil
		}
		delete(in.cache, key)
	}
	if c, ok := in.flight[key]; ok {
		in.mu.Unlock()
		select {
		case <-c.done:
			if c.err != nil {
				return nil, c.err
			}
			return c.id.clone(), nil
		case <-ctx.Done():
			return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "gave up waiting for introspection: %v", ctx.Err())
		}
	}
	c := &introCall{done: make(chan struct{})}
	in.flight[key] = c
	in.mu.Unlock()

	c.id, c.err = in.call(ctx, token)

	in.mu.Lock()
	delete(in.flight, key)
	if c.err == nil && is.cfg.Introspection.CacheTTL > 0 {
		until := is.f.opts.Now().Add(is.cfg.Introspection.CacheTTL)
		if !c.id.ExpiresAt.IsZero() && c.id.ExpiresAt.Before(until) {
			until = c.id.ExpiresAt
		}
		if len(in.cache) >= introspectionCacheMax {
			in.evictLocked(now)
		}
		in.cache[key] = introEntry{id: c.id, until: until}
	}
	in.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return nil, c.err
	}
	return c.id.clone(), nil
}

func (in *introspector) evictLocked(now time.Time) {
	for k, e := range in.cache {
		if !now.Before(e.until) {
			delete(in.cache, k)
		}
	}
	if len(in.cache) >= introspectionCacheMax {
		clear(in.cache)
	}
}

// call asks the provider, bounded by the configured timeout (waiting for a
// free slot included).
func (in *introspector) call(ctx context.Context, token string) (*Identity, error) {
	is := in.is
	cfg := is.cfg.Introspection
	// Detached from the first caller's cancellation (waiters share the
	// call), bounded by the timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Timeout)
	defer cancel()
	select {
	case in.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "too many introspection requests in flight; none finished within %s", cfg.Timeout)
	}
	defer func() { <-in.sem }()

	endpoint, err := is.introspectionURL(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	resp, err := is.f.opts.HTTPClient.Do(req)
	if err != nil {
		// The error names the URL and the cause, never the form (token).
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection endpoint did not answer within %s", cfg.Timeout)
		}
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection endpoint unreachable: %v", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	switch {
	case err != nil:
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "reading the introspection answer: %v", err)
	case resp.StatusCode != http.StatusOK:
		// 401/403 mean mcpgate's own credentials are wrong: an operator
		// problem, not the token's.
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection endpoint answered %s", resp.Status)
	case len(body) > maxIntrospectionBytes:
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection answer exceeds %d bytes", maxIntrospectionBytes)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection answer is not a JSON object")
	}
	active, ok := m["active"].(bool)
	if !ok {
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "introspection answer has no boolean \"active\"")
	}
	if !active {
		return nil, refuse(ReasonIntrospectionInactive, is.cfg.Issuer, "the provider says the token is not active")
	}
	if v, present := m["iss"]; present {
		if s, _ := v.(string); s != is.cfg.Issuer {
			return nil, refuse(ReasonWrongIssuer, is.cfg.Issuer, "introspection answer names issuer %s", quote(fmt.Sprint(v)))
		}
	}
	if err := is.checkAudience(m["aud"]); err != nil {
		return nil, err
	}
	exp, err := is.checkTimes(m, false)
	if err != nil {
		return nil, err
	}
	return is.mapIdentity(m, MethodExternalIntrospection, exp)
}

// clone copies an identity handed out from the cache, so a caller changing
// it (its claims above all) cannot change what the next caller gets.
func (id *Identity) clone() *Identity {
	c := *id
	c.Claims = maps.Clone(id.Claims)
	c.Roles = append([]string(nil), id.Roles...)
	c.Scopes = append([]string(nil), id.Scopes...)
	return &c
}
