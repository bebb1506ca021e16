package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

func TestAuditList(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		alice := c.addUser("alice@example.com")
		bob := c.addUser("bob@example.com")
		plain, keyID := c.createKey("alice@example.com")
		c.ok("", "key", "revoke", keyID)

		// Events the CLI cannot cause: a refused request now, and an old
		// event two hours ago.
		core := c.core()
		ctx := context.Background()
		core.Audit.Record(ctx, audit.Event{Type: audit.TypeAuthRejected, Outcome: store.OutcomeDeny,
			Reason: audit.ReasonRevoked, UserID: alice, CredentialID: keyID})
		core.Audit.Record(ctx, audit.Event{Time: time.Now().Add(-2 * time.Hour), Type: audit.TypeToolCalled,
			Outcome: store.OutcomeAllow, UserID: bob, Tool: "getAccountBalance"})
		core.Close(ctx)

		all := c.audit()
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID {
				t.Errorf("audit list is not newest first: id %d after %d", all[i].ID, all[i-1].ID)
			}
		}
		if len(all) != 6 {
			t.Errorf("audit list printed %d events, want 6", len(all))
		}
		if out := c.ok("", "audit", "list").stdout; strings.Contains(out, plain) {
			t.Error("the audit log holds a key")
		}

		types := func(evs []auditOut) []string {
			var out []string
			for _, e := range evs {
				out = append(out, e.Type+"/"+e.Outcome)
			}
			return out
		}
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--type", "key.created"}, []string{"key.created/allow"}},
			{[]string{"--outcome", "deny"}, []string{"auth.rejected/deny"}},
			{[]string{"--since", "1h"}, []string{"auth.rejected/deny", "key.revoked/allow", "key.created/allow", "user.created/allow", "user.created/allow"}},
			// Newest first means last recorded first (by id, the order
			// of the append-only log), even for an event stamped earlier.
			{[]string{"--since", "3h", "--user", "bob@example.com"}, []string{"tool.called/allow", "user.created/allow"}},
			{[]string{"--user", "bob@example.com", "--since", "1h"}, []string{"user.created/allow"}},
			{[]string{"--user", alice, "--outcome", "allow", "--limit", "2"}, []string{"key.revoked/allow", "key.created/allow"}},
			{[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil},
			{[]string{"--type", "no.such.type"}, nil},
		} {
			if diff := cmp.Diff(tc.want, types(c.audit(tc.args...))); diff != "" {
				t.Errorf("audit list %s (-want +got):\n%s", strings.Join(tc.args, " "), diff)
			}
		}
		deny := c.audit("--outcome", "deny")
		if len(deny) == 1 && (deny[0].Reason != "revoked" || deny[0].CredentialID != keyID || deny[0].UserID != alice) {
			t.Errorf("deny event = %+v, want reason revoked naming alice's key", deny[0])
		}
		created := c.audit("--type", "key.created")
		if len(created) == 1 && (created[0].CredentialID != keyID || created[0].Details["prefix"] != plain[:12]) {
			t.Errorf("key.created event = %+v", created[0])
		}

		for _, tc := range []struct {
			args  []string
			wants []string
		}{
			{[]string{"--outcome", "maybe"}, []string{`--outcome "maybe": must be allow or deny`}},
			{[]string{"--outcome", "DENY"}, []string{`--outcome "DENY"`}},
			{[]string{"--since", "yesterday"}, []string{`--since "yesterday"`, "1h"}},
			{[]string{"--since", "-1h"}, []string{`--since "-1h"`}},
			{[]string{"--since", "0d"}, []string{`--since "0d"`}},
			{[]string{"--limit", "0"}, []string{"--limit 0", "between 1 and 1000"}},
			{[]string{"--limit", "1001"}, []string{"--limit 1001"}},
			{[]string{"--limit", "many"}, []string{"--limit"}},
			{[]string{"--user", "nobody@example.com"}, []string{`no user "nobody@example.com"`}},
		} {
			c.fail("", append([]string{"audit", "list"}, tc.args...), tc.wants...)
		}
	})
}

var migrationRow = regexp.MustCompile(`^(\d+)\s+(\S+)\s+(\S+)$`)

// migrations parses `migrate status`: name → applied column.
func (c cli) migrations() map[string]string {
	c.t.Helper()
	r := c.ok("", "migrate", "status")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) < 2 || strings.Join(strings.Fields(lines[0]), " ") != "VERSION NAME APPLIED" {
		c.t.Fatalf("migrate status =\n%s\nwant a VERSION NAME APPLIED table", r.stdout)
	}
	out := map[string]string{}
	for _, l := range lines[1:] {
		m := migrationRow.FindStringSubmatch(l)
		if m == nil {
			c.t.Fatalf("migrate status row %q", l)
		}
		out[m[1]+"_"+m[2]] = m[3]
	}
	return out
}

func TestMigrateStatus(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		dialect := "sqlite"
		if c.dbURL != "" {
			dialect = "postgres"
		}
		files, err := filepath.Glob(filepath.Join("..", "..", "internal", "store", "sqlstore", "migrations", dialect, "*.sql"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no migration files found: %v", err)
		}
		var want []string
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".sql")
			want = append(want, strings.TrimLeft(name, "0"))
		}

		if c.dbURL == "" {
			// No database yet: status says so and creates none.
			c.fail("", []string{"migrate", "status"}, "no database at ")
			if entries, _ := os.ReadDir(c.dataDir); len(entries) != 0 {
				t.Errorf("migrate status without a database created %v", entries)
			}
			// An empty SQLite file: status lists every migration as
			// pending and applies none of them.
			if err := os.WriteFile(filepath.Join(c.dataDir, "mcpgate.db"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			st := c.migrations()
			for _, m := range want {
				if st[m] != "pending" {
					t.Errorf("fresh database: migration %s is %q, want pending", m, st[m])
				}
			}
			if st2 := c.migrations(); !cmp.Equal(st, st2) {
				t.Errorf("migrate status changed the database: %v then %v", st, st2)
			}
			r := c.ok("", "migrate", "up")
			if r.stdout != "" || !strings.Contains(r.stderr, "up to date") {
				t.Errorf("migrate up: stdout %q stderr %q", r.stdout, r.stderr)
			}
		}
		// (storetest migrated the PostgreSQL schema already.)
		st := c.migrations()
		if len(st) != len(want) {
			t.Errorf("migrate status lists %d migrations, want %d (%v): %v", len(st), len(want), want, st)
		}
		for _, m := range want {
			if _, err := time.Parse(time.RFC3339, st[m]); err != nil {
				t.Errorf("after migrate up, migration %s is %q, want its RFC 3339 application time", m, st[m])
			}
		}
		if r := c.ok("", "migrate", "status"); r.stderr != "" {
			t.Errorf("migrate status on an up-to-date database printed on stderr: %q", r.stderr)
		}
	})
}

func TestVersion(t *testing.T) {
	r := runCLI(t, "", "version")
	if r.err != nil || !regexp.MustCompile(`^mcpgate \S+\n$`).MatchString(r.stdout) || r.stderr != "" {
		t.Errorf("version: %q %q %v", r.stdout, r.stderr, r.err)
	}
	checkFailure(t, []string{"version", "extra"}, runCLI(t, "", "version", "extra"), "unknown command")
	checkFailure(t, []string{"frobnicate"}, runCLI(t, "", "frobnicate"), "unknown command")
	checkFailure(t, []string{"user", "list", "--nope"}, runCLI(t, "", "user", "list", "--nope"), "unknown flag: --nope")
}

func TestEnvironmentTwins(t *testing.T) {
	envDir, flagDir := t.TempDir(), t.TempDir()
	t.Setenv("MCPGATE_DATA_DIR", envDir)

	// Flag absent: the variable chooses the database.
	r := runCLI(t, "a long passphrase here\n", "user", "add", "env@example.com", "--password-stdin")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !fileExists(filepath.Join(envDir, "mcpgate.db")) {
		t.Fatalf("MCPGATE_DATA_DIR=%s was not used: no database there", envDir)
	}
	// Both: the flag wins.
	if r := runCLI(t, "", "user", "add", "flag@example.com", "--data-dir", flagDir); r.err != nil {
		t.Fatal(r.err)
	}
	emails := func(dir string) []string {
		var out []string
		for _, u := range (cli{t: t, dataDir: dir}).users() {
			out = append(out, u.Email)
		}
		return out
	}
	if diff := cmp.Diff([]string{"env@example.com"}, emails(envDir)); diff != "" {
		t.Errorf("users in the MCPGATE_DATA_DIR database (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"flag@example.com"}, emails(flagDir)); diff != "" {
		t.Errorf("users in the --data-dir database (-want +got):\n%s", diff)
	}

	// MCPGATE_DATABASE_URL beats the data directory.
	other := filepath.Join(t.TempDir(), "other.db")
	t.Setenv("MCPGATE_DATABASE_URL", other)
	if r := runCLI(t, "", "user", "add", "url@example.com"); r.err != nil {
		t.Fatal(r.err)
	}
	if !fileExists(other) {
		t.Errorf("MCPGATE_DATABASE_URL=%s was not used", other)
	}
	os.Unsetenv("MCPGATE_DATABASE_URL")
	if diff := cmp.Diff([]string{"env@example.com"}, emails(envDir)); diff != "" {
		t.Errorf("MCPGATE_DATABASE_URL ignored: users in the data dir (-want +got):\n%s", diff)
	}

	// Bad values are reported, naming the flag.
	t.Setenv("MCPGATE_LOG_LEVEL", "loud")
	checkFailure(t, []string{"user", "list"}, runCLI(t, "", "user", "list"), `--log-level "loud"`)
	t.Setenv("MCPGATE_LOG_LEVEL", "")
	t.Setenv("MCPGATE_DATA_DIR", filepath.Join(envDir, "missing"))
	checkFailure(t, []string{"user", "list"}, runCLI(t, "", "user", "list"), "--data-dir", "missing")
	t.Setenv("MCPGATE_DATA_DIR", envDir)

	// Command arguments have no twins, only configuration does: a stray
	// MCPGATE_USER must not silently filter a listing, MCPGATE_NAME name a
	// key, or MCPGATE_PASSWORD_STDIN swallow stdin.
	c := cli{t: t, dataDir: envDir}
	c.createKey("env@example.com", "--name", "env key")
	c.addUser("other@example.com")
	c.createKey("other@example.com", "--name", "other key")
	t.Setenv("MCPGATE_USER", "env@example.com")
	t.Setenv("MCPGATE_NAME", "from the environment")
	t.Setenv("MCPGATE_JSON", "true")
	t.Setenv("MCPGATE_HELP", "true")
	t.Setenv("MCPGATE_PASSWORD_STDIN", "true")
	if keys := c.keys(); len(keys) != 2 {
		t.Errorf("key list --json with MCPGATE_USER set shows %d keys, want all 2", len(keys))
	}
	if r := c.ok("", "key", "list"); !strings.HasPrefix(r.stdout, "ID ") {
		t.Errorf("MCPGATE_JSON/MCPGATE_HELP changed `key list`:\n%s", r.stdout)
	}
	c.fail("", []string{"key", "create", "--user", "env@example.com"}, `"name" not set`)
	if r := c.ok("not a password\n", "user", "add", "nopw@example.com"); !strings.Contains(r.stderr, "without a password") {
		t.Errorf("MCPGATE_PASSWORD_STDIN was applied: %q", r.stderr)
	}
}
