package identity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// ErrInvalidCredentials is the one answer to a failed login, whatever the
// cause (unknown email, wrong password, disabled user, malformed input):
// a caller cannot tell which accounts exist.
var ErrInvalidCredentials = errors.New("invalid email or password")

// RateLimitedError refuses a login attempt that came too soon after too
// many others, for the account or from the client IP.
type RateLimitedError struct {
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many attempts, try again in %d s", RetryAfterSeconds(e.RetryAfter))
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1: the value of
// a Retry-After header (RFC 9110 §10.2.3).
func RetryAfterSeconds(d time.Duration) int {
	if d <= 0 {
		return 1
	}
	s := math.Ceil(d.Seconds())
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(s))
}

// Default login limits. Per account: 10 attempts at once, then one every
// 30 s (a password-guessing attacker spread over many IPs gets ~120
// guesses an hour). Per client IP: 30 at once, then one every 2 s (a
// shared NAT still works; one host cannot spray many accounts quickly).
const (
	DefaultLoginAccountEvery = 30 * time.Second
	DefaultLoginAccountBurst = 10
	DefaultLoginIPEvery      = 2 * time.Second
	DefaultLoginIPBurst      = 30
	defaultLimiterKeys       = 100_000
)

// SetLoginLimiters replaces the login rate limiters (New installs memory
// limiters with the defaults above). A nil limiter turns that limit off.
// Call it before serving.
func (s *Service) SetLoginLimiters(perAccount, perIP ratelimit.Limiter) {
	s.loginAccount, s.loginIP = perAccount, perIP
}

// dummyHash is checked against when the email is unknown or the user has no
// password, so every failed login costs one argon2id computation with the
// parameters of a real hash (TestDummyHashMatchesParameters keeps them in
// step). It is a constant so that even the first such login costs no more.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$79ymurrXRh88fEzwDCIdUA$EZZ6504ox2+Anume/dxhL3lYTWiUOWoD1125h5G8Iyk"

// Login checks an email and password and returns the user.
//
// Every failure is ErrInvalidCredentials, except a rate limit
// (*RateLimitedError) and storage trouble (any other error: answer 503).
// Unknown email, wrong password and disabled user do the same work (one
// user lookup and one argon2id computation; a dummy hash stands in for a
// missing one), so neither the answer nor its timing tells which accounts
// exist. Input that cannot be a credential (a malformed email, a password
// over MaxPasswordBytes) is refused before any hashing.
//
// Attempts are limited per normalised account and per client IP before
// any hashing. login.succeeded and login.failed are audited with the
// reason (unknown_user, bad_password, disabled_user, rate_limited,
// invalid_input); the password never is.
func (s *Service) Login(ctx context.Context, email, password, clientIP string) (store.User, error) {
	fail := func(reason, userID string, details map[string]any) {
		s.audit.Record(ctx, audit.Event{Type: audit.TypeLoginFailed, Outcome: store.OutcomeDeny, Reason: reason,
			UserID: userID, ClientIP: clientIP, Details: details})
	}
	norm, emailErr := NormalizeEmail(email)
	var details map[string]any
	if emailErr == nil {
		details = map[string]any{"email": norm}
	}

	// Limits first: a refused attempt costs no hashing. The IP limit
	// applies even to malformed input.
	if s.loginIP != nil && clientIP != "" {
		// One budget per client: an IPv6 /64 is one client (RateLimitKey).
		d, err := s.loginIP.Allow(ctx, httpx.RateLimitKey(clientIP))
		if err != nil {
			return store.User{}, fmt.Errorf("identity: login rate limit: %w", err)
		}
		if !d.Allowed {
			fail(audit.ReasonRateLimited, "", withDetail(details, "limit", "ip"))
			return store.User{}, &RateLimitedError{RetryAfter: d.RetryAfter}
		}
	}
	if emailErr != nil || len(password) > MaxPasswordBytes || password == "" {
		fail(audit.ReasonInvalidInput, "", details)
		return store.User{}, ErrInvalidCredentials
	}
	if s.loginAccount != nil {
		d, err := s.loginAccount.Allow(ctx, norm)
		if err != nil {
			return store.User{}, fmt.Errorf("identity: login rate limit: %w", err)
		}
		if !d.Allowed {
			fail(audit.ReasonRateLimited, "", withDetail(details, "limit", "account"))
			return store.User{}, &RateLimitedError{RetryAfter: d.RetryAfter}
		}
	}

	u, err := s.st.GetUserByEmail(ctx, norm)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_ = s.verifyPassword(dummyHash, password) // same work as a real check
		fail(audit.ReasonUnknownUser, "", details)
		return store.User{}, ErrInvalidCredentials
	case err != nil:
		return store.User{}, fmt.Errorf("identity: login: %w", err)
	}
	hash := u.PasswordHash
	if hash == "" {
		hash = dummyHash
	}
	pwErr := s.verifyPassword(hash, password)
	switch {
	case u.PasswordHash == "":
		fail(audit.ReasonBadPassword, u.ID, withDetail(details, "problem", "the user has no password"))
		return store.User{}, ErrInvalidCredentials
	case pwErr != nil:
		if !errors.Is(pwErr, ErrPasswordMismatch) {
			// A stored hash we cannot read: the user cannot log in, and
			// the operator should know why.
			details = withDetail(details, "problem", "stored password hash unusable")
		}
		fail(audit.ReasonBadPassword, u.ID, details)
		return store.User{}, ErrInvalidCredentials
	case u.Disabled:
		fail(audit.ReasonDisabledUser, u.ID, details)
		return store.User{}, ErrInvalidCredentials
	}
	s.audit.Record(ctx, audit.Event{Type: audit.TypeLoginSucceeded, Outcome: store.OutcomeAllow,
		UserID: u.ID, ClientIP: clientIP, Details: details})
	return u, nil
}

func withDetail(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for mk, mv := range m {
		out[mk] = mv
	}
	out[k] = v
	return out
}

// SetRoles replaces a user's roles (validated like CheckRoles) and records
// user.roles_changed when they change. Callers check who may do this.
func (s *Service) SetRoles(ctx context.Context, id string, roles []string) (store.User, error) {
	roles, err := CheckRoles(roles)
	if err != nil {
		return store.User{}, err
	}
	var before []string
	var changed bool
	u, err := s.st.UpdateUser(ctx, id, func(u store.User) (store.User, error) {
		before = u.Roles
		changed = !slicesEqual(u.Roles, roles)
		if changed {
			u.Roles = roles
			u.UpdatedAt = s.now()
		}
		return u, nil
	})
	if err != nil {
		return u, err
	}
	if changed {
		for _, fn := range s.onUserChanged {
			fn(u.ID)
		}
		if before == nil {
			before = []string{}
		}
		s.audit.Record(ctx, audit.Event{Type: audit.TypeUserRoles, Outcome: store.OutcomeAllow, UserID: u.ID,
			Details: map[string]any{"email": u.Email, "roles": roles, "previous_roles": before, "actor": actor(ctx)}})
	}
	return u, nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// OnUserChanged registers fn to run after any change that caches of user
// profiles must see at once: roles (SetRoles), and also disable and
// password changes (which additionally run the OnCredentialsChanged hooks).
func (s *Service) OnUserChanged(fn func(userID string)) {
	s.onUserChanged = append(s.onUserChanged, fn)
}

func newDefaultLimiters() (account, ip ratelimit.Limiter) {
	return ratelimit.NewMemory(DefaultLoginAccountEvery, DefaultLoginAccountBurst, defaultLimiterKeys),
		ratelimit.NewMemory(DefaultLoginIPEvery, DefaultLoginIPBurst, defaultLimiterKeys)
}
