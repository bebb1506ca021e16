package identity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) take() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

type loginEnv struct {
	svc    *Service
	rec    *recorder
	hashes atomic.Int32
}

const goodPassword = "correct horse battery staple"

func newLoginEnv(t testing.TB) *loginEnv {
	e := &loginEnv{rec: &recorder{}}
	e.svc = New(storetest.SQLite(t), e.rec)
	e.svc.SetLoginLimiters(nil, nil)
	e.svc.verifyPassword = func(phc, pw string) error {
		e.hashes.Add(1)
		return VerifyPassword(phc, pw)
	}
	return e
}

func (e *loginEnv) user(t testing.TB, email string, disabled bool) store.User {
	t.Helper()
	u, err := e.svc.Create(context.Background(), NewUser{Email: email, Password: goodPassword})
	if err != nil {
		t.Fatal(err)
	}
	if disabled {
		if u, err = e.svc.SetDisabled(context.Background(), u.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	e.rec.take()
	return u
}

// loginEvent is the part of a login audit event a test compares.
type loginEvent struct {
	Type, Outcome, Reason, UserID, ClientIP string
	Details                                 map[string]any
}

func loginEvents(es []audit.Event) []loginEvent {
	var out []loginEvent
	for _, e := range es {
		out = append(out, loginEvent{e.Type, e.Outcome, e.Reason, e.UserID, e.ClientIP, e.Details})
	}
	return out
}

func TestLoginSameAnswerForEveryFailure(t *testing.T) {
	e := newLoginEnv(t)
	ctx := t.Context()
	alice := e.user(t, "alice@example.com", false)
	dis := e.user(t, "dis@example.com", true)
	nopw, err := e.svc.Create(ctx, NewUser{Email: "nopw@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	e.rec.take()

	tests := []struct {
		name, email, password string
		want                  loginEvent
		hashes                int32
	}{
		{"unknown email", "nobody@example.com", goodPassword,
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonUnknownUser, "", "192.0.2.7", map[string]any{"email": "nobody@example.com"}}, 1},
		{"wrong password", "alice@example.com", "correct horse battery stapler",
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonBadPassword, alice.ID, "192.0.2.7", map[string]any{"email": "alice@example.com"}}, 1},
		{"disabled user, right password", "dis@example.com", goodPassword,
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonDisabledUser, dis.ID, "192.0.2.7", map[string]any{"email": "dis@example.com"}}, 1},
		{"user without a password", "nopw@example.com", goodPassword,
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonBadPassword, nopw.ID, "192.0.2.7", map[string]any{"email": "nopw@example.com", "problem": "the user has no password"}}, 1},
		{"malformed email", "alice@@example.com", goodPassword,
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonInvalidInput, "", "192.0.2.7", nil}, 0},
		{"confusable email", "аlice@example.com", goodPassword, // Cyrillic а
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonInvalidInput, "", "192.0.2.7", nil}, 0},
		{"1 MB password", "alice@example.com", strings.Repeat("p", 1<<20),
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonInvalidInput, "", "192.0.2.7", map[string]any{"email": "alice@example.com"}}, 0},
		{"empty password", "alice@example.com", "",
			loginEvent{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonInvalidInput, "", "192.0.2.7", map[string]any{"email": "alice@example.com"}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.hashes.Store(0)
			u, err := e.svc.Login(ctx, tc.email, tc.password, "192.0.2.7")
			if err != ErrInvalidCredentials || u.ID != "" {
				t.Fatalf("Login = %+v, %v; want exactly ErrInvalidCredentials", u, err)
			}
			if got := e.hashes.Load(); got != tc.hashes {
				t.Errorf("%d password hashes computed, want %d", got, tc.hashes)
			}
			if diff := cmp.Diff([]loginEvent{tc.want}, loginEvents(e.rec.take())); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
		})
	}

	u, err := e.svc.Login(ctx, "  ALICE@Example.com ", goodPassword, "192.0.2.7")
	if err != nil || u.ID != alice.ID {
		t.Fatalf("Login(right password, unnormalised email) = %+v, %v", u, err)
	}
	want := []loginEvent{{audit.TypeLoginSucceeded, store.OutcomeAllow, "", alice.ID, "192.0.2.7", map[string]any{"email": "alice@example.com"}}}
	if diff := cmp.Diff(want, loginEvents(e.rec.take())); diff != "" {
		t.Errorf("audit of a success (-want +got):\n%s", diff)
	}
	for _, ev := range e.rec.take() {
		if strings.Contains(ev.Reason+anyString(ev.Details), goodPassword) {
			t.Error("the password reached the audit log")
		}
	}
}

func anyString(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k)
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	e := newLoginEnv(t)
	ctx := t.Context()
	alice := e.user(t, "alice@example.com", false)
	e.svc.SetLoginLimiters(ratelimit.NewMemory(time.Minute, 3, 100), nil)

	for i := range 3 {
		if _, err := e.svc.Login(ctx, "alice@example.com", "wrong password!!", "192.0.2.1"); err != ErrInvalidCredentials {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	e.rec.take()
	e.hashes.Store(0)
	// From another IP, with the right password, and spelled differently:
	// still the same account, still limited, and nothing is hashed.
	_, err := e.svc.Login(ctx, "Alice@EXAMPLE.com", goodPassword, "198.51.100.9")
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > time.Minute {
		t.Fatalf("4th attempt = %v, want *RateLimitedError with RetryAfter in (0, 1m]", err)
	}
	if !strings.HasPrefix(err.Error(), "too many attempts, try again in ") || !strings.HasSuffix(err.Error(), " s") {
		t.Errorf("message %q", err.Error())
	}
	if e.hashes.Load() != 0 {
		t.Error("a rate-limited attempt was hashed")
	}
	want := []loginEvent{{audit.TypeLoginFailed, store.OutcomeDeny, audit.ReasonRateLimited, "", "198.51.100.9", map[string]any{"email": "alice@example.com", "limit": "account"}}}
	if diff := cmp.Diff(want, loginEvents(e.rec.take())); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	// Other accounts are not affected.
	e.user(t, "bob@example.com", false)
	if _, err := e.svc.Login(ctx, "bob@example.com", goodPassword, "198.51.100.9"); err != nil {
		t.Errorf("bob is limited by alice's attempts: %v", err)
	}
	_ = alice
}

func TestLoginRateLimitPerIP(t *testing.T) {
	e := newLoginEnv(t)
	ctx := t.Context()
	e.user(t, "alice@example.com", false)
	e.svc.SetLoginLimiters(nil, ratelimit.NewMemory(30*time.Second, 2, 100))
	// Spraying different accounts from one IP.
	for _, email := range []string{"a@example.com", "b@example.com"} {
		if _, err := e.svc.Login(ctx, email, "whatever password", "203.0.113.5"); err != ErrInvalidCredentials {
			t.Fatalf("Login(%s): %v", email, err)
		}
	}
	e.hashes.Store(0)
	e.rec.take()
	for _, in := range []struct{ email, password string }{
		{"alice@example.com", goodPassword},
		{"not an email", "x"}, // the IP limit comes before input checks
	} {
		_, err := e.svc.Login(ctx, in.email, in.password, "203.0.113.5")
		var rl *RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > 30*time.Second {
			t.Fatalf("Login(%s) from a limited IP = %v, want *RateLimitedError", in.email, err)
		}
	}
	if e.hashes.Load() != 0 {
		t.Error("a rate-limited attempt was hashed")
	}
	evs := e.rec.take()
	if len(evs) != 2 || evs[0].Reason != audit.ReasonRateLimited || evs[0].Details["limit"] != "ip" {
		t.Errorf("audit = %+v, want two rate_limited events with limit ip", evs)
	}
	if _, err := e.svc.Login(ctx, "alice@example.com", goodPassword, "203.0.113.6"); err != nil {
		t.Errorf("another IP is limited: %v", err)
	}
}

func TestLoginDefaultLimitsAreOn(t *testing.T) {
	rec := &recorder{}
	svc := New(storetest.SQLite(t), rec)
	var limited bool
	for range DefaultLoginAccountBurst + 1 {
		_, err := svc.Login(t.Context(), "x@example.com", "", "192.0.2.1") // invalid input: cheap
		var rl *RateLimitedError
		limited = errors.As(err, &rl)
	}
	// Invalid input only meets the IP limit; valid attempts meet both.
	for range DefaultLoginIPBurst {
		_, err := svc.Login(t.Context(), "x@example.com", "", "192.0.2.1")
		var rl *RateLimitedError
		limited = limited || errors.As(err, &rl)
	}
	if !limited {
		t.Error("New installs no login rate limit")
	}
}

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("redis down")
}

func TestLoginLimiterFailureFailsClosed(t *testing.T) {
	e := newLoginEnv(t)
	e.user(t, "alice@example.com", false)
	e.svc.SetLoginLimiters(failingLimiter{}, nil)
	u, err := e.svc.Login(t.Context(), "alice@example.com", goodPassword, "192.0.2.1")
	var rl *RateLimitedError
	if err == nil || u.ID != "" || errors.Is(err, ErrInvalidCredentials) || errors.As(err, &rl) {
		t.Fatalf("Login with a broken limiter = %+v, %v; want a server error", u, err)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, time.Minute: 60} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
	if got := (&RateLimitedError{RetryAfter: 1500 * time.Millisecond}).Error(); got != "too many attempts, try again in 2 s" {
		t.Errorf("Error() = %q", got)
	}
}

func TestSetRoles(t *testing.T) {
	e := newLoginEnv(t)
	ctx := t.Context()
	u := e.user(t, "alice@example.com", false)
	var changed []string
	e.svc.OnUserChanged(func(id string) { changed = append(changed, id) })
	admin := principal.With(ctx, &principal.Principal{UserID: "usr_admin"})

	got, err := e.svc.SetRoles(admin, u.ID, []string{"auditor", " admin ", "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"admin", "auditor"}, got.Roles); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
	want := []loginEvent{{audit.TypeUserRoles, store.OutcomeAllow, "", u.ID, "", map[string]any{
		"email": "alice@example.com", "roles": []string{"admin", "auditor"}, "previous_roles": []string{}, "actor": "usr_admin"}}}
	if diff := cmp.Diff(want, loginEvents(e.rec.take())); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{u.ID}, changed); diff != "" {
		t.Errorf("OnUserChanged calls (-want +got):\n%s", diff)
	}

	// The same roles again: no change, no event.
	if _, err := e.svc.SetRoles(admin, u.ID, []string{"admin", "auditor"}); err != nil {
		t.Fatal(err)
	}
	if evs := e.rec.take(); len(evs) != 0 {
		t.Errorf("unchanged roles recorded %v", evs)
	}
	if _, err := e.svc.SetRoles(admin, u.ID, []string{"Admin"}); err == nil {
		t.Error("invalid role accepted")
	}
	if _, err := e.svc.SetRoles(admin, store.NewID("usr"), nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetRoles(unknown user) = %v, want ErrNotFound", err)
	}
	got, err = e.svc.SetRoles(ctx, u.ID, nil)
	if err != nil || len(got.Roles) != 0 {
		t.Errorf("clearing roles = %v, %v", got.Roles, err)
	}
}

// BenchmarkLoginUnknownVsWrongPassword shows that a login for an email that
// does not exist costs what a wrong password for a real account costs (and
// a disabled account too): compare the ns/op of the sub-benchmarks. Both
// paths do one user lookup and one argon2id computation.
func BenchmarkLoginUnknownVsWrongPassword(b *testing.B) {
	e := newLoginEnv(b)
	e.svc.verifyPassword = VerifyPassword
	e.user(b, "alice@example.com", false)
	e.user(b, "dis@example.com", true)
	ctx := context.Background()
	for _, bc := range []struct{ name, email, password string }{
		{"unknown_user", "nobody@example.com", goodPassword},
		{"wrong_password", "alice@example.com", "not the password"},
		{"disabled_user", "dis@example.com", goodPassword},
		{"success", "alice@example.com", goodPassword},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				_, err := e.svc.Login(ctx, bc.email, bc.password, "192.0.2.1")
				if (err == nil) != (bc.name == "success") {
					b.Fatalf("Login: %v", err)
				}
			}
		})
	}
}

func TestDummyHashMatchesParameters(t *testing.T) {
	real := HashPassword("x")
	prefix := real[:strings.LastIndex(real[:strings.LastIndex(real, "$")], "$")+1]
	if !strings.HasPrefix(dummyHash, prefix) || len(dummyHash) != len(real) {
		t.Errorf("dummyHash %q does not use the parameters of new hashes (%q…)", dummyHash, prefix)
	}
	if err := VerifyPassword(dummyHash, "anything"); !errors.Is(err, ErrPasswordMismatch) {
		t.Errorf("VerifyPassword(dummyHash) = %v, want a mismatch after a full computation", err)
	}
}

func TestCredentialHooks(t *testing.T) {
	e := newLoginEnv(t)
	ctx := t.Context()
	u := e.user(t, "alice@example.com", false)
	var plain, withCtx, profile []string
	e.svc.OnCredentialsChanged(func(id string) { plain = append(plain, id) })
	e.svc.OnCredentialsChangedContext(func(ctx context.Context, id, reason string) {
		if ctx == nil {
			t.Error("nil context")
		}
		withCtx = append(withCtx, reason)
	})
	e.svc.OnUserChanged(func(id string) { profile = append(profile, id) })
	if _, err := e.svc.SetPassword(ctx, u.ID, "another long passphrase"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetDisabled(ctx, u.ID, true); err != nil { // no change: no hooks
		t.Fatal(err)
	}
	if _, err := e.svc.SetDisabled(ctx, u.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetRoles(ctx, u.ID, []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{ReasonPasswordChanged, ReasonUserDisabled, ReasonUserEnabled}, withCtx); diff != "" {
		t.Errorf("OnCredentialsChangedContext reasons (-want +got):\n%s", diff)
	}
	if len(plain) != 3 || len(profile) != 4 {
		t.Errorf("OnCredentialsChanged ran %d times (want 3), OnUserChanged %d times (want 4)", len(plain), len(profile))
	}
}
