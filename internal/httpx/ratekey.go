package httpx

import (
	"net/http"
	"net/netip"
)

// ipv6SourceBits is the IPv6 prefix one client is counted under. Global
// unicast addresses end in a 64-bit interface identifier (RFC 4291 §2.5.4)
// that the host picks itself (privacy addresses, RFC 8981), and a /64 is
// the smallest block a site or a rented server gets: one host can use any
// of its 2^64 addresses.
const ipv6SourceBits = 64

// RateLimitKey maps a client IP to the key every per-client limit counts it
// under: an IPv6 address becomes its /64 ("2001:db8:1:2::/64"), an IPv4
// address (and an IPv4-mapped IPv6 one, "::ffff:192.0.2.1") stays the IPv4
// address. Keyed by the full IPv6 address, one host would get 2^64 budgets.
// Anything that does not parse as an address is returned as it is.
func RateLimitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(ipv6SourceBits) // cannot fail for an IPv6 address and 64 bits
	return p.String()
}

// RequestIP is the client IP of r: the one httpx.Common put in the
// context (trusted proxies applied), else the TCP peer.
func RequestIP(r *http.Request) string {
	if ip := InfoFrom(r.Context()).ClientIP; ip != "" {
		return ip
	}
	return ClientIP(r)
}

// ClientKey is the per-client rate-limit key of r: RateLimitKey of its
// client IP. Every per-IP limiter keys on it.
func ClientKey(r *http.Request) string { return RateLimitKey(RequestIP(r)) }

// CrossSite reports whether a browser says r was caused by a page of
// another site: Fetch Metadata's Sec-Fetch-Site is "cross-site" or
// "same-site" (a sibling subdomain is another party too). "same-origin",
// "none" (typed, bookmarked, or opened by another application) and no
// header at all (non-browser clients, browsers on plain http, which send
// Fetch Metadata to potentially trustworthy origins only) are not. The
// header is a forbidden header name: a page cannot set it (W3C Fetch
// Metadata Request Headers §2.4, §5.1).
func CrossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	return false
}
