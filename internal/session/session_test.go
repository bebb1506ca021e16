package session_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

// clock is a fake time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// types returns the types of the events recorded since the last call.
func (r *recorder) take() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func types(es []audit.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Type)
	}
	return out
}

type env struct {
	t     *testing.T
	db    *sqlstore.DB
	rec   *recorder
	clock *clock
	m     *session.Manager
}

func newEnv(t *testing.T, db *sqlstore.DB, opts session.Options) *env {
	e := &env{t: t, db: db, rec: &recorder{}, clock: &clock{t: t0}}
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	e.m = session.New(db, e.rec, opts)
	return e
}

// each runs fn on SQLite and on PostgreSQL (when configured).
func each(t *testing.T, opts session.Options, fn func(t *testing.T, e *env)) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) { fn(t, newEnv(t, db, opts)) })
}

func (e *env) user(email string) store.User {
	e.t.Helper()
	u := store.User{ID: store.NewID("usr"), Email: email, CreatedAt: t0, UpdatedAt: t0}
	if err := e.db.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// browser keeps the cookie jar of one browser (just the session cookie).
type browser struct {
	cookie *http.Cookie
}

func (b *browser) request(method string) *http.Request {
	r := httptest.NewRequest(method, "https://mcp.example.com/account", nil)
	r = r.WithContext(httpx.WithInfo(r.Context(), httpx.RequestInfo{ClientIP: "192.0.2.1", UserAgent: "TestBrowser/1.0", RequestID: "req-1"}))
	if b.cookie != nil {
		r.AddCookie(&http.Cookie{Name: b.cookie.Name, Value: b.cookie.Value})
	}
	return r
}

// absorb applies the Set-Cookie headers of a response.
func (b *browser) absorb(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 || c.Value == "" {
			b.cookie = nil
		} else {
			b.cookie = c
		}
	}
}

func (e *env) login(b *browser, u store.User) store.Session {
	e.t.Helper()
	w := httptest.NewRecorder()
	r := b.request(http.MethodPost)
	s, err := e.m.Start(r.Context(), w, r, u)
	if err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	b.absorb(e.t, w)
	return s
}

func (e *env) current(b *browser) (*session.Current, error) {
	return e.m.Current(b.request(http.MethodGet))
}

func (e *env) logout(b *browser) error {
	w := httptest.NewRecorder()
	r := b.request(http.MethodPost)
	err := e.m.End(r.Context(), w, r)
	b.absorb(e.t, w)
	return err
}

func TestStartSetsCookie(t *testing.T) {
	for _, tc := range []struct {
		secure bool
		name   string
	}{{true, "__Host-mcpgate_session"}, {false, "mcpgate_session"}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, storetest.SQLite(t), session.Options{Secure: tc.secure})
			u := e.user("alice@example.com")
			b := &browser{}
			w := httptest.NewRecorder()
			r := b.request(http.MethodPost)
			s, err := e.m.Start(r.Context(), w, r, u)
			if err != nil {
				t.Fatal(err)
			}
			if e.m.CookieName() != tc.name {
				t.Errorf("CookieName = %q, want %q", e.m.CookieName(), tc.name)
			}
			cookies := w.Result().Cookies()
			if len(cookies) != 1 {
				t.Fatalf("Set-Cookie: %v, want one cookie", w.Header().Values("Set-Cookie"))
			}
			c := cookies[0]
			got := []any{c.Name, c.Path, c.Domain, c.Secure, c.HttpOnly, c.SameSite, c.Expires.Unix()}
			want := []any{tc.name, "/", "", tc.secure, true, http.SameSiteLaxMode, t0.Add(session.DefaultLifetime).Unix()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("cookie name, path, domain, secure, httponly, samesite, expires (-want +got):\n%s", diff)
			}
			raw, err := base64.RawURLEncoding.DecodeString(c.Value)
			if err != nil || len(raw) != 32 {
				t.Fatalf("cookie value %q is not 32 bytes of base64url", c.Value)
			}
			stored, err := e.db.GetSession(t.Context(), s.ID)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw)
			if !slices.Equal(stored.Hash, sum[:]) {
				t.Error("the store does not hold the SHA-256 of the cookie secret")
			}
			wantS := store.Session{ID: s.ID, UserID: u.ID, Hash: sum[:], CreatedAt: t0.Truncate(time.Millisecond),
				LastSeenAt: t0.Truncate(time.Millisecond), ExpiresAt: t0.Add(session.DefaultLifetime).Truncate(time.Millisecond),
				IP: "192.0.2.1", UserAgent: "TestBrowser/1.0"}
			if diff := cmp.Diff(wantS, stored); diff != "" {
				t.Errorf("stored session (-want +got):\n%s", diff)
			}
			evs := e.rec.take()
			if len(evs) != 1 || evs[0].Type != audit.TypeSessionCreated || evs[0].UserID != u.ID || evs[0].CredentialID != s.ID {
				t.Errorf("audit = %+v, want one session.created", evs)
			}
			for _, ev := range evs {
				if ev.Details != nil && cmp.Diff(nil, ev.Details) != "" && containsValue(ev.Details, c.Value) {
					t.Error("the cookie secret reached the audit log")
				}
			}
		})
	}
}

func containsValue(m map[string]any, s string) bool {
	for _, v := range m {
		if v == s {
			return true
		}
	}
	return false
}

func TestNewSessionOnEveryLogin(t *testing.T) {
	each(t, session.Options{}, func(t *testing.T, e *env) {
		u := e.user("alice@example.com")
		b := &browser{}
		first := e.login(b, u)
		firstCookie := b.cookie.Value
		e.rec.take()
		second := e.login(b, u) // the same browser logs in again
		if second.ID == first.ID || b.cookie.Value == firstCookie {
			t.Fatal("a second login kept the session id or secret (fixation)")
		}
		old, err := e.db.GetSession(t.Context(), first.ID)
		if err != nil || old.RevokedAt.IsZero() {
			t.Errorf("the session the browser came with is not revoked: %+v, %v", old, err)
		}
		if diff := cmp.Diff([]string{audit.TypeSessionRevoked, audit.TypeSessionCreated}, types(e.rec.take())); diff != "" {
			t.Errorf("audit (-want +got):\n%s", diff)
		}
		// An attacker who planted the first cookie holds nothing.
		planted := &browser{cookie: &http.Cookie{Name: e.m.CookieName(), Value: firstCookie}}
		if _, err := e.current(planted); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("the pre-login cookie still works: %v", err)
		}
		cur, err := e.current(b)
		if err != nil || cur.Session.ID != second.ID || cur.User.ID != u.ID || cur.Secret != b.cookie.Value {
			t.Errorf("Current = %+v, %v; want the new session", cur, err)
		}
	})
}

func TestCurrentRefusesBadCookies(t *testing.T) {
	each(t, session.Options{Secure: true}, func(t *testing.T, e *env) {
		u := e.user("alice@example.com")
		good := &browser{}
		e.login(good, u)
		valid := good.cookie.Value
		flip := []byte(valid)
		flip[10] ^= 0x01 // still base64url, different secret
		if flip[10] == '-' || flip[10] == '_' {
			flip[10] = 'A'
		}
		var random [32]byte
		random[0] = 1
		name := e.m.CookieName()
		cases := map[string]*http.Cookie{
			"no cookie":              nil,
			"empty":                  {Name: name, Value: ""},
			"too short":              {Name: name, Value: valid[:42]},
			"too long":               {Name: name, Value: valid + "A"},
			"padded":                 {Name: name, Value: base64.URLEncoding.EncodeToString(random[:])},
			"standard alphabet":      {Name: name, Value: "+/" + valid[2:]},
			"not base64":             {Name: name, Value: "!!" + valid[2:]},
			"tampered":               {Name: name, Value: string(flip)},
			"forged":                 {Name: name, Value: base64.RawURLEncoding.EncodeToString(random[:])},
			"other cookie name":      {Name: "mcpgate_session", Value: valid},
			"huge":                   {Name: name, Value: strings.Repeat("A", 8000)},
			"key instead of session": {Name: name, Value: "mcpg_0000000000000000000000000000000000000000000000000"},
		}
		for what, c := range cases {
			b := &browser{cookie: c}
			if c != nil && c.Value == "" {
				b.cookie = &http.Cookie{Name: name, Value: `""`}
			}
			if cur, err := e.current(b); !errors.Is(err, session.ErrNoSession) || cur != nil {
				t.Errorf("%s: Current = %+v, %v; want ErrNoSession", what, cur, err)
			}
		}
		if _, err := e.current(good); err != nil {
			t.Fatalf("the good cookie stopped working: %v", err)
		}
		// A revoked session and a disabled user are refused too.
		e.logout(&browser{cookie: good.cookie})
		if _, err := e.current(good); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("revoked session: %v", err)
		}
		e.login(good, u)
		if _, err := e.db.UpdateUser(t.Context(), u.ID, func(u store.User) (store.User, error) { u.Disabled = true; return u, nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := e.current(good); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("disabled user: %v", err)
		}
	})
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	each(t, session.Options{IdleTimeout: time.Hour, Lifetime: 5 * time.Hour}, func(t *testing.T, e *env) {
		u := e.user("alice@example.com")
		idle := &browser{}
		s := e.login(idle, u)
		busy := &browser{}
		e.login(busy, u)
		e.rec.take()

		// Active use keeps a session alive past the idle timeout...
		for range 5 {
			e.clock.Advance(50 * time.Minute)
			if _, err := e.current(busy); err != nil {
				t.Fatalf("busy session refused at %v: %v", e.clock.Now().Sub(t0), err)
			}
		}
		// ... but not the idle one.
		if _, err := e.current(idle); !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("idle session accepted after %v: %v", e.clock.Now().Sub(t0), err)
		}
		evs := e.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeSessionExpired || evs[0].Reason != "idle" || evs[0].CredentialID != s.ID {
			t.Errorf("audit = %+v, want one session.expired (idle)", evs)
		}
		stored, _ := e.db.GetSession(t.Context(), s.ID)
		if stored.RevokedAt.IsZero() || stored.EndReason != store.SessionEndIdle {
			t.Errorf("the expired session was not ended idle in the store: %+v", stored)
		}
		if _, err := e.current(idle); !errors.Is(err, session.ErrNoSession) {
			t.Fatal("expired session accepted on a second try")
		}
		if evs := e.rec.take(); len(evs) != 0 {
			t.Errorf("session.expired recorded again: %+v", evs)
		}
		// Signing out in that browser afterwards ends the sign-in for good
		// (OAuth grants' claims outlive an idle end, not a sign-out),
		// keeping the time it ended and auditing nothing new.
		if err := e.logout(idle); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.db.GetSession(t.Context(), s.ID); got.EndReason != store.SessionEndRevoked || !got.RevokedAt.Equal(stored.RevokedAt) {
			t.Errorf("after signing out of an idle session: end reason %q at %v, want revoked at %v", got.EndReason, got.RevokedAt, stored.RevokedAt)
		}
		if evs := e.rec.take(); len(evs) != 0 {
			t.Errorf("signing out of an ended session was audited: %+v", evs)
		}

		// The absolute lifetime ends even a busy session.
		e.clock.Advance(5*time.Hour - 250*time.Minute - time.Millisecond)
		if _, err := e.current(busy); err != nil {
			t.Fatalf("busy session refused just before its lifetime ends: %v", err)
		}
		e.clock.Advance(time.Millisecond)
		if _, err := e.current(busy); !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("session accepted at the end of its lifetime: %v", err)
		}
		evs = e.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeSessionExpired || evs[0].Reason != "lifetime" {
			t.Errorf("audit = %+v, want one session.expired (lifetime)", evs)
		}
		if got, _ := e.db.GetSession(t.Context(), evs[0].CredentialID); got.EndReason != store.SessionEndLifetime {
			t.Errorf("the session past its lifetime has end reason %q, want lifetime", got.EndReason)
		}
	})
}

func TestTouchIsThrottled(t *testing.T) {
	each(t, session.Options{TouchInterval: time.Minute}, func(t *testing.T, e *env) {
		u := e.user("alice@example.com")
		b := &browser{}
		s := e.login(b, u)
		lastSeen := func() time.Time {
			got, err := e.db.GetSession(t.Context(), s.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.LastSeenAt
		}
		e.clock.Advance(59 * time.Second)
		cur, err := e.current(b)
		if err != nil {
			t.Fatal(err)
		}
		if !lastSeen().Equal(s.LastSeenAt) || !cur.Session.LastSeenAt.Equal(s.LastSeenAt) {
			t.Errorf("LastSeenAt written %v after login, within the touch interval", 59*time.Second)
		}
		e.clock.Advance(time.Second)
		cur, err = e.current(b)
		if err != nil {
			t.Fatal(err)
		}
		want := t0.Add(time.Minute).Truncate(time.Millisecond)
		if !lastSeen().Equal(want) || !cur.Session.LastSeenAt.Equal(want) {
			t.Errorf("LastSeenAt = %v (returned %v), want %v", lastSeen(), cur.Session.LastSeenAt, want)
		}
	})
}

func TestLogout(t *testing.T) {
	each(t, session.Options{}, func(t *testing.T, e *env) {
		u := e.user("alice@example.com")
		b := &browser{}
		s := e.login(b, u)
		copyOfCookie := b.cookie
		e.rec.take()

		w := httptest.NewRecorder()
		r := b.request(http.MethodPost)
		if err := e.m.End(r.Context(), w, r); err != nil {
			t.Fatal(err)
		}
		cs := w.Result().Cookies()
		if len(cs) != 1 || cs[0].Name != e.m.CookieName() || cs[0].MaxAge >= 0 || cs[0].Value != "" || !cs[0].HttpOnly || cs[0].Path != "/" {
			t.Errorf("logout Set-Cookie = %v, want the cookie cleared", w.Header().Values("Set-Cookie"))
		}
		evs := e.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeLogout || evs[0].UserID != u.ID || evs[0].CredentialID != s.ID {
			t.Errorf("audit = %+v, want one logout", evs)
		}
		// The session is gone server-side: the old cookie is worthless.
		if _, err := e.current(&browser{cookie: copyOfCookie}); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("cookie works after logout: %v", err)
		}
		// Idempotent: again with the old cookie, and without any.
		if err := e.logout(&browser{cookie: copyOfCookie}); err != nil {
			t.Errorf("second logout: %v", err)
		}
		if err := e.logout(&browser{}); err != nil {
			t.Errorf("logout without a session: %v", err)
		}
		if evs := e.rec.take(); len(evs) != 0 {
			t.Errorf("repeated logouts recorded %v", types(evs))
		}
	})
}

func TestConcurrentLogouts(t *testing.T) {
	each(t, session.Options{}, func(t *testing.T, e *env) {
		u := e.user("alice@example.com")
		b := &browser{}
		e.login(b, u)
		e.rec.take()
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				w := httptest.NewRecorder()
				r := b.request(http.MethodPost)
				if err := e.m.End(r.Context(), w, r); err != nil {
					t.Errorf("concurrent logout: %v", err)
				}
			})
		}
		wg.Wait()
		if diff := cmp.Diff([]string{audit.TypeLogout}, types(e.rec.take())); diff != "" {
			t.Errorf("audit of 10 concurrent logouts (-want +got):\n%s", diff)
		}
		if _, err := e.current(b); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("session alive after logouts: %v", err)
		}
	})
}

func TestListAndRevoke(t *testing.T) {
	each(t, session.Options{IdleTimeout: time.Hour}, func(t *testing.T, e *env) {
		ctx := t.Context()
		alice := e.user("alice@example.com")
		bob := e.user("bob@example.com")
		laptop, phone, tablet := &browser{}, &browser{}, &browser{}
		sl := e.login(laptop, alice)
		e.clock.Advance(time.Second)
		sp := e.login(phone, alice)
		e.clock.Advance(time.Second)
		st := e.login(tablet, alice)
		sb := e.login(&browser{}, bob)
		stale := e.login(&browser{}, alice)
		e.clock.Advance(59 * time.Minute) // stale idles out; the others are used
		for _, b := range []*browser{laptop, phone, tablet} {
			if _, err := e.current(b); err != nil {
				t.Fatal(err)
			}
		}
		e.clock.Advance(2 * time.Minute)
		list, err := e.m.List(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{st.ID, sp.ID, sl.ID}, ids(list)); diff != "" {
			t.Errorf("List: live sessions, newest first (-want +got):\n%s", diff)
		}
		_ = stale
		e.rec.take()

		// Another user's session, or an unknown id: not found, nothing changes.
		for _, id := range []string{sb.ID, store.NewID("ses"), "ses_\x00"} {
			if err := e.m.Revoke(ctx, alice.ID, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Revoke(%q) = %v, want ErrNotFound", id, err)
			}
		}
		if err := e.m.Revoke(ctx, alice.ID, sp.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Revoke(ctx, alice.ID, sp.ID); err != nil {
			t.Errorf("revoking twice: %v", err)
		}
		if _, err := e.current(phone); !errors.Is(err, session.ErrNoSession) {
			t.Error("revoked session still works")
		}
		evs := e.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeSessionRevoked || evs[0].CredentialID != sp.ID {
			t.Errorf("audit = %+v, want one session.revoked", evs)
		}

		n, err := e.m.RevokeOthers(ctx, alice.ID, sl.ID)
		if err != nil || n != 2 { // the tablet and the idle one
			t.Errorf("RevokeOthers = %d, %v; want 2", n, err)
		}
		if _, err := e.current(laptop); err != nil {
			t.Errorf("the kept session was revoked: %v", err)
		}
		if _, err := e.current(tablet); !errors.Is(err, session.ErrNoSession) {
			t.Error("another session survived RevokeOthers")
		}
		if _, err := e.m.RevokeOthers(ctx, alice.ID, ""); err == nil {
			t.Error("RevokeOthers without a session to keep revoked everything")
		}
		e.rec.take()

		if err := e.m.RevokeAll(ctx, alice.ID, "password_changed"); err != nil {
			t.Fatal(err)
		}
		evs = e.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeSessionRevoked || evs[0].Reason != "password_changed" {
			t.Errorf("audit = %+v, want session.revoked with reason password_changed", evs)
		}
		if list, _ := e.m.List(ctx, alice.ID); len(list) != 0 {
			t.Errorf("sessions left after RevokeAll: %v", ids(list))
		}
		if got, err := e.db.GetSession(ctx, sb.ID); err != nil || !got.RevokedAt.IsZero() {
			t.Errorf("bob's session = %+v, %v; want it untouched", got, err)
		}
	})
}

func ids(ss []store.Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func TestClean(t *testing.T) {
	each(t, session.Options{IdleTimeout: time.Hour, Lifetime: 24 * time.Hour}, func(t *testing.T, e *env) {
		ctx := t.Context()
		const retention = 48 * time.Hour
		u := e.user("alice@example.com")
		loggedOut, idle := &browser{}, &browser{}
		sOut := e.login(loggedOut, u)
		sIdle := e.login(idle, u)
		e.logout(loggedOut) // revoked at t0
		e.clock.Advance(2 * time.Hour)
		e.rec.take()

		// Nothing is old enough to delete, but the idle session is ended
		// now (session.expired, revoked at t0+2h).
		n, k, err := e.m.Clean(ctx, retention)
		if err != nil || n != 0 || k != 0 {
			t.Fatalf("Clean = %d, %d, %v; want nothing deleted", n, k, err)
		}
		evs := e.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeSessionExpired || evs[0].CredentialID != sIdle.ID || evs[0].Reason != "idle" {
			t.Errorf("audit = %+v, want session.expired (idle) for the idle session", evs)
		}
		for _, id := range []string{sOut.ID, sIdle.ID} {
			if _, err := e.db.GetSession(ctx, id); err != nil {
				t.Errorf("session %s deleted before the retention period: %v", id, err)
			}
		}

		// t0+49h: past the logout's retention, not the idle end's.
		e.clock.Advance(47 * time.Hour)
		sLive := e.login(&browser{}, u)
		n, _, err = e.m.Clean(ctx, retention)
		if err != nil || n != 1 {
			t.Fatalf("Clean = %d, %v; want the logged-out session deleted", n, err)
		}
		if _, err := e.db.GetSession(ctx, sOut.ID); !errors.Is(err, store.ErrNotFound) {
			t.Error("logged-out session survived its retention")
		}
		if _, err := e.db.GetSession(ctx, sIdle.ID); err != nil {
			t.Errorf("idle session deleted before its retention: %v", err)
		}
		if got, err := e.db.GetSession(ctx, sIdle.ID); err != nil || got.EndReason != store.SessionEndIdle {
			t.Errorf("idle session = %+v, %v; want end reason idle", got, err)
		}
		// t0+51h: past the idle end's retention, but an idle session is
		// kept until its lifetime (t0+24h) plus retention: OAuth grants
		// keep its custom claims until its lifetime.
		e.clock.Advance(2 * time.Hour)
		if n, _, err = e.m.Clean(ctx, retention); err != nil || n != 0 {
			t.Fatalf("Clean = %d, %v; want the idle session kept", n, err)
		}
		// t0+73h: past its lifetime's retention, it goes; the session
		// signed in at t0+49h is ended (idle), not deleted.
		e.clock.Advance(22 * time.Hour)
		n, _, err = e.m.Clean(ctx, retention)
		if err != nil || n != 1 {
			t.Fatalf("Clean = %d, %v; want the idle session deleted", n, err)
		}
		if _, err := e.db.GetSession(ctx, sIdle.ID); !errors.Is(err, store.ErrNotFound) {
			t.Error("idle session survived its lifetime's retention")
		}
		if _, err := e.db.GetSession(ctx, sLive.ID); err != nil {
			t.Errorf("a recent session was deleted: %v", err)
		}
	})
}

func TestCleanConcurrently(t *testing.T) {
	// Sessions signed in at t0 reach their lifetime at t0+49h.
	opts := session.Options{IdleTimeout: time.Hour, Lifetime: 49 * time.Hour}
	each(t, opts, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := e.user("alice@example.com")
		const n = 40
		for i := range n {
			b := &browser{}
			e.login(b, u)
			if i%2 == 0 {
				e.logout(b) // the other half just idle out
			}
		}
		keep := &browser{}
		e.clock.Advance(48 * time.Hour)
		e.login(keep, u)
		e.clock.Advance(time.Hour / 2)
		// Two nodes (two managers on one database) clean at once, twice:
		// first the idle ones are ended, then, past retention, deleted.
		otherOpts := opts
		otherOpts.Now = e.clock.Now
		other := session.New(e.db, e.rec, otherOpts)
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		run := func(retention time.Duration) {
			for _, m := range []*session.Manager{e.m, other, e.m, other} {
				wg.Go(func() {
					s, _, err := m.Clean(ctx, retention)
					if err != nil {
						t.Errorf("concurrent Clean: %v", err)
					}
					mu.Lock()
					total += s
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		e.rec.take()
		run(time.Hour)
		expired := 0
		for _, ev := range e.rec.take() {
			if ev.Type == audit.TypeSessionExpired {
				expired++
			}
		}
		// Each idle session is ended once, by one of the cleaners. Logged-out
		// sessions ended 48.5h ago are deleted at once; the idle ones were
		// just ended and stay until their lifetime (t0+49h) plus the
		// retention period.
		if expired != n/2 {
			t.Errorf("%d session.expired events, want one for each of %d idle sessions", expired, n/2)
		}
		e.clock.Advance(2 * time.Hour)
		run(time.Hour)
		if total != n {
			t.Errorf("deleted %d sessions in total, want %d", total, n)
		}
		if list, _ := e.m.List(ctx, u.ID); len(list) != 0 {
			// keep idled out too (2.5h without use)
			t.Errorf("live sessions left: %d", len(list))
		}
		if _, err := e.current(keep); !errors.Is(err, session.ErrNoSession) {
			t.Error("idle session accepted")
		}
	})
}

func TestStartRefusesDisabledUser(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t), session.Options{})
	u := e.user("alice@example.com")
	u.Disabled = true
	w := httptest.NewRecorder()
	r := (&browser{}).request(http.MethodPost)
	if _, err := e.m.Start(r.Context(), w, r, u); err == nil {
		t.Fatal("Start for a disabled user succeeded")
	}
	if len(w.Result().Cookies()) != 0 {
		t.Error("a refused Start set a cookie")
	}
}
