package oauth

// This file fetches, validates and caches Client ID Metadata Documents
// (draft-ietf-oauth-client-id-metadata-document-02, which the MCP
// authorization spec 2026-07-28 adopts: "MCP clients and authorization
// servers SHOULD support OAuth Client ID Metadata Documents").
//
// The fetch is an SSRF surface: anyone can make mcpgate fetch a URL of
// their choosing by starting an authorization. §8.6: "Authorization
// servers MUST NOT fetch a Client ID Metadata Document URL … that
// resolve[s] to special-use IP addresses as defined in [RFC6890]." So:
//
//   - https only, on the default or an explicit port, never through a
//     proxy from the environment;
//   - the host name is resolved once, every answer must be a public
//     address (loopback, private, link-local, CGNAT, multicast,
//     unspecified, documentation, benchmarking, NAT64 and other special
//     ranges are refused, with the cloud metadata addresses
//     169.254.169.254 and fd00:ec2::254 among them), and the connection
//     goes to exactly the address that was checked; the dialer's Control
//     hook checks the address again at connect time. A DNS answer that
//     changes between a check and a connect (DNS rebinding) cannot move
//     the connection, because there is no second resolution;
//   - §5: "The authorization server MUST NOT automatically follow HTTP
//     redirects when fetching the Client ID Metadata Document.";
//   - §8.7: reads are capped ("The recommended maximum size to read is 5
//     kilobytes"; mcpgate reads up to CIMDMaxBytes, 16 KiB by default, so
//     documents carrying a public jwks still fit) and the whole fetch is
//     bounded by CIMDTimeout (5 s);
//   - §5.2: documents are cached per their HTTP caching headers within
//     bounds (1 minute to 24 hours); errors and invalid documents are
//     never cached.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// blockedPrefixes are the special-purpose ranges (IANA IPv4 and IPv6
// Special-Purpose Address Registries, RFC 6890 and successors) a document
// is never fetched from. Addresses outside every prefix must also be
// global unicast.
var blockedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8",       // "this network", unspecified
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // shared address space (CGNAT; Alibaba metadata 100.100.100.200)
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata 169.254.169.254)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments (Oracle metadata 192.0.0.192)
		"192.0.2.0/24",    // documentation
		"192.31.196.0/24", // AS112
		"192.52.193.0/24", // AMT
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // private
		"192.175.48.0/24", // AS112
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		// IPv6
		"::/96",           // unspecified, loopback, IPv4-compatible
		"::ffff:0:0/96",   // IPv4-mapped
		"::ffff:0:0:0/96", // IPv4-translated
		"64:ff9b::/96",    // NAT64
		"64:ff9b:1::/48",  // local-use IPv4/IPv6 translation
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, …)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4 (embeds an IPv4 address)
		"3fff::/20",       // documentation
		"5f00::/16",       // segment routing
		"fc00::/7",        // unique local (AWS metadata fd00:ec2::254)
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// addressBlocked says why a document may not be fetched from ip ("" when
// it may). allowLoopback admits 127.0.0.0/8 and ::1 (tests).
func addressBlocked(ip netip.Addr, allowLoopback bool) string {
	switch {
	case !ip.IsValid():
		return "invalid address"
	case ip.Zone() != "":
		return "scoped address"
	case ip.Is4In6():
		return "IPv4-mapped address"
	case allowLoopback && ip.IsLoopback():
		return ""
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return "special-purpose address"
		}
	}
	if !ip.IsGlobalUnicast() {
		return "not a global unicast address"
	}
	return ""
}

// blockedAddrError is a refused connection target. Its message stays in
// the logs; clients are told less (no SSRF oracle on internal DNS).
type blockedAddrError struct {
	ip     netip.Addr
	reason string
}

func (e *blockedAddrError) Error() string {
	return "refusing to connect to " + e.ip.String() + ": " + e.reason
}

// dnsError is a failed resolution.
type dnsError struct{ err error }

func (e *dnsError) Error() string { return "resolving the host failed: " + e.err.Error() }
func (e *dnsError) Unwrap() error { return e.err }

// fetcher fetches documents through the guarded transport.
type fetcher struct {
	client        *http.Client
	dialer        *net.Dialer
	resolver      Resolver
	allowLoopback bool
	maxBytes      int64
	minCache      time.Duration
	maxCache      time.Duration
	defCache      time.Duration
}

func newFetcher(opts ClientsOptions) *fetcher {
	f := &fetcher{
		resolver: opts.Resolver, allowLoopback: opts.CIMDAllowLoopback, maxBytes: opts.CIMDMaxBytes,
		minCache: opts.CIMDMinCache, maxCache: opts.CIMDMaxCache, defCache: opts.CIMDDefaultCache,
	}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	f.dialer = &net.Dialer{Timeout: opts.CIMDTimeout, Control: f.control}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would resolve and connect for us, past every check
		DialContext:            f.dialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.CIMDRootCAs},
		TLSHandshakeTimeout:    opts.CIMDTimeout,
		ResponseHeaderTimeout:  opts.CIMDTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           32,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        30 * time.Second,
	}
	f.client = &http.Client{
		Transport: tr,
		Timeout:   opts.CIMDTimeout,
		// §5: redirects are never followed; a 3xx is an error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

// dialContext resolves the host once, refuses unless every address is
// public, and connects to the checked addresses only.
func (f *fetcher) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip} // a literal in the URL: checked as written
	} else {
		answers, err := f.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, &dnsError{err}
		}
		for _, a := range answers {
			// The system resolver hands IPv4 answers over in IPv4-mapped
			// form; they are checked (and dialled) as the IPv4 address.
			ips = append(ips, a.Unmap())
		}
	}
	if len(ips) == 0 {
		return nil, &dnsError{errors.New("no addresses")}
	}
	// All or nothing: a name with one public and one private answer is
	// refused, rather than trying the public one and hoping.
	for _, ip := range ips {
		if reason := addressBlocked(ip, f.allowLoopback); reason != "" {
			return nil, &blockedAddrError{ip, reason}
		}
	}
	var firstErr error
	for _, ip := range ips {
		conn, err := f.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// control runs just before the socket connects, on the address actually
// dialled: the last line of defence should anything else dial.
func (f *fetcher) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to connect to %q: not an IP address", address)
	}
	if reason := addressBlocked(ap.Addr(), f.allowLoopback); reason != "" {
		return &blockedAddrError{ap.Addr(), reason}
	}
	return nil
}

// get fetches a document: its body (valid UTF-8, at most maxBytes) and how
// long it may be cached.
func (f *fetcher) get(ctx context.Context, docURL string, now time.Time) ([]byte, time.Duration, *ClientError) {
	fail := func(reason, description string) ([]byte, time.Duration, *ClientError) {
		return nil, 0, &ClientError{Err: ErrInvalidClientMetadata, ClientID: docURL, Reason: reason,
			Description: "the client's metadata document at " + quoteURI(docURL) + " " + description}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return fail("invalid_url", "is not a valid URL")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mcpgate (client-id-metadata-document fetch)")
	resp, err := f.client.Do(req)
	if err != nil {
		var blocked *blockedAddrError
		var dnsErr *dnsError
		var netErr net.Error
		switch {
		case errors.As(err, &blocked):
			return fail("address_not_allowed", "is on a host that resolves to an address this server does not fetch from (private, loopback or other special-purpose addresses)")
		case errors.As(err, &dnsErr):
			return fail("dns_failed", "is on a host name that could not be resolved")
		case errors.As(err, &netErr) && netErr.Timeout():
			return fail("timeout", "could not be fetched in time")
		}
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			return fail("tls_failed", "is served with a TLS certificate that could not be verified")
		}
		return fail("fetch_failed", "could not be fetched")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fail("redirect", "answered with a redirect (HTTP "+strconv.Itoa(resp.StatusCode)+"), which is not followed: serve the document at the client_id URL itself")
	case resp.StatusCode != http.StatusOK:
		// §4: "The Client ID Metadata Document MUST be served with a 200
		// OK HTTP status code."
		return fail("http_status", "answered HTTP "+strconv.Itoa(resp.StatusCode)+" instead of 200")
	case resp.ContentLength > f.maxBytes:
		return fail("too_large", "is larger than "+strconv.FormatInt(f.maxBytes, 10)+" bytes")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	switch {
	case err != nil:
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			return fail("timeout", "could not be fetched in time")
		}
		return fail("fetch_failed", "could not be read completely")
	case int64(len(body)) > f.maxBytes:
		return fail("too_large", "is larger than "+strconv.FormatInt(f.maxBytes, 10)+" bytes")
	case !utf8.Valid(body) || strings.ContainsRune(string(body), 0):
		return fail("invalid_json", "is not valid UTF-8 JSON")
	}
	return body, cacheLifetime(resp.Header, now, f.defCache, f.minCache, f.maxCache), nil
}

// cacheLifetime reads how long a response may be reused (RFC 9111 §4.2.1:
// max-age, else Expires minus Date), clamped to [lo, hi]; def when the
// response says nothing. no-store and no-cache give the lower bound
// (§5.2: the authorization server "MAY define its own upper and/or lower
// bounds on an acceptable cache lifetime").
func cacheLifetime(h http.Header, now time.Time, def, lo, hi time.Duration) time.Duration {
	d := def
	maxAge, haveMaxAge, noCache := int64(0), false, false
	for _, v := range h.Values("Cache-Control") {
		for dir := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				noCache = true
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64); err == nil && n >= 0 && !haveMaxAge {
					maxAge, haveMaxAge = n, true
				}
			}
		}
	}
	switch {
	case noCache:
		d = 0
	case haveMaxAge:
		if maxAge > int64(hi/time.Second) {
			maxAge = int64(hi / time.Second)
		}
		d = time.Duration(maxAge) * time.Second
		if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
			d -= time.Duration(min(age, maxAge)) * time.Second
		}
	case h.Get("Expires") != "":
		exp, err := http.ParseTime(h.Get("Expires"))
		if err != nil {
			d = 0 // RFC 9111 §5.3: an invalid Expires means already expired
			break
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			date = now
		}
		d = exp.Sub(date)
	}
	return min(max(d, lo), hi)
}

// checkCIMDURL applies §3 to a client_id that is to be fetched, and the
// operator's host policy. A Client Identifier URL "MUST use the https URL
// scheme", "MUST NOT contain a userinfo component", "MUST contain a path
// component", "MUST NOT contain single-dot or double-dot path components"
// and "MUST NOT contain a fragment component" (a query is allowed: it is
// only a SHOULD NOT).
func (c *Clients) checkCIMDURL(raw string) *ClientError {
	bad := func(reason, description string) *ClientError {
		return &ClientError{Err: ErrInvalidClientMetadata, ClientID: raw, Reason: reason,
			Description: "the client_id " + quoteURI(raw) + " " + description}
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Scheme != "https" || u.Opaque != "" || !strings.HasPrefix(raw, "https://"):
		return bad("invalid_url", "is not a valid https URL")
	case u.User != nil:
		return bad("invalid_url", "contains a userinfo part, which a Client Identifier URL must not have")
	case strings.Contains(raw, "#"):
		return bad("invalid_url", "contains a fragment, which a Client Identifier URL must not have")
	case strings.Contains(raw, "\\"):
		return bad("invalid_url", "contains a backslash")
	case u.EscapedPath() == "":
		return bad("invalid_url", "has no path: a Client Identifier URL names a document, e.g. https://example.com/client.json")
	}
	if msg := checkAuthority(u); msg != "" {
		return bad("invalid_url", "has an invalid host: "+msg)
	}
	for seg := range strings.SplitSeq(u.EscapedPath(), "/") {
		if s := strings.ToLower(seg); s == "." || s == ".." || s == "%2e" || s == "%2e%2e" || s == ".%2e" || s == "%2e." {
			return bad("invalid_url", "contains a dot segment in its path")
		}
	}
	host := strings.ToLower(u.Hostname())
	if hostListed(host, c.opts.CIMDDenyHosts) || (len(c.opts.CIMDAllowHosts) > 0 && !hostListed(host, c.opts.CIMDAllowHosts)) {
		return bad("host_not_allowed", "is on a host whose clients this server does not accept")
	}
	return nil
}

// hostListed reports whether host matches an entry: "example.com" matches
// itself, ".example.com" and "*.example.com" match its subdomains.
func hostListed(host string, list []string) bool {
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
		case strings.HasPrefix(e, "*."):
			if strings.HasSuffix(host, e[1:]) {
				return true
			}
		case strings.HasPrefix(e, "."):
			if strings.HasSuffix(host, e) {
				return true
			}
		case host == e:
			return true
		}
	}
	return false
}

// urlHost returns the host name of a URL, or "".
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// resolveCIMD returns the client of a Client ID Metadata Document URL.
// allowStale: use a cached document however old (client authentication);
// otherwise refetch once the cache lifetime is over (authorization).
func (c *Clients) resolveCIMD(ctx context.Context, clientID string, allowStale bool) (store.OAuthClient, error) {
	cached, err := c.st.GetOAuthClient(ctx, clientID)
	switch {
	case err == nil && cached.Kind != store.ClientKindCIMD:
		// §7.2: an operator pre-registered this URL; nothing is fetched.
		return cached, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.OAuthClient{}, err
	}
	// The URL rules and the host policy apply to cached clients too, so a
	// host the operator denies later stops working at once.
	if cerr := c.checkCIMDURL(clientID); cerr != nil {
		return store.OAuthClient{}, cerr
	}
	if err == nil && (allowStale || c.opts.Now().Before(cached.CacheUntil)) {
		return cached, nil
	}
	return c.fetchShared(ctx, clientID, cached)
}

// fetchShared fetches a document once for every concurrent resolution of
// the same URL. The fetch runs detached from the first caller's
// cancellation (bounded by the fetch timeout), so one impatient caller
// does not fail the others.
func (c *Clients) fetchShared(ctx context.Context, docURL string, prev store.OAuthClient) (store.OAuthClient, error) {
	c.mu.Lock()
	if f, ok := c.flights[docURL]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.c, f.err
		case <-ctx.Done():
			return store.OAuthClient{}, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	c.flights[docURL] = f
	c.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.CIMDTimeout+2*time.Second)
	f.c, f.err = c.fetchAndStore(fctx, docURL, prev)
	cancel()

	c.mu.Lock()
	delete(c.flights, docURL)
	c.mu.Unlock()
	close(f.done)
	return f.c, f.err
}

// fetchAndStore fetches, validates and caches one document, auditing the
// outcome (client.fetched or client.fetch_failed with the reason).
func (c *Clients) fetchAndStore(ctx context.Context, docURL string, prev store.OAuthClient) (store.OAuthClient, error) {
	now := c.opts.Now()
	failed := func(cerr *ClientError) (store.OAuthClient, error) {
		c.opts.Logger.Info("oauth: client metadata document refused", "client_id", docURL, "reason", cerr.Reason)
		c.rec.Record(ctx, audit.Event{
			Time: now, Type: EventClientFetchFailed, Outcome: store.OutcomeDeny, Reason: cerr.Reason,
			Details: map[string]any{"client_id": docURL, "host": urlHost(docURL), "description": cerr.Description},
		})
		return store.OAuthClient{}, cerr
	}
	body, ttl, cerr := c.fetch.get(ctx, docURL, now)
	if cerr != nil {
		return failed(cerr)
	}
	md, merr := parseClientMetadata(body, fromDocument, docURL, c.opts.SupportedScopes)
	if merr != nil {
		return failed(&ClientError{Err: ErrInvalidClientMetadata, ClientID: docURL, Reason: merr.reason,
			Description: "the client's metadata document at " + quoteURI(docURL) + " is invalid: " + merr.description})
	}
	cl := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: docURL, Kind: store.ClientKindCIMD, Name: md.Name,
		RedirectURIs: md.RedirectURIs, GrantTypes: md.GrantTypes, ResponseTypes: md.ResponseTypes,
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod, ApplicationType: md.ApplicationType, Scopes: md.Scopes,
		ClientURI: md.ClientURI, LogoURI: md.LogoURI, MetadataURL: docURL, MetadataJSON: string(body),
		SoftwareID: md.SoftwareID, SoftwareVersion: md.SoftwareVersion,
		CreatedAt: toMillis(now), FetchedAt: toMillis(now), CacheUntil: toMillis(now.Add(ttl)),
	}
	stored, err := c.st.UpsertCIMDClient(ctx, cl)
	if errors.Is(err, store.ErrConflict) {
		// An operator registered this URL meanwhile: theirs wins.
		return c.st.GetOAuthClient(ctx, docURL)
	}
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("oauth: caching client metadata: %w", err)
	}
	details := clientDetails(stored, map[string]any{"host": urlHost(docURL), "cache_seconds": int64(ttl / time.Second)})
	if prev.ClientID != "" {
		// §8.4: documents change over time; say when one did.
		details["changed"] = prev.MetadataJSON != stored.MetadataJSON
	}
	c.rec.Record(ctx, audit.Event{Time: now, Type: EventClientFetched, Outcome: store.OutcomeAllow, CredentialID: stored.ID, Details: details})
	return stored, nil
}
