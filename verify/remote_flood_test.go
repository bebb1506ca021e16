package verify_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/verify"
)

// jwksServer serves a JWKS document (changeable) and counts fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	doc     []byte
	status  int
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	s := &jwksServer{doc: doc, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		doc, status := s.doc, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte, status int) {
	s.mu.Lock()
	s.doc, s.status = doc, status
	s.mu.Unlock()
}

func remoteKeys(t *testing.T, url string, clk *clock, minRefresh time.Duration) *verify.RemoteKeySet {
	t.Helper()
	ks, err := verify.RemoteJWKS(url+"/jwks", verify.RemoteOptions{
		MinRefreshInterval: minRefresh,
		CacheTTL:           365 * 24 * time.Hour, // only unknown kids refetch here
		Now:                clk.Now,
		Logger:             quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// flood verifies n tokens naming invented kids from 16 goroutines and
// checks every one is refused as unknown.
func flood(t *testing.T, v *verify.Verifier, k testKey, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < n; i += 16 {
				tok := mint(t, k, with(k.header(), "kid", fmt.Sprintf("bogus-%d", i)), claims(t0))
				if _, err := v.Verify(t.Context(), tok); !errors.Is(err, verify.ErrUnknownKey) {
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if w := wrong.Load(); w != 0 {
		t.Errorf("%d bogus-kid tokens were not refused as unknown_key", w)
	}
}

// TestUnknownKidFlood: tokens with invented kids may each want a JWKS
// refetch (the issuer may have rotated); RemoteJWKS allows one fetch per
// MinRefreshInterval, so a flood costs the issuer at most one request per
// interval, and valid tokens keep working throughout.
func TestUnknownKidFlood(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, jwks(k))
	clk := &clock{now: t0}
	v := newVerifier(t, remoteKeys(t, srv.URL, clk, time.Minute), func(o *verify.Options) { o.Now = clk.Now })
	valid := mint(t, k, k.header(), claims(t0))
	mustVerify(t, v, valid)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches after the first token = %d, want 1", n)
	}

	flood(t, v, k, 2000)
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("fetches after a flood within the interval = %d, want 1", n)
	}
	v.PurgeCache()
	mustVerify(t, v, valid) // the known key still answers from the cache of keys

	for round := range 3 {
		clk.Add(time.Minute)
		flood(t, v, k, 500)
		if n, want := srv.fetches.Load(), int64(2+round); n != want {
			t.Errorf("round %d: fetches = %d, want %d (one per interval)", round, n, want)
		}
	}
}

// TestUnknownKidFloodIssuerDown: when the JWKS endpoint fails, failed
// fetches are rate-limited the same way and the keys already known keep
// working; with no keys ever fetched, the error says keys are unavailable
// (a 503, not the token's fault).
func TestUnknownKidFloodIssuerDown(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	srv := newJWKSServer(t, nil)
	srv.set([]byte("oops"), http.StatusInternalServerError)
	clk := &clock{now: t0}
	v := newVerifier(t, remoteKeys(t, srv.URL, clk, time.Minute), func(o *verify.Options) { o.Now = clk.Now })
	valid := mint(t, k, k.header(), claims(t0))
	for range 50 {
		if _, err := v.Verify(t.Context(), valid); !errors.Is(err, verify.ErrKeysUnavailable) {
			t.Fatalf("Verify with the issuer down = %v, want ErrKeysUnavailable", err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("fetches while down = %d, want 1", n)
	}

	clk.Add(time.Minute)
	srv.set(jwks(k), http.StatusOK)
	mustVerify(t, v, valid)
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches after recovery = %d, want 2", n)
	}

	srv.set(nil, http.StatusBadGateway)
	clk.Add(time.Minute)
	v.PurgeCache()
	flood(t, v, k, 500) // one failed refetch, then rate-limited
	mustVerify(t, v, valid)
	if n := srv.fetches.Load(); n != 3 {
		t.Errorf("fetches = %d, want 3", n)
	}
}

func TestRemoteJWKSOptions(t *testing.T) {
	for _, u := range []string{"http://auth.example.com/jwks", "ftp://x/jwks", "/jwks", "https://user:pw@auth.example.com/jwks", "https://auth.example.com/jwks#f"} {
		if _, err := verify.RemoteJWKS(u, verify.RemoteOptions{}); err == nil {
			t.Errorf("RemoteJWKS(%q) succeeded, want an error", u)
		}
	}
	for _, u := range []string{"https://auth.example.com/jwks", "http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]/jwks"} {
		if _, err := verify.RemoteJWKS(u, verify.RemoteOptions{}); err != nil {
			t.Errorf("RemoteJWKS(%q) = %v", u, err)
		}
	}
}

// TestRemoteJWKSLimits: oversized, empty and non-JWKS documents are
// refused, and the keys fetched before stay in use.
func TestRemoteJWKSLimits(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	for name, doc := range map[string][]byte{
		"too big":        append(append([]byte(`{"keys":[],"pad":"`), make([]byte, verify.MaxJWKSBytes)...), `"}`...),
		"no usable key":  []byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`),
		"not a JWKS":     []byte(`[1,2,3]`),
		"no keys member": []byte(`{}`),
	} {
		t.Run(name, func(t *testing.T) {
			srv := newJWKSServer(t, doc)
			ks, err := verify.RemoteJWKS(srv.URL+"/jwks", verify.RemoteOptions{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if err := ks.Refresh(t.Context()); err == nil {
				t.Fatal("Refresh succeeded")
			}
			srv.set(jwks(k), http.StatusOK)
			if err := ks.Refresh(t.Context()); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			srv.set(doc, http.StatusOK)
			if err := ks.Refresh(t.Context()); err == nil {
				t.Fatal("Refresh succeeded")
			}
			if _, err := ks.LookupKey(t.Context(), "k1", "ES256"); err != nil {
				t.Errorf("key fetched earlier lost after a bad refresh: %v", err)
			}
		})
	}
}
