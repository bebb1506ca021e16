package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Hostile or accidental input must end in a clear error or in faithful,
// safe storage — never a panic (runCLI fails the test on one), never a
// half-created object.
func TestBadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		mb := strings.Repeat("p", 1<<20)

		// A 1 MB password (with or without a final newline) is refused by
		// length, for add and set-password alike, and nobody is created.
		c.fail(mb, []string{"user", "add", "big@example.com", "--password-stdin"}, "password is too long: at most 1024 bytes")
		c.fail(mb+"\n", []string{"user", "add", "big@example.com", "--password-stdin"}, "password is too long")
		c.fail("\xff\xfe not utf-8 at all\n", []string{"user", "add", "big@example.com", "--password-stdin"}, "password is not valid UTF-8")
		c.addUser("victim@example.com")
		c.fail(mb, []string{"user", "set-password", "victim@example.com", "--password-stdin"}, "password is too long")
		// 1024 bytes exactly is the longest accepted; a CRLF line ending is not part of it.
		c.ok(strings.Repeat("é", 512)+"\r\n", "user", "set-password", "victim@example.com", "--password-stdin")

		// Look-alike Unicode emails are refused, and the message shows the
		// look-alike letter escaped so the operator can see it.
		c.addUser("alice@example.com")
		for _, email := range []string{
			"аlice@example.com",       // Cyrillic а
			"alice@exаmple.com",       // Cyrillic а in the domain
			"alice@example.com\u200b", // zero-width space
			"ａlice@example.com",       // full-width a
		} {
			r := c.fail("a long passphrase here\n", []string{"user", "add", email, "--password-stdin"}, "email", "plain ASCII")
			if r.err != nil && !strings.Contains(r.err.Error(), `\u`) {
				t.Errorf("error %q does not show the non-ASCII character escaped", r.err)
			}
			// Looking a user up by such an address finds nobody either.
			c.fail("", []string{"key", "create", "--user", email, "--name", "x"}, "email")
		}
		// A 1 MB email is refused without being echoed in full.
		r := c.fail("", []string{"user", "add", strings.Repeat("a", 1<<20) + "@example.com"}, "too long")
		if r.err != nil && len(r.err.Error()) > 500 {
			t.Errorf("the error for a 1 MB email is %d bytes long", len(r.err.Error()))
		}

		// SQL metacharacters are data: stored and shown exactly, nothing
		// else is affected.
		sqlName := `Robert'); DROP TABLE users;-- "x" \ %_`
		id := c.addUser("o'brien+test@example.com", "--name", sqlName)
		_, keyID := c.createKey("o'brien+test@example.com", "--name", `key'; DELETE FROM api_keys WHERE '1'='1`, "--scopes", `it's;--,%_*`)
		var got []userOut
		for _, u := range c.users() {
			if u.ID == id {
				got = append(got, u)
			}
		}
		want := []userOut{{ID: id, Email: "o'brien+test@example.com", Name: sqlName, Roles: []string{}}}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(userOut{}, "CreatedAt", "UpdatedAt")); diff != "" {
			t.Errorf("user with SQL metacharacters (-want +got):\n%s", diff)
		}
		if n := len(c.users()); n != 3 {
			t.Errorf("%d users, want 3 (victim, alice, o'brien)", n)
		}
		keys := c.keys("--user", "o'brien+test@example.com")
		if len(keys) != 1 || keys[0].ID != keyID || keys[0].Name != `key'; DELETE FROM api_keys WHERE '1'='1` ||
			!cmp.Equal(keys[0].Scopes, []string{"%_*", "it's;--"}) {
			t.Errorf("key with SQL metacharacters = %+v", keys)
		}
		// LIKE wildcards in a lookup match nothing.
		c.fail("", []string{"key", "list", "--user", "%@example.com"}, `no user "%@example.com"`)
		c.fail("", []string{"user", "disable", "%"}, `no user "%"`)
		c.fail("", []string{"key", "revoke", "' OR '1'='1"}, `no key "' OR '1'='1"`)
		// No events of that type: an empty listing, not an error.
		if r := c.run("", "audit", "list", "--type", "' OR 1=1 --"); r.err != nil || r.stdout != "" {
			t.Errorf("audit list --type with SQL: %q %v, want no events", r.stdout, r.err)
		}

		// Names that would forge lines or columns in the text listings.
		c.fail("", []string{"user", "add", "eve@example.com", "--name", "Eve\nmallory@example.com admin active"}, "--name", "control characters")
		c.fail("", []string{"user", "add", "eve@example.com", "--name", "Eve\u202egnp.exe"}, "--name", "control characters")
		c.fail("", []string{"key", "create", "--user", "alice@example.com", "--name", "a\tb"}, "--name: must not contain control characters")
		c.fail("", []string{"key", "create", "--user", "alice@example.com", "--name", "\u2067evil"}, "--name: must not contain control characters")
		c.fail("", []string{"key", "create", "--user", "alice@example.com", "--name", "x", "--scopes", strings.Repeat("s", 65)}, "--scopes")
		c.fail("", []string{"user", "add", "eve@example.com", "--roles", "admin;drop"}, "--roles")
		c.fail("", []string{"user", "add", "eve@example.com", "--name", strings.Repeat("é", 201)}, "--name: is too long")
	})
}
