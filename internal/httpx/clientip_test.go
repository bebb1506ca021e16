package httpx

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIPBehind(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies configured: the peer, header ignored", "203.0.113.7:1234", []string{"198.51.100.1"}, nil, "203.0.113.7"},
		{"peer is not a trusted proxy: header ignored", "203.0.113.7:1234", []string{"198.51.100.1"}, trusted, "203.0.113.7"},
		{"one proxy", "10.0.0.2:1234", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"client-written entries left of the real one are ignored", "10.0.0.2:1234", []string{"1.2.3.4, 198.51.100.1"}, trusted, "198.51.100.1"},
		{"two proxies, two headers", "10.0.0.2:1234", []string{"5.6.7.8, 198.51.100.1", "10.0.0.9"}, trusted, "198.51.100.1"},
		{"entry with a port", "10.0.0.2:1234", []string{"198.51.100.1:5555"}, trusted, "198.51.100.1"},
		{"IPv6 entry with a port", "[fd00::1]:1234", []string{"[2001:db8::5]:5555"}, trusted, "2001:db8::5"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:1234", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"no header: the proxy", "10.0.0.2:1234", nil, trusted, "10.0.0.2"},
		{"garbage stops the walk at the last trusted hop", "10.0.0.2:1234", []string{"198.51.100.1, not-an-ip, 10.0.0.7"}, trusted, "10.0.0.7"},
		{"only trusted hops: the farthest", "10.0.0.2:1234", []string{"10.0.0.8, 10.0.0.7"}, trusted, "10.0.0.8"},
		{"zone ids are not addresses", "10.0.0.2:1234", []string{"fe80::1%eth0"}, trusted, "10.0.0.2"},
		{"a long chain stops after 20 hops", "10.0.0.2:1234", []string{"198.51.100.1," + strings.Repeat("10.0.0.3,", 30) + "10.0.0.3"}, trusted, "10.0.0.3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIPBehind(r, c.trusted); got != c.want {
				t.Errorf("ClientIPBehind = %q, want %q", got, c.want)
			}
		})
	}
}
