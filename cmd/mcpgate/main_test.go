package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestMain(m *testing.M) {
	// The environment twins of the flags (MCPGATE_DATA_DIR, …) must not
	// leak from the developer's shell or CI into tests that rely on the
	// defaults; MCPGATE_TEST_* variables (the PostgreSQL DSN) stay.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MCPGATE_") && !strings.HasPrefix(k, "MCPGATE_TEST_") {
			os.Unsetenv(k)
		}
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// result is what one in-process CLI run produced.
type result struct {
	stdout, stderr string
	err            error
}

// cli runs mcpgate subcommands in process against one database.
type cli struct {
	t       *testing.T
	dataDir string // SQLite: the --data-dir
	dbURL   string // PostgreSQL: the --database-url
}

// newSQLite returns a cli on a fresh SQLite database in a temp dir.
func newSQLite(t *testing.T) cli {
	return cli{t: t, dataDir: t.TempDir()}
}

// newPostgres returns a cli on a fresh PostgreSQL schema (skipped as
// storetest.Postgres describes). The schema comes from storetest, which also
// drops it when the test ends; the CLI reaches it through search_path.
func newPostgres(t *testing.T) cli {
	db := storetest.Postgres(t)
	var schema string
	if err := db.SQL().QueryRowContext(t.Context(), `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(os.Getenv(storetest.PostgresEnv))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return cli{t: t, dataDir: t.TempDir(), dbURL: u.String()}
}

// eachBackend runs fn against SQLite and, when configured, PostgreSQL.
func eachBackend(t *testing.T, fn func(t *testing.T, c cli)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, newPostgres(t)) })
}

func (c cli) dbFlags() []string {
	if c.dbURL != "" {
		// The data dir still holds the generated server key.
		return []string{"--database-url", c.dbURL, "--data-dir", c.dataDir}
	}
	return []string{"--data-dir", c.dataDir}
}

// run executes `mcpgate args… <db flags>` with stdin, never panicking the
// test binary: a panic is reported as a test failure with the command.
func (c cli) run(stdin string, args ...string) (r result) {
	c.t.Helper()
	return runCLI(c.t, stdin, append(append([]string{}, args...), c.dbFlags()...)...)
}

// runCLI executes `mcpgate args…` exactly as given.
func runCLI(t *testing.T, stdin string, args ...string) (r result) {
	t.Helper()
	var out, errOut bytes.Buffer
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("mcpgate %s panicked: %v", shortArgs(args), p)
		}
	}()
	root := newRoot(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// ok runs a command that must succeed.
func (c cli) ok(stdin string, args ...string) result {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.err != nil {
		c.t.Fatalf("mcpgate %s: %v\nstderr:\n%s", shortArgs(args), r.err, r.stderr)
	}
	return r
}

// fail runs a command that must fail, print nothing on stdout, and say
// every one of wants in its error.
func (c cli) fail(stdin string, args []string, wants ...string) result {
	c.t.Helper()
	r := c.run(stdin, args...)
	checkFailure(c.t, args, r, wants...)
	return r
}

func checkFailure(t *testing.T, args []string, r result, wants ...string) {
	t.Helper()
	if r.err == nil {
		t.Errorf("mcpgate %s succeeded, want an error mentioning %q\nstdout:\n%s", shortArgs(args), wants, r.stdout)
		return
	}
	if r.stdout != "" {
		t.Errorf("mcpgate %s failed but printed on stdout:\n%s", shortArgs(args), r.stdout)
	}
	for _, w := range wants {
		if !strings.Contains(r.err.Error(), w) {
			t.Errorf("mcpgate %s: error %q does not mention %q", shortArgs(args), r.err, w)
		}
	}
}

// shortArgs shows a command line readably: arguments quoted when they hold
// anything but plain printable ASCII, long ones cut.
func shortArgs(args []string) string {
	var parts []string
	for _, a := range args {
		if len(a) > 60 {
			a = a[:60] + "…"
		}
		if strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r > '~' }) {
			a = strconv.QuoteToASCII(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// addUser creates a user with a password and returns the id printed.
func (c cli) addUser(email string, extra ...string) string {
	c.t.Helper()
	r := c.ok("a long passphrase here\n", append([]string{"user", "add", email, "--password-stdin"}, extra...)...)
	return strings.TrimSpace(r.stdout)
}

// createKey creates a key and returns the plaintext and the key id.
func (c cli) createKey(user string, extra ...string) (plain, id string) {
	c.t.Helper()
	args := append([]string{"key", "create", "--user", user}, extra...)
	if !contains(extra, "--name") {
		args = append(args, "--name", "test key")
	}
	r := c.ok("", args...)
	plain = strings.TrimSpace(r.stdout)
	f := strings.Fields(r.stderr)
	if len(f) < 3 || f[0] != "created" || f[1] != "key" {
		c.t.Fatalf("key create stderr %q does not start with \"created key <id>\"", r.stderr)
	}
	return plain, f[2]
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// jsonLines decodes one JSON object per line into T.
func jsonLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var v T
		if err := dec.Decode(&v); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("output is not JSON lines: %v\n%s", err, s)
		}
		out = append(out, v)
	}
}

type userOut struct {
	ID        string   `json:"id"`
	Email     string   `json:"email"`
	Name      string   `json:"name"`
	Roles     []string `json:"roles"`
	Disabled  bool     `json:"disabled"`
	CreatedAt string   `json:"created_at"`
	UpdatedAt string   `json:"updated_at"`
}

type keyOut struct {
	ID         string   `json:"id"`
	UserID     string   `json:"user_id"`
	Name       string   `json:"name"`
	Prefix     string   `json:"prefix"`
	Kind       string   `json:"kind"`
	Scopes     []string `json:"scopes"`
	Status     string   `json:"status"`
	CreatedAt  string   `json:"created_at"`
	ExpiresAt  string   `json:"expires_at"`
	LastUsedAt string   `json:"last_used_at"`
	RevokedAt  string   `json:"revoked_at"`
}

type auditOut struct {
	ID           int64          `json:"id"`
	Time         string         `json:"time"`
	Type         string         `json:"type"`
	Outcome      string         `json:"outcome"`
	Reason       string         `json:"reason"`
	UserID       string         `json:"user_id"`
	CredentialID string         `json:"credential_id"`
	Details      map[string]any `json:"details"`
}

func (c cli) users() []userOut {
	c.t.Helper()
	return jsonLines[userOut](c.t, c.ok("", "user", "list", "--json").stdout)
}

func (c cli) keys(extra ...string) []keyOut {
	c.t.Helper()
	return jsonLines[keyOut](c.t, c.ok("", append([]string{"key", "list", "--json"}, extra...)...).stdout)
}

func (c cli) audit(extra ...string) []auditOut {
	c.t.Helper()
	return jsonLines[auditOut](c.t, c.ok("", append([]string{"audit", "list"}, extra...)...).stdout)
}

// core opens the same database the CLI uses, for checks and seeding that
// the CLI cannot do (verifying a key, recording a refusal). Closed at the
// end of the test, or earlier by the caller.
func (c cli) core() *server.Core {
	c.t.Helper()
	cfg := config.Defaults()
	cfg.DataDir, cfg.DatabaseURL = c.dataDir, c.dbURL
	core, err := server.OpenCore(c.t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { core.Close(context.Background()) })
	return core
}

// newEmptyPostgres returns a cli on an empty PostgreSQL schema: one that
// exists but holds no table, as on a new database before the first start.
func newEmptyPostgres(t *testing.T) cli {
	c := newPostgres(t)
	u, err := url.Parse(c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	schema := q.Get("search_path") + "_empty"
	db, err := sqlstore.Open(t.Context(), c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(t.Context(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.SQL().ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		db.Close()
	})
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	c.dbURL = u.String()
	return c
}

// binResult is what one run of the real binary produced.
type binResult struct {
	stdout, stderr string
	code           int // exit status
}

// runBinary runs the built mcpgate binary with args in dir (the working
// directory; "" for the test's own).
func runBinary(t *testing.T, dir, stdin string, args ...string) binResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mcpgateBinary(t), args...)
	cmd.Dir, cmd.Env, cmd.Stdin = dir, processEnv(), strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("mcpgate %s: %v", shortArgs(args), err)
	}
	return binResult{stdout: out.String(), stderr: errOut.String(), code: cmd.ProcessState.ExitCode()}
}

// bin runs the real binary on c's database.
func (c cli) bin(stdin string, args ...string) binResult {
	c.t.Helper()
	return runBinary(c.t, "", stdin, append(append([]string{}, args...), c.dbFlags()...)...)
}
