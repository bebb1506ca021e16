package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestAccessTokenClaimsFlagAndEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"default: none", nil, nil, nil},
		{"flag", []string{"--access-token-claims", "organization_id,roles"}, nil, []string{"organization_id", "roles"}},
		{"environment twin, spaces around names", nil, map[string]string{"MCPGATE_ACCESS_TOKEN_CLAIMS": "organization_id, roles"}, []string{"organization_id", "roles"}},
		{"flag wins", []string{"--access-token-claims", "tenant"}, map[string]string{"MCPGATE_ACCESS_TOKEN_CLAIMS": "roles"}, []string{"tenant"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.DataDir = t.TempDir()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.RegisterStorage(fs)
			c.RegisterServe(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(fs, func(k string) string { return tc.env[k] }); err != nil {
				t.Fatal(err)
			}
			if got := c.AccessTokenClaimNames(); !slices.Equal(got, tc.want) {
				t.Errorf("AccessTokenClaimNames() = %q, want %q", got, tc.want)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestAccessTokenClaimsRefused(t *testing.T) {
	many := make([]string, 33)
	for i := range many {
		many[i] = "c" + strings.Repeat("x", i)
	}
	for _, tc := range []struct {
		claims []string
		want   string
	}{
		{[]string{"aud"}, `"aud": a protocol claim`},
		{[]string{"Scope"}, `"Scope": a protocol claim`},
		{[]string{"organization_id", "iss"}, `"iss": a protocol claim`},
		{[]string{"gid"}, "protocol claim"},
		{[]string{"typ"}, "protocol claim"},
		{[]string{"azp"}, "protocol claim"},
		{[]string{"auth_time"}, "protocol claim"},
		{[]string{"acr"}, "protocol claim"},
		{[]string{"amr"}, "protocol claim"},
		{[]string{"cnf"}, "protocol claim"},
		{[]string{"act"}, "protocol claim"},
		{[]string{"may_act"}, "protocol claim"},
		{[]string{"client_id"}, "protocol claim"},
		{[]string{"scp"}, "protocol claim"},
		{[]string{"jti"}, "protocol claim"},
		{[]string{"email"}, `"email": describes the user`},
		{[]string{"sub"}, "protocol claim"}, // reserved first
		{[]string{"roles", "roles"}, `"roles": named twice`},
		{[]string{"two words"}, "without spaces"},
		{[]string{strings.Repeat("n", 65)}, "1 to 64 bytes"},
		{[]string{"bad\x00"}, "1 to 64 bytes"},
		{many, "33 claims named, at most 32"},
	} {
		c := Defaults()
		c.DataDir = t.TempDir()
		c.AccessTokenClaims = tc.claims
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "--access-token-claims") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to say %q", tc.claims, err, tc.want)
		}
	}
}
