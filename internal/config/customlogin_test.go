package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCustomLoginValidation(t *testing.T) {
	long := strings.Repeat("x", 32)
	file := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(file, []byte(long+"\n"), 0o600)
	for _, tc := range []struct {
		name               string
		url, secret, sfile string
		only               bool
		wantErr            string
	}{
		{name: "off"},
		{name: "ok", url: "https://app.example.com/login", secret: long},
		{name: "ok file", url: "http://127.0.0.1:9090/login", sfile: file},
		{name: "short", url: "https://app.example.com/login", secret: "short", wantErr: "at least 32 bytes"},
		{name: "both", url: "https://app.example.com/login", secret: long, sfile: file, wantErr: "set only one"},
		{name: "http", url: "http://app.example.com/login", secret: long, wantErr: "must use https"},
		{name: "relative", url: "/login", secret: long, wantErr: "absolute https URL"},
		{name: "no url", secret: long, only: true, wantErr: "set --custom-login-url"},
	} {
		c := Defaults()
		c.CustomLoginURL, c.CustomLoginSecret, c.CustomLoginSecretFile, c.CustomLoginOnly = tc.url, tc.secret, tc.sfile, tc.only
		errs := strings.Join(c.validateCustomLogin(), "\n")
		if (tc.wantErr == "") != (errs == "") || !strings.Contains(errs, tc.wantErr) {
			t.Errorf("%s: errors %q, want %q", tc.name, errs, tc.wantErr)
		}
	}
	c := Defaults()
	c.CustomLoginURL = "https://app.example.com/login"
	if c.CustomLoginDisplayName() != "app.example.com" {
		t.Errorf("display name = %q", c.CustomLoginDisplayName())
	}
	if EnvName("custom-login-secret") != "MCPGATE_CUSTOM_LOGIN_SECRET" {
		t.Error("env twin")
	}
}
