package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// wantClientError checks that err is a *ClientError of kind and reason
// whose description mentions every one of wants.
func wantClientError(t *testing.T, err error, kind error, reason string, wants ...string) {
	t.Helper()
	var cerr *ClientError
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v (%T), want a *ClientError", err, err)
	}
	if !errors.Is(err, kind) || cerr.Reason != reason {
		t.Errorf("err = %v [%s], want %v [%s]", err, cerr.Reason, kind, reason)
	}
	for _, w := range wants {
		if !strings.Contains(cerr.Description, w) {
			t.Errorf("description %q does not mention %q", cerr.Description, w)
		}
	}
}

func TestCIMDResolveAndCache(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{})
	id := d.url("example.com", "/oauth/client.json")
	d.set("/oauth/client.json", docResponse{body: cimdDoc(id, `,"client_uri":"https://example.com","logo_uri":"https://example.com/logo.png","unknown":{"x":1}`),
		headers: map[string]string{"Cache-Control": "public, max-age=600"}})

	cl, err := e.c.Resolve(t.Context(), id)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if cl.Kind != store.ClientKindCIMD || cl.ClientID != id || cl.MetadataURL != id || cl.Name != "Example MCP Client" ||
		cl.ApplicationType != AppTypeNative || cl.TokenEndpointAuthMethod != AuthMethodNone || !cl.Public() ||
		cl.LogoURI != "https://example.com/logo.png" || len(cl.RedirectURIs) != 2 {
		t.Errorf("resolved client = %+v", cl)
	}
	if !cl.CacheUntil.Equal(toMillis(e.clock.Now().Add(10 * time.Minute))) {
		t.Errorf("CacheUntil = %v, want now + max-age", cl.CacheUntil)
	}
	if !MatchRedirectURI(cl, "http://127.0.0.1:49152/callback") || !MatchRedirectURI(cl, "http://localhost:8080/callback") {
		t.Error("the document's loopback redirect URIs do not accept an ephemeral port")
	}
	if got := ClientDisplayHost(cl); got != "example.com" {
		t.Errorf("ClientDisplayHost = %q", got)
	}
	ev := e.rec.last(t, EventClientFetched)
	if ev.Details["host"] != "example.com" || ev.Details["cache_seconds"] != int64(600) {
		t.Errorf("fetched event = %+v", ev.Details)
	}

	// Fresh: served from the cache (the store), no fetch.
	e.clock.Advance(9 * time.Minute)
	if _, err := e.c.Resolve(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if n := d.hits.Load(); n != 1 {
		t.Errorf("%d fetches while the cache was fresh, want 1", n)
	}
	// Stale: fetched again; a changed document replaces the cached one.
	d.set("/oauth/client.json", docResponse{body: strings.Replace(cimdDoc(id, ""), "Example MCP Client", "Renamed", 1)})
	e.clock.Advance(2 * time.Minute)
	cl2, err := e.c.Resolve(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.hits.Load() != 2 || cl2.Name != "Renamed" || cl2.ID != cl.ID {
		t.Errorf("after expiry: %d fetches, client %+v", d.hits.Load(), cl2)
	}
	if ev := e.rec.last(t, EventClientFetched); ev.Details["changed"] != true {
		t.Errorf("refetch of a changed document: changed = %v", ev.Details["changed"])
	}
	// No caching headers: the default lifetime (1 h).
	if !cl2.CacheUntil.Equal(toMillis(e.clock.Now().Add(time.Hour))) {
		t.Errorf("CacheUntil = %v, want now + 1h", cl2.CacheUntil)
	}
}

func TestCIMDNoStoreUsesLowerBound(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{})
	id := d.url("example.com", "/c.json")
	d.set("/c.json", docResponse{body: cimdDoc(id, ""), headers: map[string]string{"Cache-Control": "no-store"}})
	for range 3 {
		if _, err := e.c.Resolve(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(20 * time.Second)
	}
	if n := d.hits.Load(); n != 1 {
		t.Errorf("no-store document fetched %d times within a minute, want 1 (lower bound)", n)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.c.Resolve(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if n := d.hits.Load(); n != 2 {
		t.Errorf("fetches after the lower bound = %d, want 2", n)
	}
}

func TestCacheLifetime(t *testing.T) {
	now := time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)
	lo, hi, def := time.Minute, 24*time.Hour, time.Hour
	tests := []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"none", nil, def},
		{"max-age", map[string]string{"Cache-Control": "max-age=600"}, 10 * time.Minute},
		{"max-age quoted", map[string]string{"Cache-Control": `public, max-age="900"`}, 15 * time.Minute},
		{"max-age with age", map[string]string{"Cache-Control": "max-age=600", "Age": "300"}, 5 * time.Minute},
		{"max-age below bound", map[string]string{"Cache-Control": "max-age=5"}, lo},
		{"max-age 0", map[string]string{"Cache-Control": "max-age=0"}, lo},
		{"max-age above bound", map[string]string{"Cache-Control": "max-age=31536000"}, hi},
		{"max-age overflow", map[string]string{"Cache-Control": "max-age=99999999999999999999"}, def},
		{"max-age negative", map[string]string{"Cache-Control": "max-age=-5"}, def},
		{"no-cache", map[string]string{"Cache-Control": "no-cache"}, lo},
		{"no-store wins", map[string]string{"Cache-Control": "max-age=600, no-store"}, lo},
		{"expires", map[string]string{"Expires": now.Add(2 * time.Hour).Format(http.TimeFormat), "Date": now.Format(http.TimeFormat)}, 2 * time.Hour},
		{"expires without date", map[string]string{"Expires": now.Add(30 * time.Minute).Format(http.TimeFormat)}, 30 * time.Minute},
		{"expires invalid", map[string]string{"Expires": "0"}, lo},
		{"expires past", map[string]string{"Expires": now.Add(-time.Hour).Format(http.TimeFormat)}, lo},
		{"max-age beats expires", map[string]string{"Cache-Control": "max-age=120", "Expires": now.Add(5 * time.Hour).Format(http.TimeFormat)}, 2 * time.Minute},
	}
	for _, tc := range tests {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		if got := cacheLifetime(h, now, def, lo, hi); got != tc.want {
			t.Errorf("%s: cacheLifetime = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCIMDDocumentRefusals(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{CIMDMaxBytes: 4096})
	d.set("/elsewhere.json", docResponse{body: `{}`})
	tests := []struct {
		name   string
		resp   func(id string) docResponse
		kind   error
		reason string
		want   string
	}{
		{"client_id mismatch", func(id string) docResponse {
			return docResponse{body: cimdDoc("https://example.com/other.json", "")}
		}, ErrInvalidClientMetadata, "client_id_mismatch", "is not the URL it was fetched from"},
		{"client_id differs by a default port", func(id string) docResponse {
			return docResponse{body: cimdDoc(strings.Replace(id, ":"+d.port(), "", 1), "")}
		}, ErrInvalidClientMetadata, "client_id_mismatch", "is not the URL"},
		{"client_id with trailing slash", func(id string) docResponse {
			return docResponse{body: cimdDoc(id+"/", "")}
		}, ErrInvalidClientMetadata, "client_id_mismatch", "is not the URL"},
		{"no client_id", func(id string) docResponse {
			return docResponse{body: `{"redirect_uris":["http://127.0.0.1/cb"]}`}
		}, ErrInvalidClientMetadata, "client_id_mismatch", "no client_id"},
		{"duplicate client_id", func(id string) docResponse {
			return docResponse{body: `{"client_id":"https://evil.example/x","client_id":"` + id + `","redirect_uris":["http://127.0.0.1/cb"]}`}
		}, ErrInvalidClientMetadata, "malformed_json", "appears twice"},
		{"no redirect_uris", func(id string) docResponse {
			return docResponse{body: `{"client_id":"` + id + `","client_name":"x"}`}
		}, ErrInvalidClientMetadata, errInvalidRedirectURI, "redirect_uris is required"},
		{"javascript redirect", func(id string) docResponse {
			return docResponse{body: `{"client_id":"` + id + `","redirect_uris":["javascript:alert(1)"]}`}
		}, ErrInvalidClientMetadata, errInvalidRedirectURI, "cannot be a redirect target"},
		{"http redirect on a public host", func(id string) docResponse {
			return docResponse{body: `{"client_id":"` + id + `","redirect_uris":["http://evil.example/cb"]}`}
		}, ErrInvalidClientMetadata, errInvalidRedirectURI, "not loopback"},
		{"client_secret", func(id string) docResponse {
			return docResponse{body: cimdDoc(id, `,"client_secret":"s3cret"`)}
		}, ErrInvalidClientMetadata, "secret_in_document", "client_secret"},
		{"shared-secret auth", func(id string) docResponse {
			return docResponse{body: strings.Replace(cimdDoc(id, ""), `"none"`, `"client_secret_basic"`, 1)}
		}, ErrInvalidClientMetadata, "unsupported_auth_method", "no shared secret"},
		{"private_key_jwt", func(id string) docResponse {
			return docResponse{body: strings.Replace(cimdDoc(id, `,"jwks_uri":"https://example.com/jwks"`), `"none"`, `"private_key_jwt"`, 1)}
		}, ErrInvalidClientMetadata, "unsupported_auth_method", "private_key_jwt"},
		{"only client_credentials", func(id string) docResponse {
			return docResponse{body: `{"client_id":"` + id + `","redirect_uris":["http://127.0.0.1/cb"],"grant_types":["client_credentials"]}`}
		}, ErrInvalidClientMetadata, "invalid_metadata", "authorization_code"},
		{"not JSON", func(id string) docResponse {
			return docResponse{body: `<html>hello</html>`, headers: map[string]string{"Content-Type": "text/html"}}
		}, ErrInvalidClientMetadata, "malformed_json", "JSON object"},
		{"invalid UTF-8", func(id string) docResponse {
			return docResponse{body: `{"client_id":"` + id + "\",\"client_name\":\"\xff\xfe\",\"redirect_uris\":[\"http://127.0.0.1/cb\"]}"}
		}, ErrInvalidClientMetadata, "invalid_json", "UTF-8"},
		{"oversized, chunked", func(id string) docResponse {
			return docResponse{body: cimdDoc(id, `,"pad":"`+strings.Repeat("x", 8000)+`"`)}
		}, ErrInvalidClientMetadata, "too_large", "larger than 4096 bytes"},
		{"oversized, announced", func(id string) docResponse {
			body := cimdDoc(id, `,"pad":"`+strings.Repeat("x", 5000)+`"`)
			return docResponse{body: body, headers: map[string]string{"Content-Length": strconv.Itoa(len(body))}}
		}, ErrInvalidClientMetadata, "too_large", "larger than"},
		{"404", func(id string) docResponse {
			return docResponse{status: http.StatusNotFound, body: `{}`}
		}, ErrInvalidClientMetadata, "http_status", "HTTP 404"},
		{"500", func(id string) docResponse {
			return docResponse{status: http.StatusInternalServerError, body: cimdDoc(id, "")}
		}, ErrInvalidClientMetadata, "http_status", "HTTP 500"},
		{"redirect to another host", func(id string) docResponse {
			return docResponse{status: http.StatusFound, headers: map[string]string{"Location": "https://evil.example/client.json"}}
		}, ErrInvalidClientMetadata, "redirect", "not followed"},
		{"redirect on the same host", func(id string) docResponse {
			return docResponse{status: http.StatusMovedPermanently, headers: map[string]string{"Location": "/elsewhere.json"}}
		}, ErrInvalidClientMetadata, "redirect", "not followed"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := "/doc" + strconv.Itoa(i) + ".json"
			id := d.url("example.com", path)
			d.set(path, tc.resp(id))
			before := d.hits.Load()
			_, err := e.c.Resolve(t.Context(), id)
			wantClientError(t, err, tc.kind, tc.reason, tc.want)
			ev := e.rec.last(t, EventClientFetchFailed)
			if ev.Reason != tc.reason || ev.Outcome != store.OutcomeDeny || ev.Details["client_id"] != id {
				t.Errorf("audit event = %+v", ev)
			}
			// Errors and invalid documents are never cached (§5.2).
			if _, err := e.st.GetOAuthClient(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused document was stored: %v", err)
			}
			if n := d.hits.Load() - before; n != 1 {
				t.Errorf("%d requests to the document server, want 1 (redirects are not followed)", n)
			}
			// Fixed, the same URL works at once.
			d.set(path, docResponse{body: cimdDoc(id, "")})
			if _, err := e.c.Resolve(t.Context(), id); err != nil {
				t.Errorf("after fixing the document: %v", err)
			}
		})
	}
}

func TestCIMDURLRules(t *testing.T) {
	noDNS := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		t.Errorf("resolver called for %q: the URL should have been refused first", host)
		return nil, errors.New("no")
	})
	e := newEnv(t, ClientsOptions{Resolver: noDNS, CIMDDenyHosts: []string{"blocked.example", ".evil.example"}})
	tests := []struct {
		id     string
		kind   error
		reason string
	}{
		{"https://example.com", ErrInvalidClientMetadata, "invalid_url"},
		{"https://user:pw@example.com/client.json", ErrInvalidClientMetadata, "invalid_url"},
		{"https://example.com@evil.example/client.json", ErrInvalidClientMetadata, "invalid_url"},
		{"https://example.com/client.json#frag", ErrInvalidClientMetadata, "invalid_url"},
		{"https://example.com/a/../client.json", ErrInvalidClientMetadata, "invalid_url"},
		{"https://example.com/./client.json", ErrInvalidClientMetadata, "invalid_url"},
		{"https://example.com/%2e%2e/client.json", ErrInvalidClientMetadata, "invalid_url"},
		{`https://example.com\@evil.example/client.json`, ErrInvalidClientMetadata, "invalid_url"},
		{"https://exa_mple.com/client.json", ErrInvalidClientMetadata, "invalid_url"},
		{"https://example.com:/client.json", ErrInvalidClientMetadata, "invalid_url"},
		{"https://blocked.example/client.json", ErrInvalidClientMetadata, "host_not_allowed"},
		{"https://BLOCKED.example/client.json", ErrInvalidClientMetadata, "host_not_allowed"},
		{"https://a.b.evil.example/client.json", ErrInvalidClientMetadata, "host_not_allowed"},
		// Not CIMD URLs at all: unknown clients.
		{"http://example.com/client.json", ErrUnknownClient, "unknown_client"},
		{"HTTPS://example.com/client.json", ErrUnknownClient, "unknown_client"},
		{"https://exämple.com/client.json", ErrUnknownClient, "unknown_client"},
		{"https://example.com/client .json", ErrUnknownClient, "unknown_client"},
		{"", ErrUnknownClient, "unknown_client"},
		{"https://example.com/" + strings.Repeat("a", 3000), ErrUnknownClient, "unknown_client"},
	}
	for _, tc := range tests {
		_, err := e.c.Resolve(t.Context(), tc.id)
		var cerr *ClientError
		if !errors.As(err, &cerr) || !errors.Is(err, tc.kind) || cerr.Reason != tc.reason {
			t.Errorf("Resolve(%q) = %v, want %v [%s]", tc.id, err, tc.kind, tc.reason)
		}
	}

	allow := newEnv(t, ClientsOptions{Resolver: noDNS, CIMDAllowHosts: []string{"*.trusted.example", "exact.example"}})
	for _, id := range []string{"https://example.com/c.json", "https://trusted.example.evil/c.json", "https://sub.exact.example/c.json"} {
		_, err := allow.c.Resolve(t.Context(), id)
		wantClientError(t, err, ErrInvalidClientMetadata, "host_not_allowed")
	}
}

func TestCIMDAllowList(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{CIMDAllowHosts: []string{"*.example.com"}})
	id := d.url("app.example.com", "/c.json")
	d.set("/c.json", docResponse{body: cimdDoc(id, "")})
	if _, err := e.c.Resolve(t.Context(), id); err != nil {
		t.Errorf("allowed host refused: %v", err)
	}
	_, err := e.c.Resolve(t.Context(), d.url("example.com", "/c.json"))
	wantClientError(t, err, ErrInvalidClientMetadata, "host_not_allowed")
}

// TestCIMDSSRF: documents are fetched only from public addresses, checked
// on what the host name resolves to.
func TestCIMDSSRF(t *testing.T) {
	d := newDocServer(t)
	d.set("/c.json", docResponse{body: `{}`})
	answers := []struct {
		name  string
		addrs []string
	}{
		{"loopback", []string{"127.0.0.1"}},
		{"loopback elsewhere in 127/8", []string{"127.1.2.3"}},
		{"private 10/8", []string{"10.0.0.5"}},
		{"private 172.16/12", []string{"172.16.0.1"}},
		{"private 192.168/16", []string{"192.168.1.1"}},
		{"cloud metadata", []string{"169.254.169.254"}},
		{"CGNAT", []string{"100.100.100.200"}},
		{"unspecified", []string{"0.0.0.0"}},
		{"broadcast", []string{"255.255.255.255"}},
		{"multicast", []string{"224.0.0.1"}},
		{"documentation", []string{"198.51.100.7"}},
		{"IPv6 loopback", []string{"::1"}},
		{"IPv6 unspecified", []string{"::"}},
		{"AWS IPv6 metadata", []string{"fd00:ec2::254"}},
		{"IPv6 link-local", []string{"fe80::1"}},
		{"IPv6 multicast", []string{"ff02::1"}},
		{"IPv4-mapped loopback", []string{"::ffff:127.0.0.1"}},
		{"IPv4-mapped metadata", []string{"::ffff:169.254.169.254"}},
		{"NAT64 loopback", []string{"64:ff9b::7f00:1"}},
		{"6to4 loopback", []string{"2002:7f00:1::1"}},
		{"IPv4-compatible", []string{"::127.0.0.1"}},
		{"one private among public", []string{"93.184.215.14", "10.0.0.1"}},
		{"no answer", nil},
	}
	for _, tc := range answers {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, ClientsOptions{Resolver: staticResolver(tc.addrs...), CIMDRootCAs: d.roots()})
			before := d.hits.Load()
			_, err := e.c.Resolve(t.Context(), d.url("example.com", "/c.json"))
			reason := "address_not_allowed"
			if len(tc.addrs) == 0 {
				reason = "dns_failed"
			}
			wantClientError(t, err, ErrInvalidClientMetadata, reason)
			for _, a := range tc.addrs {
				if strings.Contains(err.Error(), a) {
					t.Errorf("the error tells the client the resolved address: %v", err)
				}
			}
			if d.hits.Load() != before {
				t.Error("the document server was reached")
			}
		})
	}
	// IP literals in the client_id are checked without DNS.
	noDNS := resolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		t.Error("resolver called for an IP literal")
		return nil, errors.New("no")
	})
	e := newEnv(t, ClientsOptions{Resolver: noDNS})
	for _, id := range []string{
		"https://127.0.0.1:" + d.port() + "/c.json",
		"https://[::1]:" + d.port() + "/c.json",
		"https://169.254.169.254/latest/meta-data/iam",
		"https://[::ffff:127.0.0.1]:" + d.port() + "/c.json",
		"https://[fd00:ec2::254]/latest/meta-data",
		"https://10.0.0.1/c.json",
	} {
		_, err := e.c.Resolve(t.Context(), id)
		wantClientError(t, err, ErrInvalidClientMetadata, "address_not_allowed")
	}
	// The test-only loopback switch admits loopback, nothing else.
	lo := newEnv(t, ClientsOptions{Resolver: staticResolver("10.0.0.5"), CIMDAllowLoopback: true})
	_, err := lo.c.Resolve(t.Context(), "https://example.com/c.json")
	wantClientError(t, err, ErrInvalidClientMetadata, "address_not_allowed")
}

// TestCIMDDNSRebinding: the name is resolved once and the connection goes
// to the address that was checked. A resolver that answers a public
// address first and loopback afterwards never gets the fetch to loopback.
func TestCIMDDNSRebinding(t *testing.T) {
	d := newDocServer(t)
	d.set("/c.json", docResponse{body: `{}`})
	var calls atomic.Int64
	rebinding := resolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		if calls.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil // public: passes the check
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil // then points at the server's loopback
	})
	e := newEnv(t, ClientsOptions{Resolver: rebinding, CIMDRootCAs: d.roots(), CIMDTimeout: 300 * time.Millisecond})
	_, err := e.c.Resolve(t.Context(), d.url("example.com", "/c.json"))
	if err == nil {
		t.Fatal("Resolve succeeded")
	}
	if d.hits.Load() != 0 {
		t.Error("the rebinding answer reached the loopback server")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("resolver called %d times for one fetch, want 1", n)
	}
}

// TestDialControl: the connect-time check refuses special addresses even
// when something dials them directly, past the resolution step.
func TestDialControl(t *testing.T) {
	d := newDocServer(t)
	f := newFetcher(ClientsOptions{CIMDTimeout: time.Second})
	_, err := f.dialer.DialContext(t.Context(), "tcp", "127.0.0.1:"+d.port())
	var blocked *blockedAddrError
	if !errors.As(err, &blocked) {
		t.Errorf("direct dial to loopback: err = %v, want a blockedAddrError", err)
	}
	for _, addr := range []string{"127.0.0.1:443", "10.1.2.3:443", "169.254.169.254:80", "[::1]:443", "[::ffff:127.0.0.1]:443", "[fd00:ec2::254]:80", "not-an-ip:443"} {
		if err := f.control("tcp", addr, nil); err == nil {
			t.Errorf("control(%s) allowed it", addr)
		}
	}
	for _, addr := range []string{"93.184.215.14:443", "[2606:2800:220:1:248:1893:25c8:1946]:443"} {
		if err := f.control("tcp", addr, nil); err != nil {
			t.Errorf("control(%s) = %v, want allowed", addr, err)
		}
	}
}

func TestAddressBlocked(t *testing.T) {
	public := []string{"93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "100.63.255.255", "100.128.0.1", "172.32.0.1", "192.169.0.1"}
	special := []string{"0.1.2.3", "10.255.255.255", "100.64.0.1", "127.0.0.1", "169.254.0.1", "172.31.255.255", "192.0.0.192",
		"192.0.2.1", "192.88.99.1", "192.168.0.1", "198.18.0.1", "198.19.255.255", "203.0.113.1", "224.0.0.251", "239.255.255.250",
		"240.0.0.1", "255.255.255.255", "::", "::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "100::1", "2001::1", "2001:db8::1",
		"2002:808:808::1", "3fff::1", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1"}
	for _, s := range public {
		if r := addressBlocked(netip.MustParseAddr(s), false); r != "" {
			t.Errorf("addressBlocked(%s) = %q, want public", s, r)
		}
	}
	for _, s := range special {
		if r := addressBlocked(netip.MustParseAddr(s), false); r == "" {
			t.Errorf("addressBlocked(%s) allowed a special-purpose address", s)
		}
	}
	if r := addressBlocked(netip.MustParseAddr("fe80::1%eth0"), true); r == "" {
		t.Error("scoped address allowed")
	}
	if addressBlocked(netip.MustParseAddr("127.0.0.1"), true) != "" || addressBlocked(netip.MustParseAddr("::1"), true) != "" {
		t.Error("allowLoopback does not admit loopback")
	}
	if addressBlocked(netip.MustParseAddr("10.0.0.1"), true) == "" {
		t.Error("allowLoopback admits a private address")
	}
}

func TestCIMDPreRegisteredURLWins(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{})
	id := d.url("example.com", "/partner.json")
	d.set("/partner.json", docResponse{body: strings.Replace(cimdDoc(id, ""), "Example MCP Client", "Impostor", 1)})
	static := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: id, Kind: store.ClientKindStatic, Name: "Partner (operator)",
		RedirectURIs: []string{"https://partner.example.com/cb"}, GrantTypes: []string{GrantAuthorizationCode},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: AuthMethodNone,
	}
	if err := e.st.CreateOAuthClient(t.Context(), static); err != nil {
		t.Fatal(err)
	}
	cl, err := e.c.Resolve(t.Context(), id)
	if err != nil || cl.Kind != store.ClientKindStatic || cl.Name != "Partner (operator)" {
		t.Errorf("Resolve = %+v, %v; want the operator's client", cl, err)
	}
	if d.hits.Load() != 0 {
		t.Error("a pre-registered URL was fetched")
	}
}

func TestCIMDConcurrentResolveFetchesOnce(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{})
	id := d.url("example.com", "/slow.json")
	d.set("/slow.json", docResponse{body: cimdDoc(id, ""), delay: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := e.c.Resolve(t.Context(), id); err != nil {
				t.Errorf("concurrent Resolve: %v", err)
			}
		})
	}
	wg.Wait()
	if n := d.hits.Load(); n != 1 {
		t.Errorf("10 concurrent resolutions fetched %d times, want 1", n)
	}
	if n := len(e.rec.of(EventClientFetched)); n != 1 {
		t.Errorf("%d client.fetched events, want 1", n)
	}
}

func TestCIMDTimeout(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{CIMDTimeout: 200 * time.Millisecond})
	id := d.url("example.com", "/hang.json")
	d.set("/hang.json", docResponse{body: cimdDoc(id, ""), delay: time.Second})
	start := time.Now()
	_, err := e.c.Resolve(t.Context(), id)
	wantClientError(t, err, ErrInvalidClientMetadata, "timeout")
	if time.Since(start) > 900*time.Millisecond {
		t.Errorf("Resolve took %v with a 200ms timeout", time.Since(start))
	}
}

func TestCIMDUntrustedCertificate(t *testing.T) {
	d := newDocServer(t)
	d.set("/c.json", docResponse{body: `{}`})
	// No CIMDRootCAs: the test server's self-signed certificate is refused.
	e := newEnv(t, ClientsOptions{Resolver: staticResolver("127.0.0.1"), CIMDAllowLoopback: true})
	_, err := e.c.Resolve(t.Context(), d.url("example.com", "/c.json"))
	wantClientError(t, err, ErrInvalidClientMetadata, "tls_failed")
}
