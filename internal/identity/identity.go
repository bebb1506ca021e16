// Package identity manages local users: normalised unique emails, display
// names, roles, argon2id passwords and the disabled flag. Every change is
// audited here, and a disable or password change tells the credential
// caches to forget the user at once.
package identity

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// ValidationError is a readable complaint about one input field.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// ErrUserExists: the email is taken.
var ErrUserExists = errors.New("a user with this email already exists")

// NormalizeEmail trims and lower-cases an address and checks that it is one
// plain address. Only ASCII is accepted: look-alike Unicode characters would
// otherwise let two visually identical accounts exist (international domains
// go in their punycode form).
func NormalizeEmail(s string) (string, error) {
	e, ascii := lowerASCII(strings.TrimSpace(s))
	switch {
	case e == "":
		return "", &ValidationError{"email", "is required"}
	case len(e) > 254:
		return "", &ValidationError{"email", "is too long (at most 254 characters)"}
	case !ascii:
		return "", &ValidationError{"email", "must be plain ASCII without spaces (use the punycode form for international domains)"}
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" {
		return "", &ValidationError{"email", "is not a valid email address"}
	}
	local, domain, _ := strings.Cut(e, "@")
	if local == "" || !strings.Contains(domain, ".") && domain != "localhost" {
		return "", &ValidationError{"email", "is not a valid email address"}
	}
	return e, nil
}

// lowerASCII lower-cases s when every byte of it is printable ASCII
// without spaces (0x21-0x7e), and says whether it was. The check comes
// first: strings.ToLower maps some non-ASCII letters to ASCII ones (U+212A
// KELVIN SIGN becomes "k"), so checking its result would let a look-alike
// address pass as, and match, a plain one.
func lowerASCII(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return s, false
		}
	}
	return strings.ToLower(s), true
}

// EmailDomain returns the domain of an address as NormalizeEmail
// normalises it (lower case), or false when the address does not
// normalise. Rules that match accounts by email domain use it, so they see
// the domain of the address the account would be given.
func EmailDomain(email string) (string, bool) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return "", false
	}
	_, domain, _ := strings.Cut(e, "@")
	return domain, true
}

// NormalizeEmailDomain normalises a domain named in an email-domain rule
// ("@Example.com" becomes "example.com"): a host name of at least two
// labels of letters, digits and '-', lower-cased like NormalizeEmail's
// addresses (ASCII only, checked before lower-casing), so EmailDomain's
// results compare equal to it byte for byte.
func NormalizeEmailDomain(s string) (string, error) {
	d, ascii := lowerASCII(strings.TrimPrefix(strings.TrimSpace(s), "@"))
	labels := strings.Split(d, ".")
	ok := ascii && len(d) <= 253 && len(labels) >= 2
	for _, l := range labels {
		ok = ok && l != "" && len(l) <= 63 && l[0] != '-' && l[len(l)-1] != '-' &&
			!strings.ContainsFunc(l, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' })
	}
	if !ok {
		return "", &ValidationError{"domain", "must be a domain such as example.com, in ASCII (the punycode form for international domains)"}
	}
	return d, nil
}

// CheckDisplayName bounds a display name and refuses control characters.
func CheckDisplayName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", &ValidationError{"name", "is not valid UTF-8 text"}
	}
	if utf8.RuneCountInString(s) > 200 {
		return "", &ValidationError{"name", "is too long (at most 200 characters)"}
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u202e' || r == '\u202d' {
			return "", &ValidationError{"name", "contains control characters"}
		}
	}
	return s, nil
}

// CheckRoles validates role names: short lower-case tokens.
func CheckRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if len(r) > 64 {
			return nil, &ValidationError{"roles", fmt.Sprintf("role %q is too long (at most 64 characters)", r)}
		}
		for _, c := range r {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':' || c == '.') {
				return nil, &ValidationError{"roles", fmt.Sprintf("role %q may only contain a-z, 0-9, '-', '_', ':' and '.'", r)}
			}
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Service manages users.
type Service struct {
	st    store.Store
	audit audit.Recorder
	now   func() time.Time
	// OnCredentialsChanged is called with a user id after a disable or a
	// password change so credential caches drop the user immediately.
	onChange []func(userID string)
	// onUserChanged: after any change profile caches must see.
	onUserChanged []func(userID string)
	// onChangeCtx: like onChange, with the request context and the reason.
	onChangeCtx []func(ctx context.Context, userID, reason string)

	loginAccount, loginIP ratelimit.Limiter
	verifyPassword        func(phc, pw string) error // VerifyPassword; tests count hashing
}

// New returns a Service with the default login rate limits (see
// SetLoginLimiters).
func New(st store.Store, rec audit.Recorder) *Service {
	s := &Service{st: st, audit: rec, now: time.Now, verifyPassword: VerifyPassword}
	s.loginAccount, s.loginIP = newDefaultLimiters()
	return s
}

// OnCredentialsChanged registers fn to run after a user is disabled (or
// enabled again) or their password changes: the place to drop cached
// credentials and end the user's browser sessions.
func (s *Service) OnCredentialsChanged(fn func(userID string)) {
	s.onChange = append(s.onChange, fn)
}

// Reasons passed to OnCredentialsChangedContext hooks (and usable as the
// reason of session.Manager.RevokeAll).
const (
	ReasonPasswordChanged = "password_changed"
	ReasonUserDisabled    = "user_disabled"
	ReasonUserEnabled     = "user_enabled"
)

// OnCredentialsChangedContext registers fn like OnCredentialsChanged, but
// fn also gets the context of the change (its principal and request info,
// for audit events) and the reason: ReasonPasswordChanged,
// ReasonUserDisabled or ReasonUserEnabled. For example:
//
//	users.OnCredentialsChangedContext(func(ctx context.Context, id, reason string) {
//		if reason != identity.ReasonUserEnabled {
//			_ = sessions.RevokeAll(ctx, id, reason) // log the error
//		}
//	})
func (s *Service) OnCredentialsChangedContext(fn func(ctx context.Context, userID, reason string)) {
	s.onChangeCtx = append(s.onChangeCtx, fn)
}

// NewUser describes a user to create.
type NewUser struct {
	Email    string
	Name     string
	Password string // empty: the user cannot log in with a password
	Roles    []string
}

// Create validates and stores a new user.
func (s *Service) Create(ctx context.Context, in NewUser) (store.User, error) {
	email, err := NormalizeEmail(in.Email)
	if err != nil {
		return store.User{}, err
	}
	name, err := CheckDisplayName(in.Name)
	if err != nil {
		return store.User{}, err
	}
	roles, err := CheckRoles(in.Roles)
	if err != nil {
		return store.User{}, err
	}
	var hash string
	if in.Password != "" {
		if err := CheckPasswordPolicy(in.Password); err != nil {
			return store.User{}, &ValidationError{"password", err.Error()}
		}
		hash = HashPassword(in.Password)
	}
	now := s.now()
	u := store.User{
		ID: store.NewID("usr"), Email: email, DisplayName: name, Roles: roles,
		PasswordHash: hash, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.st.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.User{}, ErrUserExists
		}
		return store.User{}, err
	}
	s.audit.Record(ctx, audit.Event{
		Type: audit.TypeUserCreated, Outcome: store.OutcomeAllow, UserID: u.ID,
		Details: map[string]any{"email": u.Email, "roles": u.Roles, "actor": actor(ctx)},
	})
	return u, nil
}

// Get returns a user by id or by email.
func (s *Service) Get(ctx context.Context, idOrEmail string) (store.User, error) {
	if strings.Contains(idOrEmail, "@") {
		email, err := NormalizeEmail(idOrEmail)
		if err != nil {
			return store.User{}, err
		}
		return s.st.GetUserByEmail(ctx, email)
	}
	return s.st.GetUser(ctx, idOrEmail)
}

// List returns all users ordered by email.
func (s *Service) List(ctx context.Context) ([]store.User, error) { return s.st.ListUsers(ctx) }

// SetDisabled disables or enables a user. Disabling makes every credential
// of the user stop working at once: the key cache forgets the user here, and
// verification checks the flag on every uncached lookup.
func (s *Service) SetDisabled(ctx context.Context, id string, disabled bool) (store.User, error) {
	var changed bool
	u, err := s.st.UpdateUser(ctx, id, func(u store.User) (store.User, error) {
		changed = u.Disabled != disabled
		u.Disabled = disabled
		if changed {
			u.UpdatedAt = s.now()
		}
		return u, nil
	})
	if err != nil {
		return u, err
	}
	if changed {
		reason := ReasonUserEnabled
		if disabled {
			reason = ReasonUserDisabled
		}
		s.notify(ctx, u.ID, reason)
		typ := audit.TypeUserEnabled
		if disabled {
			typ = audit.TypeUserDisabled
		}
		s.audit.Record(ctx, audit.Event{Type: typ, Outcome: store.OutcomeAllow, UserID: u.ID,
			Details: map[string]any{"email": u.Email, "actor": actor(ctx)}})
	}
	return u, nil
}

// SetPassword replaces a user's password after checking the policy.
func (s *Service) SetPassword(ctx context.Context, id, password string) (store.User, error) {
	if err := CheckPasswordPolicy(password); err != nil {
		return store.User{}, &ValidationError{"password", err.Error()}
	}
	hash := HashPassword(password)
	u, err := s.st.UpdateUser(ctx, id, func(u store.User) (store.User, error) {
		u.PasswordHash = hash
		u.UpdatedAt = s.now()
		return u, nil
	})
	if err != nil {
		return u, err
	}
	s.notify(ctx, u.ID, ReasonPasswordChanged)
	s.audit.Record(ctx, audit.Event{Type: audit.TypeUserPassword, Outcome: store.OutcomeAllow, UserID: u.ID,
		Details: map[string]any{"actor": actor(ctx)}})
	return u, nil
}

func (s *Service) notify(ctx context.Context, userID, reason string) {
	for _, fn := range s.onUserChanged {
		fn(userID)
	}
	for _, fn := range s.onChange {
		fn(userID)
	}
	for _, fn := range s.onChangeCtx {
		fn(ctx, userID, reason)
	}
}

// actor names who made a change: the calling user, or the CLI.
func actor(ctx context.Context) string {
	if p := principal.From(ctx); p != nil {
		return p.UserID
	}
	return "cli"
}
