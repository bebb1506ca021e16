package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

func (a *app) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or inspect database migrations"}
	cmd.AddCommand(&cobra.Command{
		Use: "up", Short: "Apply all pending migrations", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openCore(cmd.Context(), server.OpenCreate) // migrates
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			fmt.Fprintln(a.stderr, "database is up to date")
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "status", Short: "List migrations and whether they are applied (applies nothing)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Not openCore: even read-only, that refuses a schema with
			// pending migrations, and status must show them before an
			// upgrade. It creates nothing either: no SQLite file, and no
			// goose version table in an empty PostgreSQL schema.
			if err := a.configError(a.cfg.ValidateStorage); err != nil {
				return err
			}
			db, err := sqlstore.OpenExisting(cmd.Context(), a.cfg.DatabaseURLOrDefault())
			if err != nil {
				return a.storeError(err)
			}
			defer db.Close()
			st, err := db.MigrationStatus(cmd.Context())
			if err != nil {
				return err
			}
			pending := 0
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
			for _, m := range st {
				applied := "pending"
				if !m.Applied {
					pending++
				} else {
					applied = m.AppliedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, applied)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if pending > 0 {
				fmt.Fprintf(a.stderr, "%d migration(s) pending: run mcpgate migrate up (serve and the commands that write also apply them)\n", pending)
			}
			return nil
		},
	})
	return cmd
}

// readPassword reads one line from stdin (for --password-stdin).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, identity.MaxPasswordBytes+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on standard input")
	}
	return pw, nil
}

func (a *app) userCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	var name, roles string
	var pwStdin, asJSON bool
	add := &cobra.Command{
		Use: "add EMAIL", Short: "Create a user", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pw string
			if pwStdin {
				var err error
				if pw, err = readPassword(a.stdin); err != nil {
					return err
				}
			}
			c, err := a.openCore(cmd.Context(), server.OpenCreate)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			u, err := c.Users.Create(cmd.Context(), identity.NewUser{Email: args[0], Name: name, Password: pw, Roles: splitList(roles)})
			if err != nil {
				return userInputErr(args[0], err)
			}
			fmt.Fprintln(a.stdout, u.ID)
			if pw == "" {
				fmt.Fprintf(a.stderr, "created %s without a password (set one with: mcpgate user set-password %s --password-stdin)\n", u.Email, u.Email)
			} else {
				fmt.Fprintf(a.stderr, "created %s\n", u.Email)
			}
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "display name")
	add.Flags().StringVar(&roles, "roles", "", "comma-separated roles (for example admin)")
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of standard input")

	list := &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openCore(cmd.Context(), server.OpenReadOnly)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			users, err := c.Users.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				for _, u := range users {
					enc.Encode(userJSON(u))
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEMAIL\tNAME\tROLES\tSTATUS\tCREATED")
			for _, u := range users {
				status := "active"
				if u.Disabled {
					status = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Email, orDash(u.DisplayName), orDash(strings.Join(u.Roles, ",")), status, u.CreatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")

	setDisabled := func(use, short string, disabled bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " EMAIL|ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, u, err := a.openUser(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				defer c.Close(cmd.Context())
				if _, err := c.Users.SetDisabled(cmd.Context(), u.ID, disabled); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "%s %sd\n", u.Email, use)
				return nil
			},
		}
	}
	var setPwStdin bool
	setPw := &cobra.Command{
		Use: "set-password EMAIL|ID", Short: "Set a user's password (ends their credential caches)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !setPwStdin {
				return errors.New("pass the new password on standard input with --password-stdin (never as an argument: it would land in shell history)")
			}
			pw, err := readPassword(a.stdin)
			if err != nil {
				return err
			}
			c, u, err := a.openUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			if _, err := c.Users.SetPassword(cmd.Context(), u.ID, pw); err != nil {
				return userInputErr(args[0], err)
			}
			fmt.Fprintf(a.stderr, "password of %s changed\n", u.Email)
			return nil
		},
	}
	setPw.Flags().BoolVar(&setPwStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.AddCommand(add, list, setDisabled("disable", "Disable a user: every credential stops working at once", true),
		setDisabled("enable", "Enable a disabled user", false), setPw, a.userSetRolesCmd())
	return cmd
}

func (a *app) userSetRolesCmd() *cobra.Command {
	var roles string
	cmd := &cobra.Command{
		Use:   "set-roles EMAIL|ID --roles ROLES",
		Short: "Replace a user's roles (--roles \"\" removes them all)",
		Long: `Replace a user's roles with --roles (comma- or space-separated;
--roles "" removes every role). Audited as user.roles_changed with the old
and new roles, like a change on the admin pages.

The admin role opens the admin pages. The only enabled user with it keeps
it: give another user the admin role first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, err := identity.CheckRoles(splitList(roles))
			if err != nil {
				return userInputErr(args[0], err)
			}
			c, u, err := a.openUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			if err := keepsAnAdmin(cmd.Context(), c.Users, u, want); err != nil {
				return err
			}
			nu, err := c.Users.SetRoles(cmd.Context(), u.ID, want)
			if err != nil {
				return userErr(args[0], err)
			}
			if slices.Equal(u.Roles, nu.Roles) {
				fmt.Fprintf(a.stderr, "roles of %s unchanged: %s\n", nu.Email, rolesText(nu.Roles))
				return nil
			}
			fmt.Fprintf(a.stderr, "roles of %s set to %s (were %s)\n", nu.Email, rolesText(nu.Roles), rolesText(u.Roles))
			return nil
		},
	}
	cmd.Flags().StringVar(&roles, "roles", "", "the new roles, comma- or space-separated (for example admin,auditor); \"\" removes all (required)")
	cmd.MarkFlagRequired("roles")
	return cmd
}

// keepsAnAdmin refuses to take the admin role from the last enabled user
// who has it. The admin pages cannot do that either (nobody may remove
// their own admin role there), so mcpgate keeps someone who can use them.
func keepsAnAdmin(ctx context.Context, users *identity.Service, u store.User, roles []string) error {
	if u.Disabled || !slices.Contains(u.Roles, principal.RoleAdmin) || slices.Contains(roles, principal.RoleAdmin) {
		return nil
	}
	all, err := users.List(ctx)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.ID != u.ID && !o.Disabled && slices.Contains(o.Roles, principal.RoleAdmin) {
			return nil
		}
	}
	return fmt.Errorf("%s is the only enabled user with the %s role, and nobody could use the admin pages without it: give another user the %s role first",
		u.Email, principal.RoleAdmin, principal.RoleAdmin)
}

func rolesText(roles []string) string {
	if len(roles) == 0 {
		return "none"
	}
	return strings.Join(roles, ",")
}

func userErr(who string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user %q", who)
	}
	return userInputErr(who, err)
}

// userInputErr names the flag or argument an identity validation error is
// about. An email is quoted in ASCII (%+q), so a look-alike Unicode letter
// shows as \u0430 rather than as a convincing "a".
func userInputErr(email string, err error) error {
	var ve *identity.ValidationError
	switch {
	case errors.Is(err, identity.ErrUserExists):
		return fmt.Errorf("%s: %w", strings.ToLower(strings.TrimSpace(email)), err)
	case !errors.As(err, &ve):
		return err
	}
	switch ve.Field {
	case "email":
		if len(email) > 100 {
			email = email[:100] + "…"
		}
		return fmt.Errorf("email %+q: %s", email, ve.Message)
	case "password":
		return errors.New(ve.Message) // already reads "password is too short: …"
	default:
		return fmt.Errorf("--%s: %s", ve.Field, ve.Message)
	}
}

func userJSON(u store.User) map[string]any {
	return map[string]any{"id": u.ID, "email": u.Email, "name": u.DisplayName, "roles": nonNil(u.Roles),
		"disabled": u.Disabled, "created_at": u.CreatedAt.UTC().Format(time.RFC3339), "updated_at": u.UpdatedAt.UTC().Format(time.RFC3339)}
}

func (a *app) keyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage API keys"}
	var user, name, scopes, expires string
	create := &cobra.Command{
		Use: "create", Short: "Create an API key; prints the key (shown once) as the only line on stdout", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			exp, err := parseExpiry(expires, time.Now())
			if err != nil {
				return err
			}
			c, u, err := a.openUser(cmd.Context(), user)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			plain, k, err := c.Keys.Issue(cmd.Context(), apikeys.IssueRequest{UserID: u.ID, Name: name, Scopes: splitList(scopes), ExpiresAt: exp})
			if err != nil {
				return keyInputErr(err, user, expires)
			}
			fmt.Fprintln(a.stdout, plain)
			fmt.Fprintf(a.stderr, "created key %s (%s) for %s, scopes [%s], expires %s. The key is shown only this once.\n",
				k.ID, k.Prefix, u.Email, strings.Join(k.Scopes, " "), fmtTime(k.ExpiresAt, "never"))
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "owner's email or id (required)")
	create.Flags().StringVar(&name, "name", "", "a name to recognise the key by (required)")
	create.Flags().StringVar(&scopes, "scopes", "", "comma- or space-separated scopes, e.g. payments:read,payments:write")
	create.Flags().StringVar(&expires, "expires", "", "lifetime (30d, 12h) or date (2027-01-31, RFC 3339); empty: never")
	create.MarkFlagRequired("user")
	create.MarkFlagRequired("name")

	var listUser string
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List API keys (id first)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openCore(cmd.Context(), server.OpenReadOnly)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			var userID string
			if listUser != "" {
				u, err := c.Users.Get(cmd.Context(), listUser)
				if err != nil {
					return userErr(listUser, err)
				}
				userID = u.ID
			}
			keys, err := c.Keys.List(cmd.Context(), userID)
			if err != nil {
				return err
			}
			now := time.Now()
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				for _, k := range keys {
					enc.Encode(map[string]any{"id": k.ID, "user_id": k.UserID, "name": k.Name, "prefix": k.Prefix, "kind": k.Kind,
						"scopes": nonNil(k.Scopes), "status": keyStatus(k, now), "created_at": fmtTime(k.CreatedAt, ""),
						"expires_at": fmtTime(k.ExpiresAt, ""), "last_used_at": fmtTime(k.LastUsedAt, ""), "revoked_at": fmtTime(k.RevokedAt, "")})
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tUSER\tKIND\tSCOPES\tSTATUS\tEXPIRES\tLAST USED")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, k.UserID, k.Kind,
					orDash(strings.Join(k.Scopes, ",")), keyStatus(k, now), fmtTime(k.ExpiresAt, "never"), fmtTime(k.LastUsedAt, "never"))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&listUser, "user", "", "only this user's keys (email or id)")
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")

	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API key (running servers refuse it within the key cache TTL)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openCore(cmd.Context(), server.OpenExisting)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			k, err := c.Keys.Revoke(cmd.Context(), args[0])
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no key %q", args[0])
				}
				return err
			}
			fmt.Fprintf(a.stderr, "revoked key %s (%s…)\n", k.ID, k.Prefix)
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// keyInputErr names the flag an apikeys validation error is about.
func keyInputErr(err error, user, expires string) error {
	var ve *apikeys.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	switch ve.Field {
	case "user_id":
		return fmt.Errorf("--user %q: %s", user, ve.Message)
	case "expires_at":
		return fmt.Errorf("--expires %q: %s", expires, ve.Message)
	case "name", "scopes":
		return fmt.Errorf("--%s: %s", ve.Field, ve.Message)
	}
	return err
}

func keyStatus(k store.APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	}
	return "active"
}

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit log"}
	var since, typ, user, outcome string
	var limit int
	list := &cobra.Command{
		Use: "list", Short: "Print audit events as JSON lines, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := store.AuditFilter{Type: typ, Outcome: outcome, Limit: limit}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				f.Since = t
			}
			if outcome != "" && outcome != store.OutcomeAllow && outcome != store.OutcomeDeny {
				return fmt.Errorf("--outcome %q: must be allow or deny", outcome)
			}
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit %d: must be between 1 and 1000", limit)
			}
			c, err := a.openCore(cmd.Context(), server.OpenReadOnly)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			if user != "" {
				u, err := c.Users.Get(cmd.Context(), user)
				if err != nil {
					return userErr(user, err)
				}
				f.UserID = u.ID
			}
			events, err := c.DB.ListAudit(cmd.Context(), f)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(a.stdout)
			for _, e := range events {
				enc.Encode(server.AuditJSON(e))
			}
			return nil
		},
	}
	list.Flags().StringVar(&since, "since", "", "only events after this: a duration back from now (1h, 7d) or a time (RFC 3339 or 2006-01-02)")
	list.Flags().StringVar(&typ, "type", "", "only this event type, e.g. auth.rejected")
	list.Flags().StringVar(&user, "user", "", "only this user's events (email or id)")
	list.Flags().StringVar(&outcome, "outcome", "", "allow or deny")
	list.Flags().IntVar(&limit, "limit", 100, "most events to print (1-1000)")
	cmd.AddCommand(list)
	return cmd
}

// parseDuration accepts Go durations plus a "d" (days) suffix.
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 36500 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "never" {
		return time.Time{}, nil
	}
	if t, ok := parseTime(s); ok {
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("--expires %q: use a lifetime such as 30d or 12h, a date such as 2027-01-31, or an RFC 3339 time", s)
	}
	return now.Add(d), nil
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if t, ok := parseTime(s); ok {
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("--since %q: use a duration such as 1h or 7d, or a time such as 2026-01-31", s)
	}
	return now.Add(-d), nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

func fmtTime(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// openUser opens the existing database (server.OpenExisting) and finds
// the user named by who (an email or a user id). The caller closes c.
func (a *app) openUser(ctx context.Context, who string) (*server.Core, store.User, error) {
	c, err := a.openCore(ctx, server.OpenExisting)
	if err != nil {
		return nil, store.User{}, err
	}
	u, err := c.Users.Get(ctx, who)
	if err != nil {
		c.Close(ctx)
		return nil, store.User{}, userErr(who, err)
	}
	return c, u, nil
}
