package tokens

import (
	"testing"
	"time"
)

func TestOptionsValidation(t *testing.T) {
	st := sqliteStore(t)
	for name, o := range map[string]Options{
		"no issuer":                {},
		"trailing slash":           {Issuer: testIssuer + "/"},
		"query":                    {Issuer: testIssuer + "?x=1"},
		"fragment":                 {Issuer: testIssuer + "#x"},
		"not a URL":                {Issuer: "mcpgate"},
		"ftp":                      {Issuer: "ftp://mcpgate.example.com"},
		"userinfo":                 {Issuer: "https://u:p@mcpgate.example.com"},
		"HS256":                    {Issuer: testIssuer, Algorithm: "HS256"},
		"none":                     {Issuer: testIssuer, Algorithm: "none"},
		"negative TTL":             {Issuer: testIssuer, AccessTokenTTL: -time.Hour},
		"TTL of a week":            {Issuer: testIssuer, AccessTokenTTL: 7 * 24 * time.Hour},
		"ID TTL below 1s":          {Issuer: testIssuer, IDTokenTTL: time.Millisecond},
		"lead below JWKS cache":    {Issuer: testIssuer, PublishLead: time.Minute},
		"rotate every minute":      {Issuer: testIssuer, RotateEvery: time.Minute},
		"refresh slower than lead": {Issuer: testIssuer, RefreshEvery: time.Hour},
	} {
		o.Logger = quiet
		if _, err := NewIssuer(t.Context(), st, serverKey("k"), o); err == nil {
			t.Errorf("%s: NewIssuer succeeded", name)
		}
	}
	if _, err := NewIssuer(t.Context(), st, make([]byte, 16), Options{Issuer: testIssuer, Logger: quiet}); err == nil {
		t.Error("a 16-byte server key was accepted")
	}
	for _, iss := range []string{testIssuer, "https://mcpgate.example.com/tenant/a", "http://127.0.0.1:8080"} {
		i, err := NewIssuer(t.Context(), st, serverKey("test"), Options{Issuer: iss, Logger: quiet})
		if err != nil {
			t.Errorf("issuer %q refused: %v", iss, err)
			continue
		}
		if i.Issuer() != iss || i.AccessTokenTTL() != DefaultAccessTokenTTL {
			t.Errorf("Issuer() = %q, AccessTokenTTL() = %v", i.Issuer(), i.AccessTokenTTL())
		}
	}
}
