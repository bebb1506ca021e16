package httpx

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many X-Forwarded-For entries are examined:
// a real chain of proxies is short; a client can send thousands.
const maxForwardedHops = 20

// ClientIPBehind is the client address of r when the listed proxies sit in
// front of mcpgate. The TCP peer is the answer unless it is a trusted
// proxy; then X-Forwarded-For is read from the right (each proxy appends
// the address it received the request from), skipping trusted proxies,
// and the first address that is not one is the client. Entries left of it
// were written by the client and are ignored, so a client cannot choose
// its own address (the rightmost-untrusted rule). A malformed entry stops
// the walk: the last trusted hop is the best address known.
func ClientIPBehind(r *http.Request, trusted []netip.Prefix) string {
	peer := ClientIP(r)
	if len(trusted) == 0 {
		return peer
	}
	addr, err := netip.ParseAddr(peer)
	if err != nil || !inPrefixes(addr.Unmap(), trusted) {
		return peer
	}
	best := addr.Unmap()
	hops := 0
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			hops++
			if hops > maxForwardedHops {
				return best.String()
			}
			a, ok := forwardedAddr(parts[j])
			if !ok {
				return best.String()
			}
			if !inPrefixes(a, trusted) {
				return a.String()
			}
			best = a
		}
	}
	return best.String()
}

// forwardedAddr parses one X-Forwarded-For entry: an IP address, possibly
// with a port ("192.0.2.1:5000", "[2001:db8::1]:5000").
func forwardedAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil && a.Zone() == "" {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
