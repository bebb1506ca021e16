package apikeys

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

var testServerKey = []byte("0123456789abcdef0123456789abcdef")

// forEachSQLBackend runs f on the backends that store sessions (not the
// in-memory fake).
func forEachSQLBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		if b.name != "fake" {
			t.Run(b.name, func(t *testing.T) { f(t, b) })
		}
	}
}

// sessEnv is an env with a session manager on the same store and clock,
// wired like the server wires them.
type sessEnv struct {
	*env
	sessions *session.Manager
}

func newSessEnv(t *testing.T, b backend, opts Options, sopts session.Options) *sessEnv {
	if opts.ServerKey == nil {
		opts.ServerKey = testServerKey
	}
	if opts.SessionIdleTimeout == 0 {
		opts.SessionIdleTimeout = sopts.IdleTimeout
	}
	e := newEnv(t, b, opts)
	sopts.Now = e.clock.Now
	m := session.New(e.raw, e.rec, sopts)
	m.OnKeysRevoked(e.svc.Evict)
	return &sessEnv{env: e, sessions: m}
}

// login starts a session for u and returns it as Current sees it.
func (e *sessEnv) login(u store.User) (*session.Current, *http.Cookie) {
	e.t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/login", nil)
	if _, err := e.sessions.Start(r.Context(), w, r, u); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	c := w.Result().Cookies()[0]
	return e.current(c), c
}

func (e *sessEnv) current(c *http.Cookie) *session.Current {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://mcp.example.com/", nil)
	r.AddCookie(c)
	cur, err := e.sessions.Current(r)
	if err != nil {
		e.t.Fatalf("Current: %v", err)
	}
	return cur
}

func (e *sessEnv) logout(c *http.Cookie) {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/logout", nil)
	r.AddCookie(c)
	if err := e.sessions.End(r.Context(), httptest.NewRecorder(), r); err != nil {
		e.t.Fatalf("End: %v", err)
	}
}

func (e *sessEnv) sessionKey(cur *session.Current, scopes ...string) (string, store.APIKey) {
	e.t.Helper()
	plain, k, err := e.svc.SessionKey(e.ctx, cur.Session, cur.Secret, scopes)
	if err != nil {
		e.t.Fatalf("SessionKey: %v", err)
	}
	return plain, k
}

func TestSessionKeySameKeyEveryCall(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		e := newSessEnv(t, b, Options{}, session.Options{})
		u := e.user()
		cur, _ := e.login(u)
		plain, k := e.sessionKey(cur, "payments:write", "payments:read")
		if err := Parse(plain); err != nil {
			t.Fatalf("session key does not parse: %v", err)
		}
		want := store.APIKey{
			ID: k.ID, UserID: u.ID, Name: SessionKeyName, Prefix: plain[:DisplayPrefixLen], Hash: func() []byte { h := Hash(plain); return h[:] }(),
			Kind: store.KeyKindSession, Scopes: []string{"payments:read", "payments:write"},
			CreatedAt: toMillis(t0), ExpiresAt: toMillis(t0.Add(DefaultSessionKeyMaxLifetime)), SessionID: cur.Session.ID,
		}
		if diff := cmp.Diff(want, k); diff != "" {
			t.Errorf("session key (-want +got):\n%s", diff)
		}
		e.clock.Advance(time.Minute)
		plain2, k2 := e.sessionKey(cur, "other:scope")
		if plain2 != plain || k2.ID != k.ID {
			t.Errorf("second call returned another key: %s vs %s", k2.ID, k.ID)
		}
		created := e.rec.ofType(audit.TypeKeyCreated)
		if len(created) != 1 || created[0].Details["kind"] != store.KeyKindSession || created[0].Details["session_id"] != cur.Session.ID || created[0].CredentialID != k.ID {
			t.Errorf("key.created events = %+v, want one for the session key", created)
		}
		r, err := e.svc.Verify(e.ctx, plain)
		if err != nil {
			t.Fatalf("Verify(session key): %v", err)
		}
		wantView := resultView{KeyID: k.ID, UserID: u.ID, Kind: store.KeyKindSession, Scopes: []string{"payments:read", "payments:write"}, ExpiresAt: k.ExpiresAt}
		if diff := cmp.Diff(wantView, view(r)); diff != "" {
			t.Errorf("Verify result (-want +got):\n%s", diff)
		}
		// The session owner sees it among their keys.
		keys, _ := e.svc.List(e.ctx, u.ID)
		if len(keys) != 1 || keys[0].Kind != store.KeyKindSession {
			t.Errorf("List = %+v, want the session key", keys)
		}
		// Another session of the same user gets another key.
		cur2, _ := e.login(u)
		plain3, k3 := e.sessionKey(cur2)
		if plain3 == plain || k3.ID == k.ID {
			t.Error("two sessions share a key")
		}
	})
}

func TestSessionKeyDerivation(t *testing.T) {
	a := New(newFakeStore(), &recorder{}, Options{ServerKey: testServerKey})
	b := New(newFakeStore(), &recorder{}, Options{ServerKey: []byte("another server key, 32 bytes lng")})
	if a.deriveSessionKey("s1") != a.deriveSessionKey("s1") {
		t.Error("derivation is not deterministic")
	}
	if a.deriveSessionKey("s1") == a.deriveSessionKey("s2") || a.deriveSessionKey("s1") == b.deriveSessionKey("s1") {
		t.Error("different secrets or server keys give the same key")
	}
	if err := Parse(a.deriveSessionKey("s1")); err != nil {
		t.Errorf("derived key is not well-formed: %v", err)
	}
	_, _, err := New(newFakeStore(), &recorder{}, Options{ServerKey: testServerKey[:31]}).SessionKey(context.Background(),
		store.Session{ID: "ses_x", UserID: "usr_x", ExpiresAt: time.Now().Add(time.Hour), LastSeenAt: time.Now()}, "secret", nil)
	if !errors.Is(err, ErrNoServerKey) {
		t.Errorf("SessionKey with a 31-byte server key = %v, want ErrNoServerKey", err)
	}
}

func TestSessionKeyExpiry(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		// The session ends before the cap: the key ends with it.
		e := newSessEnv(t, b, Options{}, session.Options{Lifetime: 48 * time.Hour})
		cur, _ := e.login(e.user())
		_, k := e.sessionKey(cur)
		if !k.ExpiresAt.Equal(cur.Session.ExpiresAt) {
			t.Errorf("ExpiresAt = %v, want the session's end %v", k.ExpiresAt, cur.Session.ExpiresAt)
		}
		// A 30-day session: capped at 7 days, or at the configured cap.
		e = newSessEnv(t, b, Options{SessionKeyMaxLifetime: time.Hour}, session.Options{})
		cur, c := e.login(e.user())
		_, k = e.sessionKey(cur)
		if !k.ExpiresAt.Equal(toMillis(t0.Add(time.Hour))) {
			t.Errorf("ExpiresAt = %v, want now+1h", k.ExpiresAt)
		}
		// Expired while the session lives: not made again.
		e.clock.Advance(2 * time.Hour)
		cur = e.current(c)
		_, _, err := e.svc.SessionKey(e.ctx, cur.Session, cur.Secret, nil)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("SessionKey after its expiry = %v, want ErrExpired", err)
		}
		if keys, _ := e.raw.ListSessionKeys(e.ctx, cur.Session.ID); len(keys) != 1 {
			t.Errorf("the session has %d keys, want 1", len(keys))
		}
	})
}

func TestSessionKeyConcurrentFirstCalls(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		e := newSessEnv(t, b, Options{}, session.Options{})
		cur, _ := e.login(e.user())
		const n = 20
		plains := make([]string, n)
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				p, k, err := e.svc.SessionKey(e.ctx, cur.Session, cur.Secret, []string{"payments:read"})
				if err != nil {
					t.Errorf("concurrent SessionKey: %v", err)
				}
				plains[i], ids[i] = p, k.ID
			})
		}
		wg.Wait()
		for i := range n {
			if plains[i] != plains[0] || ids[i] != ids[0] {
				t.Fatalf("call %d got key %s, call 0 got %s", i, ids[i], ids[0])
			}
		}
		keys, err := e.raw.ListSessionKeys(e.ctx, cur.Session.ID)
		if err != nil || len(keys) != 1 {
			t.Errorf("%d rows for the session after %d concurrent calls (%v), want 1", len(keys), n, err)
		}
		if got := len(e.rec.ofType(audit.TypeKeyCreated)); got != 1 {
			t.Errorf("%d key.created events, want 1", got)
		}
	})
}

func TestSessionKeyEndsWithSession(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		e := newSessEnv(t, b, Options{}, session.Options{IdleTimeout: time.Hour})
		u := e.user()
		cur, c := e.login(u)
		plain, k := e.sessionKey(cur)
		for range 2 { // the second is a cache hit
			if _, err := e.svc.Verify(e.ctx, plain); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}
		// Logout on this node: refused at once, cache or not.
		e.logout(c)
		_, err := e.svc.Verify(e.ctx, plain)
		var ref *RefusedError
		if !errors.As(err, &ref) || !errors.Is(err, ErrRevoked) || ref.KeyID != k.ID {
			t.Fatalf("Verify after logout = %v, want ErrRevoked for %s", err, k.ID)
		}
		revoked := e.rec.ofType(audit.TypeKeyRevoked)
		if len(revoked) != 1 || revoked[0].CredentialID != k.ID || revoked[0].Details["kind"] != store.KeyKindSession {
			t.Errorf("key.revoked events = %+v, want one for the session key", revoked)
		}
		// The old session's key is not made again.
		if _, _, err := e.svc.SessionKey(e.ctx, cur.Session, cur.Secret, nil); !errors.Is(err, ErrRevoked) {
			t.Errorf("SessionKey after logout = %v, want ErrRevoked", err)
		}

		// A session that idles out: its key is refused once the cache entry
		// has lapsed, with the reason in the refusal.
		cur, _ = e.login(u)
		plain, _ = e.sessionKey(cur)
		if _, err := e.svc.Verify(e.ctx, plain); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour)
		_, err = e.svc.Verify(e.ctx, plain)
		if !errors.As(err, &ref) || !errors.Is(err, ErrRevoked) || ref.Detail != "session expired" {
			t.Errorf("Verify after the session idled out = %v (%+v), want ErrRevoked, session expired", err, ref)
		}

		// Revoked by its owner: refused, and not made again.
		e.clock.Advance(time.Minute)
		cur, _ = e.login(u)
		plain, k = e.sessionKey(cur)
		if _, err := e.svc.Revoke(e.ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Verify(e.ctx, plain); !errors.Is(err, ErrRevoked) {
			t.Errorf("Verify of a revoked session key = %v", err)
		}
		if _, _, err := e.svc.SessionKey(e.ctx, cur.Session, cur.Secret, nil); !errors.Is(err, ErrRevoked) {
			t.Errorf("SessionKey after the key was revoked = %v, want ErrRevoked", err)
		}
	})
}

func TestSessionKeyRevokedOnAnotherNode(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		e := newSessEnv(t, b, Options{CacheTTL: 5 * time.Second}, session.Options{})
		cur, c := e.login(e.user())
		plain, _ := e.sessionKey(cur)
		if _, err := e.svc.Verify(e.ctx, plain); err != nil {
			t.Fatal(err)
		}
		// Another node's manager (not wired to this Service's cache).
		other := session.New(e.raw, e.rec, session.Options{Now: e.clock.Now})
		r := httptest.NewRequest(http.MethodPost, "/logout", nil)
		r.AddCookie(c)
		if err := other.End(e.ctx, httptest.NewRecorder(), r); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(5 * time.Second)
		if _, err := e.svc.Verify(e.ctx, plain); !errors.Is(err, ErrRevoked) {
			t.Errorf("Verify %v after another node's logout = %v, want ErrRevoked", 5*time.Second, err)
		}
	})
}

func TestSessionKeyCachedVerifyAllocatesNothing(t *testing.T) {
	e := newSessEnv(t, backends[1], Options{}, session.Options{})
	cur, _ := e.login(e.user())
	plain, _ := e.sessionKey(cur)
	ctx := context.Background()
	if _, err := e.svc.Verify(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := e.svc.Verify(ctx, plain); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("cached Verify of a session key: %v allocations per call, want 0", n)
	}
}

// TestKeysNeverAccumulate: 100 logins of one user from 10 browsers, each
// asking for its MCP credential twice, leave one live session key per live
// session; after logging out and a clean past the retention period,
// nothing of them remains.
func TestKeysNeverAccumulate(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		e := newSessEnv(t, b, Options{}, session.Options{})
		u := e.user()
		const browsers, loginsEach = 10, 10
		cookies := make([]*http.Cookie, browsers)
		for range loginsEach {
			for i := range browsers {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/login", nil)
				if cookies[i] != nil {
					r.AddCookie(cookies[i]) // the browser logs in again
				}
				if _, err := e.sessions.Start(r.Context(), w, r, u); err != nil {
					t.Fatal(err)
				}
				cookies[i] = w.Result().Cookies()[0]
				cur := e.current(cookies[i])
				e.sessionKey(cur, "payments:read")
				e.sessionKey(cur, "payments:read")
				e.clock.Advance(time.Second)
			}
		}
		live, err := e.sessions.List(e.ctx, u.ID)
		if err != nil || len(live) != browsers {
			t.Fatalf("%d live sessions (%v), want %d", len(live), err, browsers)
		}
		keys, _ := e.svc.List(e.ctx, u.ID)
		perSession := map[string]int{}
		for _, k := range keys {
			if k.Active(e.clock.Now()) {
				perSession[k.SessionID]++
			}
		}
		if len(perSession) != browsers {
			t.Errorf("%d sessions have a live key, want %d", len(perSession), browsers)
		}
		for _, s := range live {
			if perSession[s.ID] != 1 {
				t.Errorf("live session %s has %d live keys, want 1", s.ID, perSession[s.ID])
			}
		}
		if len(keys) != browsers*loginsEach {
			t.Errorf("%d key rows, want one per login (%d)", len(keys), browsers*loginsEach)
		}

		for _, c := range cookies {
			e.logout(c)
		}
		const retention = 30 * 24 * time.Hour
		if n, _, err := e.sessions.Clean(e.ctx, retention); err != nil || n != 0 {
			t.Errorf("Clean within retention deleted %d sessions (%v)", n, err)
		}
		e.clock.Advance(retention + time.Minute)
		n, _, err := e.sessions.Clean(e.ctx, retention)
		if err != nil || n != browsers*loginsEach {
			t.Errorf("Clean past retention deleted %d sessions (%v), want %d", n, err, browsers*loginsEach)
		}
		if keys, _ := e.svc.List(e.ctx, u.ID); len(keys) != 0 {
			t.Errorf("%d keys remain", len(keys))
		}
		if ss, _ := e.raw.ListSessions(e.ctx, u.ID); len(ss) != 0 {
			t.Errorf("%d sessions remain", len(ss))
		}
	})
}

// A node with another server key cannot derive a session's existing key:
// it says so (ErrSessionKeyChanged) instead of a storage conflict.
func TestSessionKeyUnderAnotherServerKey(t *testing.T) {
	forEachSQLBackend(t, func(t *testing.T, b backend) {
		e := newSessEnv(t, b, Options{}, session.Options{})
		cur, _ := e.login(e.user())
		e.sessionKey(cur, "payments:read")
		other := New(e.raw, e.rec, Options{ServerKey: []byte("another server key, 32 bytes lng"), Now: e.clock.Now})
		if _, _, err := other.SessionKey(e.ctx, cur.Session, cur.Secret, []string{"payments:read"}); !errors.Is(err, ErrSessionKeyChanged) {
			t.Fatalf("SessionKey under another server key: %v, want ErrSessionKeyChanged", err)
		}
	})
}
