package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// TrustedProxyPrefixes parses --trusted-proxies: IP addresses ("10.0.0.5")
// and CIDR ranges ("10.0.0.0/8", "fd00::/8"). A range covering every
// address is refused: trusting the whole internet would let any client
// choose its own address (and so its own rate-limit budget) through
// X-Forwarded-For.
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []string
	for _, raw := range c.TrustedProxies {
		s := strings.TrimSpace(raw)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil && a.Zone() == "" {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err == nil && p.IsValid() && p.Addr().Is4In6() && p.Bits() >= 96 {
			// ::ffff:a.b.c.d/n is the IPv4 range a.b.c.d/(n-96): judge
			// (and keep) it in that form, so ::ffff:0.0.0.0/96 is the
			// whole IPv4 internet, not a /96.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		switch {
		case err != nil || !p.IsValid():
			errs = append(errs, fmt.Sprintf("--trusted-proxies %s: not an IP address or CIDR range", strconv.Quote(clipStr(s))))
		case p.Addr().Is4In6():
			errs = append(errs, fmt.Sprintf("--trusted-proxies %s: write IPv4 ranges in IPv4 form", strconv.Quote(s)))
		case p.Bits() == 0:
			errs = append(errs, fmt.Sprintf("--trusted-proxies %s: covers every address; list your proxies' addresses or private ranges", strconv.Quote(s)))
		default:
			out = append(out, p.Masked())
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}
