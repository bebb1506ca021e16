package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestTrustedProxies(t *testing.T) {
	c := Defaults()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterServe(fs)
	if err := ApplyEnv(fs, func(k string) string {
		return map[string]string{"MCPGATE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,fd00::/8,::ffff:10.1.0.0/112"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	got, err := c.TrustedProxyPrefixes()
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.1.0.0/16"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("TrustedProxyPrefixes = %v, %v; want %v", got, err, want)
	}

	bad := Defaults()
	bad.TrustedProxies = []string{"0.0.0.0/0", "::/0", "10.0.0.300", "proxy.example.com", "fe80::1%eth0", "::ffff:0:0/95", "::ffff:0.0.0.0/96"}
	err = bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad trusted proxies")
	}
	for _, frag := range []string{`"0.0.0.0/0": covers every address`, `"::/0": covers every address`, `"10.0.0.300": not an IP`,
		`"proxy.example.com": not an IP`, `"fe80::1%eth0": not an IP`, `"::ffff:0:0/95": write IPv4 ranges in IPv4 form`, `"::ffff:0.0.0.0/96": covers every address`} {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("Validate error lacks %q:\n%v", frag, err)
		}
	}
}
