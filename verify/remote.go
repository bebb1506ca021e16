package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of RemoteOptions.
const (
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultCacheTTL           = 5 * time.Minute
	// MaxJWKSBytes is the largest JWKS document RemoteJWKS reads.
	MaxJWKSBytes = 1 << 20
	fetchTimeout = 10 * time.Second
)

// RemoteOptions configure RemoteJWKS.
type RemoteOptions struct {
	// HTTPClient fetches the JWKS. Default: a client with a 10 s timeout
	// that follows redirects only to https URLs.
	HTTPClient *http.Client
	// MinRefreshInterval is the least time between two fetches (default
	// 30 s). A token naming an unknown kid triggers a fetch (the issuer may
	// have rotated), but at most once per interval, so a flood of tokens
	// with invented kids cannot hammer the issuer: within the interval
	// they are refused with ErrUnknownKey straight away. Failed fetches
	// count too.
	MinRefreshInterval time.Duration
	// CacheTTL is how long a fetched key set is used before it is fetched
	// again (default 5 min). Should a refetch fail, the previous keys stay
	// in use and the failure is logged.
	CacheTTL time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Logger receives fetch failures; default slog.Default().
	Logger *slog.Logger
}

// RemoteKeySet is a KeySource that fetches a JWK Set from an issuer's
// jwks_uri and caches it. It is safe for concurrent use; concurrent
// lookups that need a fetch share one.
type RemoteKeySet struct {
	url   string
	opts  RemoteOptions
	state atomic.Pointer[remoteState]
	// last is the unix-ns time of the last fetch attempt; 0 = none yet.
	last atomic.Int64
	// sem admits one fetch at a time (a channel, so waiters honour ctx).
	sem chan struct{}
	// fetching is true while a fetch is under way.
	fetching atomic.Bool
}

type remoteState struct {
	keys      []PublicKey
	fetchedAt time.Time
}

// RemoteJWKS returns a key source reading the JWK Set at jwksURL, which
// must be https (http only for loopback hosts, for tests and local
// development). Nothing is fetched until the first lookup or Refresh.
func RemoteJWKS(jwksURL string, opts RemoteOptions) (*RemoteKeySet, error) {
	u, err := url.Parse(jwksURL)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("verify: JWKS URL %s must be an absolute URL without credentials or fragment", quoteClip(jwksURL))
	}
	if !secureURL(u) {
		return nil, fmt.Errorf("verify: JWKS URL %s must use https (http only on loopback)", quoteClip(jwksURL))
	}
	if opts.MinRefreshInterval <= 0 {
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{
			Timeout: fetchTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				if !secureURL(req.URL) {
					return errors.New("redirect to a non-https URL")
				}
				return nil
			},
		}
	}
	return &RemoteKeySet{url: u.String(), opts: opts, sem: make(chan struct{}, 1)}, nil
}

// secureURL: https, or http to a loopback host.
func secureURL(u *url.URL) bool {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return true
	case "http":
		host := u.Hostname()
		if strings.EqualFold(host, "localhost") {
			return true
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

// URL returns the JWKS URL.
func (r *RemoteKeySet) URL() string { return r.url }

// LookupKey implements KeySource.
func (r *RemoteKeySet) LookupKey(ctx context.Context, kid, alg string) (PublicKey, error) {
	st := r.state.Load()
	now := r.opts.Now()
	if st != nil {
		k, found := FindKey(st.keys, kid, alg)
		fresh := now.Sub(st.fetchedAt) < r.opts.CacheTTL
		if found && fresh {
			return k, nil
		}
		if found {
			// Stale but usable: answer now, refresh in the background.
			if r.mayFetch(now) {
				go r.refreshInBackground(ctx)
			}
			return k, nil
		}
	}
	// Unknown kid within the rate limit and no fetch under way: refuse at
	// once, so a flood of invented kids costs neither a fetch nor a wait.
	// (fetching is set before last and cleared after state: a fetch that
	// just ended is seen through state.)
	if st != nil && !r.mayFetch(now) && !r.fetching.Load() {
		if cur := r.state.Load(); cur != st {
			if k, ok := FindKey(cur.keys, kid, alg); ok {
				return k, nil
			}
		}
		return PublicKey{}, fail(ErrUnknownKey, "no %s key with kid %s at %s (refetch rate-limited)", alg, quoteClip(kid), r.url)
	}
	// Unknown kid (or nothing fetched yet): the issuer may have rotated.
	// fetchShared waits for a fetch in flight (the first tokens of a new
	// key arrive together) and fetches itself only outside the rate limit.
	next, err := r.fetchShared(ctx, st)
	if next == nil {
		next = st
	}
	if next != nil {
		if k, ok := FindKey(next.keys, kid, alg); ok {
			return k, nil
		}
	}
	if next == nil {
		return PublicKey{}, fmt.Errorf("verify: %w: %w", ErrKeysUnavailable, err)
	}
	return PublicKey{}, fail(ErrUnknownKey, "no %s key with kid %s at %s", alg, quoteClip(kid), r.url)
}

// Refresh fetches the key set now, whatever the rate limit, and reports
// whether that worked (call it at start-up to fail fast on a wrong URL).
func (r *RemoteKeySet) Refresh(ctx context.Context) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()
	_, err := r.fetchLocked(ctx)
	return err
}

// refreshInBackground refreshes the set unless a fetch is running or
// happened within the rate limit.
func (r *RemoteKeySet) refreshInBackground(ctx context.Context) {
	select {
	case r.sem <- struct{}{}:
	default:
		return // a fetch is under way
	}
	defer func() { <-r.sem }()
	if r.mayFetch(r.opts.Now()) {
		r.fetchLocked(ctx)
	}
}

func (r *RemoteKeySet) mayFetch(now time.Time) bool {
	last := r.last.Load()
	return last == 0 || now.UnixNano()-last >= int64(r.opts.MinRefreshInterval)
}

// fetchShared fetches the set unless another caller did (or tried) since
// seen was read; then it returns that caller's result.
func (r *RemoteKeySet) fetchShared(ctx context.Context, seen *remoteState) (*remoteState, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.sem }()
	if cur := r.state.Load(); cur != seen {
		return cur, nil // refreshed while we waited
	}
	if !r.mayFetch(r.opts.Now()) {
		return nil, errors.New("JWKS fetch failed recently; not retrying yet")
	}
	return r.fetchLocked(ctx)
}

// fetchLocked fetches and installs the key set; the caller holds sem. The
// fetch is detached from ctx's cancellation (one caller giving up must not
// waste the refresh for everyone) but bounded by fetchTimeout.
func (r *RemoteKeySet) fetchLocked(ctx context.Context) (*remoteState, error) {
	r.fetching.Store(true)
	defer r.fetching.Store(false)
	r.last.Store(r.opts.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	keys, err := r.fetch(ctx)
	if err != nil {
		r.opts.Logger.Warn("verify: cannot fetch JWKS", "url", r.url, "err", err)
		return nil, err
	}
	st := &remoteState{keys: keys, fetchedAt: r.opts.Now()}
	r.state.Store(st)
	return st, nil
}

func (r *RemoteKeySet) fetch(ctx context.Context) ([]PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("fetch JWKS: status %s", resp.Status)
	}
	if resp.ContentLength > MaxJWKSBytes {
		return nil, fmt.Errorf("fetch JWKS: document of %d bytes exceeds %d", resp.ContentLength, MaxJWKSBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, fmt.Errorf("fetch JWKS: document exceeds %d bytes", MaxJWKSBytes)
	}
	keys, err := ParseJWKS(body)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("fetch JWKS: the set holds no usable signature key")
	}
	return keys, nil
}
