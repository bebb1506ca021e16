package httpx

import (
	"net/http/httptest"
	"testing"
)

// TestRateLimitKey: one IPv6 /64 is one client for every per-IP limit;
// IPv4 addresses stay themselves, also when written IPv4-mapped.
func TestRateLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7":                  "198.51.100.7",
		"::ffff:198.51.100.7":           "198.51.100.7",
		"2001:db8:1:1::1":               "2001:db8:1:1::/64",
		"2001:db8:1:1:ffff:ffff:ffff:1": "2001:db8:1:1::/64",
		"2001:db8:1:2::1":               "2001:db8:1:2::/64",
		"fe80::1%eth0":                  "fe80::/64",
		"::1":                           "::/64",
		"not-an-ip":                     "not-an-ip",
		"":                              "",
	} {
		if got := RateLimitKey(in); got != want {
			t.Errorf("RateLimitKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientKey(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[2001:db8:7:7::beef]:443"
	if got := ClientKey(r); got != "2001:db8:7:7::/64" {
		t.Errorf("peer: %q", got)
	}
	r = r.WithContext(WithInfo(r.Context(), RequestInfo{ClientIP: "203.0.113.9"}))
	if got := ClientKey(r); got != "203.0.113.9" {
		t.Errorf("forwarded client IP: %q", got)
	}
}

func TestCrossSite(t *testing.T) {
	for v, want := range map[string]bool{"cross-site": true, "same-site": true, "same-origin": false, "none": false, "": false} {
		r := httptest.NewRequest("GET", "/login/custom", nil)
		if v != "" {
			r.Header.Set("Sec-Fetch-Site", v)
		}
		if got := CrossSite(r); got != want {
			t.Errorf("Sec-Fetch-Site %q: %v, want %v", v, got, want)
		}
	}
}
