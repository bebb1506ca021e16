package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestSessionDefaultsAndFlags(t *testing.T) {
	c := Defaults()
	want := map[string]time.Duration{
		"SessionIdleTimeout": 24 * time.Hour, "SessionLifetime": 720 * time.Hour,
		"SessionKeyLifetime": 168 * time.Hour, "Retention": 720 * time.Hour,
	}
	got := map[string]time.Duration{
		"SessionIdleTimeout": c.SessionIdleTimeout, "SessionLifetime": c.SessionLifetime,
		"SessionKeyLifetime": c.SessionKeyLifetime, "Retention": c.Retention,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("default %s = %v, want %v", k, got[k], v)
		}
	}
	fs := newServeFlags(&c)
	if err := fs.Parse([]string{"--session-idle-timeout", "2h", "--session-lifetime", "48h"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MCPGATE_RETENTION": "240h", "MCPGATE_SESSION_KEY_LIFETIME": "1h", "MCPGATE_SERVER_KEY": "x"}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.SessionIdleTimeout != 2*time.Hour || c.SessionLifetime != 48*time.Hour || c.Retention != 240*time.Hour || c.SessionKeyLifetime != time.Hour || c.ServerKey != "x" {
		t.Errorf("flags and env: %+v", c)
	}
}

func TestValidateSessionSettings(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	tests := []struct {
		name string
		set  func(c *Config)
		want string // "" = valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"server key", func(c *Config) { c.ServerKey = good }, ""},
		{"url-safe unpadded server key", func(c *Config) {
			c.ServerKey = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 40))
		}, ""},
		{"short server key", func(c *Config) { c.ServerKey = base64.StdEncoding.EncodeToString(make([]byte, 31)) }, "--server-key: must be the base64 of at least 32 bytes"},
		{"server key not base64", func(c *Config) { c.ServerKey = "not base64!" }, "--server-key: is not valid base64"},
		{"idle timeout too short", func(c *Config) { c.SessionIdleTimeout = time.Second }, "--session-idle-timeout"},
		{"lifetime too short", func(c *Config) { c.SessionLifetime = 0 }, "--session-lifetime"},
		{"lifetime too long", func(c *Config) { c.SessionLifetime = 400 * 24 * time.Hour }, "--session-lifetime"},
		{"idle longer than lifetime", func(c *Config) { c.SessionIdleTimeout = 48 * time.Hour; c.SessionLifetime = 24 * time.Hour }, "must not exceed --session-lifetime"},
		{"key lifetime too short", func(c *Config) { c.SessionKeyLifetime = time.Second }, "--session-key-lifetime"},
		{"retention too short", func(c *Config) { c.Retention = time.Minute }, "--retention"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.DataDir = t.TempDir()
			tc.set(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
			if err != nil && c.ServerKey != "" && len(c.ServerKey) > 8 && strings.Contains(err.Error(), c.ServerKey) {
				t.Error("the error repeats the server key")
			}
		})
	}
}

func TestLoadServerKeyGeneratesOnce(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir()
	k1, err := c.LoadServerKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 {
		t.Errorf("generated key has %d bytes, want 32", len(k1))
	}
	path := filepath.Join(c.DataDir, ServerKeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	k2, err := c.LoadServerKey()
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second load = %x, %v; want the same key", k2, err)
	}
	// --server-key wins over the file.
	c.ServerKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 48))
	k3, err := c.LoadServerKey()
	if err != nil || !bytes.Equal(k3, bytes.Repeat([]byte{9}, 48)) {
		t.Errorf("--server-key: %x, %v", k3, err)
	}
}

func TestLoadServerKeyRefusesBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"group readable", base64.StdEncoding.EncodeToString(make([]byte, 32)), 0o640, "accessible by group or others"},
		{"world readable", base64.StdEncoding.EncodeToString(make([]byte, 32)), 0o604, "accessible by group or others"},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600, "at least 32 bytes"},
		{"garbage", "hello world", 0o600, "not valid base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.DataDir = t.TempDir()
			path := filepath.Join(c.DataDir, ServerKeyFile)
			if err := os.WriteFile(path, []byte(tc.content+"\n"), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			if _, err := c.LoadServerKey(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadServerKey = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	c := Defaults()
	c.DataDir = filepath.Join(t.TempDir(), "missing")
	if _, err := c.LoadServerKey(); err == nil {
		t.Error("LoadServerKey in a missing directory succeeded")
	}
}

func newServeFlags(c *Config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterStorage(fs)
	c.RegisterServe(fs)
	return fs
}
