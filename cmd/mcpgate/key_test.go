package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/apikeys"
)

func TestKeyCreate(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		uid := c.addUser("alice@example.com")
		before := time.Now()
		r := c.ok("", "key", "create", "--user", "alice@example.com", "--name", "laptop", "--scopes", "payments:write,payments:read", "--expires", "30d")

		// stdout is exactly one line: the key, so KEY=$(mcpgate key create …) works.
		lines := strings.Split(r.stdout, "\n")
		if len(lines) != 2 || lines[1] != "" || !keyPattern.MatchString(lines[0]) {
			t.Fatalf("key create stdout = %q, want exactly one line holding an mcpg_ key", r.stdout)
		}
		plain := lines[0]
		// The details go to stderr, without the key itself.
		for _, w := range []string{"created key key_", plain[:12], "alice@example.com", "payments:read payments:write", "shown only this once"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("key create stderr %q does not mention %q", r.stderr, w)
			}
		}
		if strings.Contains(r.stderr, plain) {
			t.Error("key create printed the whole key on stderr too")
		}
		id := strings.Fields(r.stderr)[2]

		keys := c.keys("--user", "alice@example.com")
		if len(keys) != 1 {
			t.Fatalf("key list --json printed %d keys, want 1", len(keys))
		}
		k := keys[0]
		want := keyOut{ID: id, UserID: uid, Name: "laptop", Prefix: plain[:12], Kind: "manual",
			Scopes: []string{"payments:read", "payments:write"}, Status: "active"}
		got := k
		got.CreatedAt, got.ExpiresAt = "", ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("key list --json (-want +got):\n%s", diff)
		}
		exp, err := time.Parse(time.RFC3339, k.ExpiresAt)
		if err != nil {
			t.Fatalf("expires_at %q: %v", k.ExpiresAt, err)
		}
		if lo, hi := before.Add(30*24*time.Hour-time.Minute), time.Now().Add(30*24*time.Hour+time.Minute); exp.Before(lo) || exp.After(hi) {
			t.Errorf("--expires 30d gave expires_at %s, want about 30 days from now", k.ExpiresAt)
		}

		// Text mode: the id comes first, then the prefix, never the key.
		text := c.ok("", "key", "list", "--user", "alice@example.com").stdout
		rows := strings.Split(strings.TrimRight(text, "\n"), "\n")
		if len(rows) != 2 || !strings.HasPrefix(rows[0], "ID ") {
			t.Fatalf("key list =\n%s\nwant a header starting with ID and one row", text)
		}
		f := strings.Fields(rows[1])
		if f[0] != id || f[1] != plain[:12]+"…" || f[2] != "laptop" || !contains(f, "active") || !contains(f, "never") {
			t.Errorf("key list row = %q, want id, prefix…, name, …, active, …, never (not used)", rows[1])
		}
		if strings.Contains(text, plain) {
			t.Error("key list printed the key")
		}

		// The printed key is the one that works.
		res, err := c.core().Keys.Verify(t.Context(), plain)
		if err != nil || res.UserID() != uid {
			t.Errorf("Verify(printed key) = %v, %v; want alice's key", res.UserID(), err)
		}

		// No --expires: never expires. A date works too.
		c.createKey("alice@example.com", "--name", "forever")
		c.createKey("alice@example.com", "--name", "dated", "--expires", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))
		byName := map[string]keyOut{}
		for _, k := range c.keys() {
			byName[k.Name] = k
		}
		if byName["forever"].ExpiresAt != "" || !strings.HasSuffix(byName["dated"].ExpiresAt, "T00:00:00Z") || byName["dated"].Status != "active" {
			t.Errorf("keys without --expires / with a date: %+v", byName)
		}

		ev := c.audit("--type", "key.created", "--limit", "1")
		if len(ev) != 1 || ev[0].UserID != uid || ev[0].Details["actor"] != "cli" {
			t.Errorf("audit list --type key.created --limit 1 = %+v", ev)
		}
	})
}

func TestKeyCreateRefusals(t *testing.T) {
	c := newSQLite(t)
	c.addUser("alice@example.com")
	base := []string{"key", "create", "--user", "alice@example.com", "--name", "k"}
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--expires", "30"}, []string{`--expires "30"`, "30d"}},
		{[]string{"--expires", "30x"}, []string{`--expires "30x"`}},
		{[]string{"--expires", "0d"}, []string{`--expires "0d"`}},
		{[]string{"--expires", "-1h"}, []string{`--expires "-1h"`}},
		{[]string{"--expires", "1.5d"}, []string{`--expires "1.5d"`}},
		{[]string{"--expires", "99999d"}, []string{`--expires "99999d"`}},
		{[]string{"--expires", "tomorrow"}, []string{`--expires "tomorrow"`}},
		{[]string{"--expires", "2020-01-31"}, []string{`--expires "2020-01-31": must be in the future`}},
		{[]string{"--expires", "1ns"}, []string{`--expires "1ns": must be in the future`}},
		{[]string{"--expires", "10000-01-01T00:00:00Z"}, []string{`--expires "10000-01-01T00:00:00Z"`}},
		{[]string{"--expires", "2026-13-01"}, []string{`--expires "2026-13-01"`}},
		{[]string{"--scopes", `payments:read,"quoted"`}, []string{"--scopes: scope 2 is not a scope-token"}},
		{[]string{"--scopes", `back\slash`}, []string{"--scopes: scope 1 is not a scope-token"}},
		{[]string{"--scopes", manyScopes(33)}, []string{"--scopes: at most 32 distinct scopes"}},
		{[]string{"--name", ""}, []string{"--name: required"}},
		{[]string{"--name", "bell\a"}, []string{"--name: must not contain control characters"}},
		{[]string{"--name", strings.Repeat("n", 101)}, []string{"--name: at most 100 characters"}},
		{[]string{"--user", "nobody@example.com"}, []string{`no user "nobody@example.com"`}},
		{[]string{"--user", "not an email"}, []string{`no user "not an email"`}},
		{[]string{"extra-arg"}, []string{"unknown command"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := c
			c.t = t
			c.fail("", append(append([]string{}, base...), tc.args...), tc.wants...)
		})
	}
	c.fail("", []string{"key", "create", "--name", "k"}, `"user" not set`)
	c.fail("", []string{"key", "create", "--user", "alice@example.com"}, `"name" not set`)
	if keys := c.keys(); len(keys) != 0 {
		t.Errorf("refused key creations left %d keys: %+v", len(keys), keys)
	}
	if ev := c.audit("--type", "key.created"); len(ev) != 0 {
		t.Errorf("refused key creations left %d key.created events", len(ev))
	}
}

func manyScopes(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = "scope" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	return strings.Join(s, ",")
}

func TestKeyRevoke(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		c.addUser("alice@example.com")
		c.addUser("bob@example.com")
		plain, id := c.createKey("alice@example.com", "--scopes", "payments:read")
		_, bobID := c.createKey("bob@example.com")

		r := c.ok("", "key", "revoke", id)
		if r.stdout != "" || !strings.Contains(r.stderr, "revoked key "+id+" ("+plain[:12]+"…)") {
			t.Errorf("key revoke: stdout %q stderr %q", r.stdout, r.stderr)
		}
		status := map[string]string{}
		for _, k := range c.keys() {
			status[k.ID] = k.Status
			if k.ID == id && k.RevokedAt == "" {
				t.Error("revoked key has no revoked_at")
			}
		}
		if diff := cmp.Diff(map[string]string{id: "revoked", bobID: "active"}, status); diff != "" {
			t.Errorf("statuses after revoking alice's key (-want +got):\n%s", diff)
		}
		if text := c.ok("", "key", "list", "--user", "alice@example.com").stdout; !strings.Contains(text, "revoked") {
			t.Errorf("key list does not show the revocation:\n%s", text)
		}
		if _, err := c.core().Keys.Verify(t.Context(), plain); !errors.Is(err, apikeys.ErrRevoked) {
			t.Errorf("revoked key verifies: %v", err)
		}

		// Revoking again is harmless and records nothing new.
		c.ok("", "key", "revoke", id)
		if ev := c.audit("--type", "key.revoked"); len(ev) != 1 || ev[0].CredentialID != id {
			t.Errorf("key.revoked events = %+v, want one for %s", ev, id)
		}

		c.fail("", []string{"key", "revoke", "key_nosuchkey"}, `no key "key_nosuchkey"`)
		c.fail("", []string{"key", "revoke"}, "accepts 1 arg")
		c.fail("", []string{"key", "list", "--user", "nobody@example.com"}, `no user "nobody@example.com"`)
	})
}
