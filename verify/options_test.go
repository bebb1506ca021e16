package verify_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

func TestNewOptions(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	keys := staticKeys(t, k)
	for name, o := range map[string]verify.Options{
		"no issuer":         {Audience: testAudience, Keys: keys},
		"no audience":       {Issuer: testIssuer, Keys: keys},
		"no keys":           {Issuer: testIssuer, Audience: testAudience},
		"unknown algorithm": {Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []string{"ES257"}},
		"HMAC":              {Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []string{"HS256"}},
		"none":              {Issuer: testIssuer, Audience: testAudience, Keys: keys, Algorithms: []string{"none"}},
	} {
		if _, err := verify.New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	v, err := verify.New(verify.Options{Issuer: testIssuer, Audience: testAudience, Keys: keys})
	if err != nil || v.Issuer() != testIssuer || v.Audience() != testAudience {
		t.Errorf("New = %v, %v", v, err)
	}
}
