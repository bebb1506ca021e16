package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/identity"
)

var userIDLine = regexp.MustCompile(`^usr_[a-z2-7]{26}\n$`)

func TestUserAdd(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		r := c.ok("correct horse battery\n", "user", "add", "Alice@Example.com", "--name", "Alice Liddell", "--roles", "admin,auditor", "--password-stdin")
		if !userIDLine.MatchString(r.stdout) {
			t.Fatalf("user add stdout = %q, want only the user id", r.stdout)
		}
		id := strings.TrimSpace(r.stdout)
		if !strings.Contains(r.stderr, "created alice@example.com") {
			t.Errorf("user add stderr = %q, want a confirmation naming the normalised email", r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, "correct horse battery") {
			t.Error("the password was echoed")
		}

		want := []userOut{{ID: id, Email: "alice@example.com", Name: "Alice Liddell", Roles: []string{"admin", "auditor"}}}
		if diff := cmp.Diff(want, c.users(), cmpopts.IgnoreFields(userOut{}, "CreatedAt", "UpdatedAt")); diff != "" {
			t.Errorf("user list --json (-want +got):\n%s", diff)
		}

		// The password from stdin is the one stored.
		u, err := c.core().DB.GetUser(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if err := identity.VerifyPassword(u.PasswordHash, "correct horse battery"); err != nil {
			t.Errorf("stored password does not match the one given on stdin: %v", err)
		}

		// Refusals: each says why, prints nothing on stdout and creates nobody.
		c.fail("short\n", []string{"user", "add", "bob@example.com", "--password-stdin"}, "password is too short: at least 12 characters")
		c.fail("\n", []string{"user", "add", "bob@example.com", "--password-stdin"}, "no password on standard input")
		c.fail("", []string{"user", "add", "bob@example.com", "--password-stdin"}, "no password on standard input")
		c.fail("another long password\n", []string{"user", "add", "ALICE@example.COM", "--password-stdin"}, "alice@example.com: a user with this email already exists")
		c.fail("", []string{"user", "add", "not-an-email"}, `email "not-an-email": is not a valid email address`)
		c.fail("", []string{"user", "add", "Bob <bob@example.com>"}, "email")
		c.fail("", []string{"user", "add", "bob@example.com", "--roles", "Admin"}, `--roles: role "Admin" may only contain`)
		c.fail("", []string{"user", "add"}, "accepts 1 arg")
		if got := len(c.users()); got != 1 {
			t.Errorf("after refused adds there are %d users, want 1", got)
		}
		if n := len(c.audit("--type", "user.created")); n != 1 {
			t.Errorf("%d user.created events, want 1 (refusals create nothing)", n)
		}
	})
}

func TestUserAddWithoutPassword(t *testing.T) {
	c := newSQLite(t)
	r := c.ok("ignored because there is no --password-stdin\n", "user", "add", "dana@example.com")
	if !userIDLine.MatchString(r.stdout) {
		t.Errorf("stdout = %q, want only the user id", r.stdout)
	}
	if !strings.Contains(r.stderr, "without a password") || !strings.Contains(r.stderr, "set-password") {
		t.Errorf("stderr = %q, want a hint that the user has no password and how to set one", r.stderr)
	}
	u, err := c.core().Users.Get(t.Context(), "dana@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if u.PasswordHash != "" {
		t.Error("a user added without --password-stdin got a password")
	}
}

func TestUserListText(t *testing.T) {
	c := newSQLite(t)
	c.ok("", "migrate", "up") // user list creates no database
	if r := c.ok("", "user", "list"); strings.TrimSpace(r.stdout) != strings.Join(strings.Fields("ID EMAIL NAME ROLES STATUS CREATED"), "  ") {
		t.Errorf("empty user list = %q, want only the header", r.stdout)
	}
	if r := c.ok("", "user", "list", "--json"); r.stdout != "" {
		t.Errorf("empty user list --json = %q, want nothing", r.stdout)
	}
	bob := c.addUser("bob@example.com")
	alice := c.addUser("alice@example.com", "--name", "Alice", "--roles", "admin")
	c.ok("", "user", "disable", "bob@example.com")

	lines := strings.Split(strings.TrimRight(c.ok("", "user", "list").stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("user list printed %d lines, want header + 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var got [][]string
	for _, l := range lines {
		f := strings.Fields(l)
		got = append(got, f[:len(f)-1]) // drop CREATED (a time)
	}
	want := [][]string{
		{"ID", "EMAIL", "NAME", "ROLES", "STATUS"},
		{alice, "alice@example.com", "Alice", "admin", "active"}, // ordered by email
		{bob, "bob@example.com", "-", "-", "disabled"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("user list (-want +got):\n%s", diff)
	}
}

func TestUserDisableEnable(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		id := c.addUser("carol@example.com")
		plain, _ := c.createKey("carol@example.com")
		core := c.core()
		if _, err := core.Keys.Verify(t.Context(), plain); err != nil {
			t.Fatalf("fresh key refused: %v", err)
		}
		core.Close(t.Context())

		r := c.ok("", "user", "disable", "carol@example.com")
		if r.stdout != "" || !strings.Contains(r.stderr, "carol@example.com disabled") {
			t.Errorf("disable: stdout %q stderr %q", r.stdout, r.stderr)
		}
		if u := c.users(); len(u) != 1 || !u[0].Disabled {
			t.Errorf("after disable, user list --json = %+v", u)
		}
		if _, err := c.core().Keys.Verify(t.Context(), plain); err == nil {
			t.Error("the key of a disabled user still verifies")
		}
		c.fail("", []string{"key", "create", "--user", "carol@example.com", "--name", "x"}, `--user "carol@example.com": the user is disabled`)

		r = c.ok("", "user", "enable", id) // by id works too
		if !strings.Contains(r.stderr, "carol@example.com enabled") {
			t.Errorf("enable stderr = %q", r.stderr)
		}
		if u := c.users(); len(u) != 1 || u[0].Disabled {
			t.Errorf("after enable, user list --json = %+v", u)
		}
		if _, err := c.core().Keys.Verify(t.Context(), plain); err != nil {
			t.Errorf("key of a re-enabled user refused: %v", err)
		}

		var types []string
		for _, e := range c.audit("--user", "carol@example.com") {
			types = append(types, e.Type)
		}
		if diff := cmp.Diff([]string{"user.enabled", "user.disabled", "key.created", "user.created"}, types); diff != "" {
			t.Errorf("carol's audit trail, newest first (-want +got):\n%s", diff)
		}

		c.fail("", []string{"user", "disable", "nobody@example.com"}, `no user "nobody@example.com"`)
		c.fail("", []string{"user", "enable", "usr_doesnotexist"}, `no user "usr_doesnotexist"`)
	})
}

func TestUserSetPassword(t *testing.T) {
	c := newSQLite(t)
	id := c.addUser("erin@example.com")

	// Without --password-stdin: refused with the reason, before reading
	// stdin or touching the database.
	r := c.fail("a brand new passphrase\n", []string{"user", "set-password", "erin@example.com"}, "--password-stdin", "shell history")
	_ = r
	r = c.ok("a brand new passphrase\n", "user", "set-password", "erin@example.com", "--password-stdin")
	if r.stdout != "" || !strings.Contains(r.stderr, "password of erin@example.com changed") {
		t.Errorf("set-password: stdout %q stderr %q", r.stdout, r.stderr)
	}
	u, err := c.core().DB.GetUser(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.VerifyPassword(u.PasswordHash, "a brand new passphrase"); err != nil {
		t.Errorf("new password does not match: %v", err)
	}
	if err := identity.VerifyPassword(u.PasswordHash, "a long passphrase here"); err == nil {
		t.Error("old password still matches")
	}
	if n := len(c.audit("--type", "user.password_changed")); n != 1 {
		t.Errorf("%d user.password_changed events, want 1 (the refused attempt changes nothing)", n)
	}

	c.fail("too short\n", []string{"user", "set-password", "erin@example.com", "--password-stdin"}, "too short")
	c.fail("a long enough password\n", []string{"user", "set-password", "nobody@example.com", "--password-stdin"}, `no user "nobody@example.com"`)
}

func TestUserSetRoles(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		alice := c.addUser("alice@example.com", "--roles", "admin")
		bob := c.addUser("bob@example.com")
		roles := func() map[string][]string {
			out := map[string][]string{}
			for _, u := range c.users() {
				out[u.Email] = u.Roles
			}
			return out
		}
		roleEvents := func() []auditOut { return c.audit("--type", "user.roles_changed") }
		// ok runs set-roles with the real binary and wants success, a
		// quiet stdout and msg on stderr.
		ok := func(msg string, args ...string) {
			t.Helper()
			r := c.bin("", append([]string{"user", "set-roles"}, args...)...)
			if r.code != 0 || r.stdout != "" || r.stderr != msg+"\n" {
				t.Errorf("user set-roles %s: exit %d, stdout %q, stderr %q; want exit 0, stderr %q", shortArgs(args), r.code, r.stdout, r.stderr, msg)
			}
		}
		// refused wants exit 1, nothing on stdout, and every want in the
		// message.
		refused := func(args []string, wants ...string) {
			t.Helper()
			r := c.bin("", append([]string{"user", "set-roles"}, args...)...)
			if r.code != 1 || r.stdout != "" {
				t.Errorf("user set-roles %s: exit %d, stdout %q; want exit 1 and no stdout", shortArgs(args), r.code, r.stdout)
			}
			for _, w := range wants {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("user set-roles %s: stderr %q does not mention %q", shortArgs(args), r.stderr, w)
				}
			}
		}

		ok("roles of bob@example.com set to auditor,member (were none)", "bob@example.com", "--roles", "member, auditor")
		if diff := cmp.Diff(map[string][]string{"alice@example.com": {"admin"}, "bob@example.com": {"auditor", "member"}}, roles()); diff != "" {
			t.Errorf("roles after set-roles (-want +got):\n%s", diff)
		}
		// Audited as the admin page's change is: the same event and details.
		evs := roleEvents()
		if len(evs) != 1 {
			t.Fatalf("%d user.roles_changed events, want 1", len(evs))
		}
		want := map[string]any{"email": "bob@example.com", "roles": []any{"auditor", "member"}, "previous_roles": []any{}, "actor": "cli"}
		if e := evs[0]; e.UserID != bob || e.Outcome != "allow" || !cmp.Equal(want, e.Details) {
			t.Errorf("user.roles_changed = %+v, want user %s, allow, details %v", e, bob, want)
		}

		// The same roles again: nothing changes, nothing is audited.
		ok("roles of bob@example.com unchanged: auditor,member", bob, "--roles", "auditor member")

		// Refusals, checked like the admin page and user add check roles.
		refused([]string{"bob@example.com", "--roles", "Admin"}, `--roles: role "Admin" may only contain a-z, 0-9`)
		refused([]string{"bob@example.com", "--roles", strings.Repeat("r", 65)}, "too long")
		refused([]string{"bob@example.com"}, `required flag(s) "roles" not set`)
		refused([]string{"nobody@example.com", "--roles", "member"}, `no user "nobody@example.com"`)
		// The last enabled admin keeps the role, as no admin can remove
		// their own on the admin pages.
		refused([]string{"alice@example.com", "--roles", "auditor"}, "alice@example.com is the only enabled user with the admin role", "give another user the admin role first")
		refused([]string{alice, "--roles", ""}, "only enabled user with the admin role")
		if n := len(roleEvents()); n != 1 {
			t.Errorf("%d user.roles_changed events after refusals, want still 1", n)
		}

		// With a second admin, the first may lose the role; --roles ""
		// removes every role.
		ok("roles of bob@example.com set to admin (were auditor,member)", "bob@example.com", "--roles", "admin")
		ok("roles of alice@example.com set to none (were admin)", "alice@example.com", "--roles", "")
		// A disabled admin does not count: bob stays the only one who
		// could sign in.
		ok("roles of alice@example.com set to admin (were none)", "alice@example.com", "--roles", "admin")
		c.ok("", "user", "disable", "alice@example.com")
		refused([]string{"bob@example.com", "--roles", "member"}, "bob@example.com is the only enabled user with the admin role")
		if diff := cmp.Diff(map[string][]string{"alice@example.com": {"admin"}, "bob@example.com": {"admin"}}, roles()); diff != "" {
			t.Errorf("final roles (-want +got):\n%s", diff)
		}
		if n := len(roleEvents()); n != 4 {
			t.Errorf("%d user.roles_changed events, want 4 (one per change)", n)
		}
	})
}
