package conformance

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

func sessionMS(s store.Session) store.Session {
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt, s.RevokedAt = ms(s.CreatedAt), ms(s.LastSeenAt), ms(s.ExpiresAt), ms(s.RevokedAt)
	return s
}

// mustSession creates a live session of userID created at created, ending
// after life.
func mustSession(t *testing.T, s store.Store, userID string, created time.Time, life time.Duration) store.Session {
	t.Helper()
	sess := store.Session{
		ID: store.NewID("ses"), UserID: userID, Hash: randomHash(),
		CreatedAt: created, LastSeenAt: created, ExpiresAt: created.Add(life),
		IP: "192.0.2.1", UserAgent: "Mozilla/5.0 (test)",
	}
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return sessionMS(sess)
}

// mustSessionKey creates the key of a session.
func mustSessionKey(t *testing.T, s store.Store, sess store.Session, created time.Time) store.APIKey {
	t.Helper()
	k := store.APIKey{
		ID: store.NewID("key"), UserID: sess.UserID, Name: "MCP session key", Prefix: "mcpg_session",
		Hash: randomHash(), Kind: store.KeyKindSession, Scopes: []string{"payments:read"},
		CreatedAt: created, ExpiresAt: sess.ExpiresAt, SessionID: sess.ID,
	}
	if err := s.CreateAPIKey(t.Context(), k); err != nil {
		t.Fatalf("CreateAPIKey(session key): %v", err)
	}
	return keyMS(k)
}

func getKey(t *testing.T, s store.Store, id string) store.APIKey {
	t.Helper()
	k, err := s.GetAPIKey(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAPIKey(%s): %v", id, err)
	}
	return k
}

func getSession(t *testing.T, s store.Store, id string) store.Session {
	t.Helper()
	got, err := s.GetSession(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSession(%s): %v", id, err)
	}
	return got
}

func sessionIDs(ss []store.Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func revokedIDs(rs []store.SessionRevocation) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Session.ID)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func testSessionCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustUser(t, s, "alice@example.com")
	bob := mustUser(t, s, "bob@example.com")

	full := store.Session{
		ID: store.NewID("ses"), UserID: alice.ID, Hash: randomHash(),
		CreatedAt: at(time.Minute), LastSeenAt: at(2 * time.Minute), ExpiresAt: at(30 * 24 * time.Hour),
		IP: "2001:db8::1", UserAgent: "Zoë's \"browser\"; --",
	}
	if err := s.CreateSession(ctx, full); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	want := sessionMS(full)
	older := mustSession(t, s, alice.ID, at(0), time.Hour)
	bobs := mustSession(t, s, bob.ID, at(3*time.Minute), time.Hour)

	if d := diff(want, getSession(t, s, full.ID)); d != "" {
		t.Errorf("GetSession mismatch (-want +got):\n%s", d)
	}
	gotS, gotU, err := s.LookupSession(ctx, full.Hash)
	if err != nil {
		t.Fatalf("LookupSession: %v", err)
	}
	if d := diff(want, gotS); d != "" {
		t.Errorf("LookupSession session mismatch (-want +got):\n%s", d)
	}
	if d := diff(alice, gotU); d != "" {
		t.Errorf("LookupSession user mismatch (-want +got):\n%s", d)
	}

	list, err := s.ListSessions(ctx, alice.ID)
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	if d := diff([]store.Session{want, older}, list); d != "" {
		t.Errorf("ListSessions(alice), newest first (-want +got):\n%s", d)
	}
	list, err = s.ListSessions(ctx, bob.ID)
	if err != nil || len(list) != 1 || list[0].ID != bobs.ID {
		t.Errorf("ListSessions(bob) = %v, %v; want bob's one session", sessionIDs(list), err)
	}

	// A revoked session is no longer listed, but can still be looked up
	// (callers say why it is refused).
	if _, err := s.RevokeSession(ctx, older.ID, at(time.Hour), store.SessionEndRevoked); err != nil {
		t.Fatal(err)
	}
	list, _ = s.ListSessions(ctx, alice.ID)
	if d := diff([]string{full.ID}, sessionIDs(list)); d != "" {
		t.Errorf("ListSessions after a revocation (-want +got):\n%s", d)
	}
	if got, _, err := s.LookupSession(ctx, older.Hash); err != nil || got.RevokedAt.IsZero() {
		t.Errorf("LookupSession(revoked) = %+v, %v; want the row with RevokedAt", got, err)
	}

	// Expired sessions are still listed: callers filter with Alive.
	expired := mustSession(t, s, bob.ID, at(-2*time.Hour), time.Hour)
	list, _ = s.ListSessions(ctx, bob.ID)
	if d := diff([]string{bobs.ID, expired.ID}, sessionIDs(list)); d != "" {
		t.Errorf("ListSessions(bob) with an expired session (-want +got):\n%s", d)
	}
}

func testSessionErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	sess := mustSession(t, s, u.ID, at(0), time.Hour)

	same := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: sess.Hash, CreatedAt: at(0), ExpiresAt: at(time.Hour)}
	if err := s.CreateSession(ctx, same); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSession(same hash) = %v, want ErrConflict", err)
	}
	same = store.Session{ID: sess.ID, UserID: u.ID, Hash: randomHash(), CreatedAt: at(0), ExpiresAt: at(time.Hour)}
	if err := s.CreateSession(ctx, same); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSession(same id) = %v, want ErrConflict", err)
	}
	orphan := store.Session{ID: store.NewID("ses"), UserID: store.NewID("usr"), Hash: randomHash(), CreatedAt: at(0), ExpiresAt: at(time.Hour)}
	if err := s.CreateSession(ctx, orphan); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateSession(unknown user) = %v, want ErrNotFound", err)
	}
	plain := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: []byte("cookie secret"), CreatedAt: at(0), ExpiresAt: at(time.Hour)}
	if err := s.CreateSession(ctx, plain); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSession(non-digest hash) = %v, want a validation error", err)
	}
	if _, err := s.GetSession(ctx, plain.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused session was stored: %v", err)
	}

	// Hostile request data is stored, sanitised, rather than failing a login.
	hostile := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), CreatedAt: at(0), ExpiresAt: at(time.Hour),
		IP: "1.2.3.4\x00", UserAgent: "bad\xffagent"}
	if err := s.CreateSession(ctx, hostile); err != nil {
		t.Errorf("CreateSession(hostile user agent) = %v", err)
	}

	for _, id := range []string{store.NewID("ses"), "ses_\x00", "ses_\xff", "' OR '1'='1"} {
		if _, err := s.GetSession(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSession(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := s.RevokeSession(ctx, id, at(0), store.SessionEndRevoked); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeSession(%q) = %v, want ErrNotFound", id, err)
		}
		if err := s.TouchSession(ctx, id, at(0)); err != nil {
			t.Errorf("TouchSession(%q) = %v, want nil (unknown ids are ignored)", id, err)
		}
		if l, err := s.ListSessions(ctx, id); err != nil || len(l) != 0 {
			t.Errorf("ListSessions(%q) = %v, %v; want none", id, l, err)
		}
		if l, err := s.ListSessionKeys(ctx, id); err != nil || len(l) != 0 {
			t.Errorf("ListSessionKeys(%q) = %v, %v; want none", id, l, err)
		}
		if r, err := s.RevokeUserSessions(ctx, id, id, at(0)); err != nil || len(r) != 0 {
			t.Errorf("RevokeUserSessions(%q) = %v, %v; want none", id, r, err)
		}
	}
	for _, h := range [][]byte{randomHash(), sess.Hash[:16], nil} {
		if _, _, err := s.LookupSession(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LookupSession(%x) = %v, want ErrNotFound", h, err)
		}
	}
}

func testTouchSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	sess := mustSession(t, s, u.ID, at(0), time.Hour)
	other := mustSession(t, s, u.ID, at(0), time.Hour)
	if err := s.TouchSession(ctx, sess.ID, at(10*time.Minute)); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	if got := getSession(t, s, sess.ID).LastSeenAt; !got.Equal(ms(at(10 * time.Minute))) {
		t.Errorf("LastSeenAt = %v, want %v", got, ms(at(10*time.Minute)))
	}
	if err := s.TouchSession(ctx, sess.ID, at(5*time.Minute)); err != nil {
		t.Fatalf("TouchSession(older): %v", err)
	}
	if got := getSession(t, s, sess.ID).LastSeenAt; !got.Equal(ms(at(10 * time.Minute))) {
		t.Errorf("an older touch moved LastSeenAt back to %v", got)
	}
	if got := getSession(t, s, other.ID); !got.LastSeenAt.Equal(other.LastSeenAt) {
		t.Errorf("touching one session moved another's LastSeenAt to %v", got.LastSeenAt)
	}
}

// testRevokeSessionWithKeys: a session's keys are revoked in the same
// transaction as the session, with the same time; other sessions' keys and
// manual keys are untouched.
func testRevokeSessionWithKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	sess := mustSession(t, s, u.ID, at(0), time.Hour)
	other := mustSession(t, s, u.ID, at(0), time.Hour)
	key := mustSessionKey(t, s, sess, at(time.Minute))
	otherKey := mustSessionKey(t, s, other, at(time.Minute))
	manual := mustKey(t, s, u.ID, "manual", at(0))

	rv, err := s.RevokeSession(ctx, sess.ID, at(10*time.Minute), store.SessionEndRevoked)
	if err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	wantS := sess
	wantS.RevokedAt = ms(at(10 * time.Minute))
	wantS.EndReason = store.SessionEndRevoked
	wantK := key
	wantK.RevokedAt = ms(at(10 * time.Minute))
	if d := diff(store.SessionRevocation{Session: wantS, Ended: true, Keys: []store.APIKey{wantK}}, rv); d != "" {
		t.Errorf("RevokeSession result (-want +got):\n%s", d)
	}
	if d := diff(wantK, getKey(t, s, key.ID)); d != "" {
		t.Errorf("stored session key (-want +got):\n%s", d)
	}
	if d := diff(otherKey, getKey(t, s, otherKey.ID)); d != "" {
		t.Errorf("another session's key changed (-want +got):\n%s", d)
	}
	if d := diff(manual, getKey(t, s, manual.ID)); d != "" {
		t.Errorf("a manual key changed (-want +got):\n%s", d)
	}
	if keys, err := s.ListSessionKeys(ctx, sess.ID); err != nil || len(keys) != 1 || keys[0].ID != key.ID {
		t.Errorf("ListSessionKeys = %v, %v; want the revoked key", keys, err)
	}

	// Again: the first time stays, nothing is reported as ended.
	rv, err = s.RevokeSession(ctx, sess.ID, at(20*time.Minute), store.SessionEndRevoked)
	if err != nil {
		t.Fatalf("RevokeSession(again): %v", err)
	}
	if rv.Ended || len(rv.Keys) != 0 || !rv.Session.RevokedAt.Equal(ms(at(10*time.Minute))) {
		t.Errorf("second RevokeSession = %+v; want Ended false, no keys, the first time kept", rv)
	}

	// A revoked session takes no new key, and a live one only one.
	late := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Hash: randomHash(), Kind: store.KeyKindSession, CreatedAt: at(0), SessionID: sess.ID}
	if err := s.CreateAPIKey(ctx, late); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateAPIKey for a revoked session = %v, want ErrNotFound", err)
	}
	late.SessionID = other.ID
	if err := s.CreateAPIKey(ctx, late); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second key for a session = %v, want ErrConflict", err)
	}
	bob := mustUser(t, s, "bob@example.com")
	third := mustSession(t, s, u.ID, at(0), time.Hour)
	stolen := store.APIKey{ID: store.NewID("key"), UserID: bob.ID, Hash: randomHash(), Kind: store.KeyKindSession, CreatedAt: at(0), SessionID: third.ID}
	if err := s.CreateAPIKey(ctx, stolen); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key for another user's session = %v, want ErrNotFound", err)
	}
	stolen.SessionID = store.NewID("ses")
	if err := s.CreateAPIKey(ctx, stolen); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key for an unknown session = %v, want ErrNotFound", err)
	}
	if keys, _ := s.ListSessionKeys(ctx, third.ID); len(keys) != 0 {
		t.Errorf("refused keys were stored: %v", keys)
	}
}

// testRevokeSessionConcurrent: concurrent logouts of one session all
// succeed, exactly one of them ends it, and its key is revoked once.
func testRevokeSessionConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	sess := mustSession(t, s, u.ID, at(0), time.Hour)
	key := mustSessionKey(t, s, sess, at(0))
	const n = 10
	var ended, keys atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rv, err := s.RevokeSession(ctx, sess.ID, at(time.Duration(i+1)*time.Second), store.SessionEndRevoked)
			if err != nil {
				t.Errorf("concurrent RevokeSession: %v", err)
				return
			}
			if rv.Ended {
				ended.Add(1)
			}
			keys.Add(int32(len(rv.Keys)))
		})
	}
	wg.Wait()
	if ended.Load() != 1 || keys.Load() != 1 {
		t.Errorf("%d calls ended the session and %d revoked its key; want 1 and 1", ended.Load(), keys.Load())
	}
	got := getSession(t, s, sess.ID)
	k := getKey(t, s, key.ID)
	if got.RevokedAt.IsZero() || !k.RevokedAt.Equal(got.RevokedAt) {
		t.Errorf("session revoked at %v, its key at %v; want both, equal", got.RevokedAt, k.RevokedAt)
	}
}

// testSessionKeyRacesRevocation: keys created while the session is being
// revoked either fail or are revoked with it; no live key of a revoked
// session can remain.
func testSessionKeyRacesRevocation(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	for range 10 {
		sess := mustSession(t, s, u.ID, at(0), time.Hour)
		var wg sync.WaitGroup
		wg.Go(func() {
			k := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Hash: randomHash(), Kind: store.KeyKindSession, CreatedAt: at(0), SessionID: sess.ID}
			if err := s.CreateAPIKey(ctx, k); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("CreateAPIKey racing a revocation: %v", err)
			}
		})
		wg.Go(func() {
			if _, err := s.RevokeSession(ctx, sess.ID, at(time.Minute), store.SessionEndRevoked); err != nil {
				t.Errorf("RevokeSession racing a key: %v", err)
			}
		})
		wg.Wait()
		keys, err := s.ListSessionKeys(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.RevokedAt.IsZero() {
				t.Fatalf("key %s of revoked session %s is live", k.ID, sess.ID)
			}
		}
	}
}

func testRevokeUserSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	bob := mustUser(t, s, "bob@example.com")
	keep := mustSession(t, s, u.ID, at(0), time.Hour)
	a := mustSession(t, s, u.ID, at(time.Second), time.Hour)
	b := mustSession(t, s, u.ID, at(2*time.Second), time.Hour)
	done := mustSession(t, s, u.ID, at(3*time.Second), time.Hour)
	bobs := mustSession(t, s, bob.ID, at(0), time.Hour)
	keepKey := mustSessionKey(t, s, keep, at(0))
	aKey := mustSessionKey(t, s, a, at(0))
	bobKey := mustSessionKey(t, s, bobs, at(0))
	if _, err := s.RevokeSession(ctx, done.ID, at(time.Minute), store.SessionEndRevoked); err != nil {
		t.Fatal(err)
	}

	revs, err := s.RevokeUserSessions(ctx, u.ID, keep.ID, at(time.Hour/2))
	if err != nil {
		t.Fatalf("RevokeUserSessions: %v", err)
	}
	if d := diff(sortedIDs(a.ID, b.ID), revokedIDs(revs)); d != "" {
		t.Errorf("RevokeUserSessions(except keep) revoked (-want +got):\n%s", d)
	}
	for _, rv := range revs {
		if !rv.Ended || !rv.Session.RevokedAt.Equal(ms(at(time.Hour/2))) {
			t.Errorf("revocation %+v: want Ended at %v", rv, ms(at(time.Hour/2)))
		}
		wantKeys := 0
		if rv.Session.ID == a.ID {
			wantKeys = 1
		}
		if len(rv.Keys) != wantKeys {
			t.Errorf("session %s: %d keys revoked, want %d", rv.Session.ID, len(rv.Keys), wantKeys)
		}
	}
	if !getKey(t, s, aKey.ID).RevokedAt.Equal(ms(at(time.Hour / 2))) {
		t.Error("the key of a revoked session is live")
	}
	if !getKey(t, s, keepKey.ID).RevokedAt.IsZero() || !getKey(t, s, bobKey.ID).RevokedAt.IsZero() {
		t.Error("the kept session's key, or another user's key, was revoked")
	}
	if got := getSession(t, s, done.ID).RevokedAt; !got.Equal(ms(at(time.Minute))) {
		t.Errorf("an earlier revocation time changed to %v", got)
	}
	if got := getSession(t, s, bobs.ID); !got.RevokedAt.IsZero() {
		t.Error("another user's session was revoked")
	}

	revs, err = s.RevokeUserSessions(ctx, u.ID, "", at(time.Hour))
	if err != nil {
		t.Fatalf("RevokeUserSessions(all): %v", err)
	}
	if d := diff([]string{keep.ID}, revokedIDs(revs)); d != "" {
		t.Errorf("RevokeUserSessions(all) revoked (-want +got):\n%s", d)
	}
	if list, _ := s.ListSessions(ctx, u.ID); len(list) != 0 {
		t.Errorf("sessions left after revoking all: %v", sessionIDs(list))
	}
	if revs, err := s.RevokeUserSessions(ctx, u.ID, "", at(2*time.Hour)); err != nil || len(revs) != 0 {
		t.Errorf("RevokeUserSessions(nothing left) = %v, %v; want none", revs, err)
	}
}

func testRevokeUserSessionsConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	const sessions = 12
	for i := range sessions {
		sess := mustSession(t, s, u.ID, at(time.Duration(i)*time.Second), time.Hour)
		mustSessionKey(t, s, sess, at(0))
	}
	// Password change on one node, logouts and a cleaner on others.
	var total atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			revs, err := s.RevokeUserSessions(ctx, u.ID, "", at(time.Minute))
			if err != nil {
				t.Errorf("concurrent RevokeUserSessions: %v", err)
			}
			total.Add(int32(len(revs)))
		})
	}
	wg.Go(func() {
		revs, err := s.ExpireSessions(ctx, at(2*time.Hour), 0, 100)
		if err != nil {
			t.Errorf("concurrent ExpireSessions: %v", err)
		}
		total.Add(int32(len(revs)))
	})
	wg.Wait()
	if total.Load() != sessions {
		t.Errorf("%d sessions reported ended, want each of %d once", total.Load(), sessions)
	}
	keys, _ := s.ListAPIKeys(ctx, u.ID)
	for _, k := range keys {
		if k.RevokedAt.IsZero() {
			t.Errorf("key %s survived", k.ID)
		}
	}
}

func testExpireSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	now := at(10 * time.Hour)
	const idle = time.Hour
	mk := func(lastSeen, expires time.Time) store.Session {
		t.Helper()
		sess := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), CreatedAt: at(0), LastSeenAt: lastSeen, ExpiresAt: expires}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		return sessionMS(sess)
	}
	live := mk(now.Add(-idle+time.Second), now.Add(time.Hour))
	idleDead := mk(now.Add(-idle), now.Add(time.Hour))
	pastLifetime := mk(now, now)
	bothDead := mk(at(0), at(time.Hour))
	revoked := mk(at(0), at(time.Hour))
	if _, err := s.RevokeSession(ctx, revoked.ID, at(time.Hour), store.SessionEndRevoked); err != nil {
		t.Fatal(err)
	}
	key := mustSessionKey(t, s, idleDead, at(0))
	liveKey := mustSessionKey(t, s, live, at(0))

	if r, err := s.ExpireSessions(ctx, now, idle, 0); err != nil || len(r) != 0 {
		t.Errorf("ExpireSessions(limit 0) = %v, %v; want nothing", r, err)
	}
	revs, err := s.ExpireSessions(ctx, now, idle, 2)
	if err != nil || len(revs) != 2 {
		t.Fatalf("ExpireSessions(limit 2) = %d, %v; want 2", len(revs), err)
	}
	more, err := s.ExpireSessions(ctx, now, idle, 100)
	if err != nil {
		t.Fatal(err)
	}
	revs = append(revs, more...)
	if d := diff(sortedIDs(idleDead.ID, pastLifetime.ID, bothDead.ID), revokedIDs(revs)); d != "" {
		t.Errorf("ExpireSessions ended (-want +got):\n%s", d)
	}
	for _, rv := range revs {
		if !rv.Ended || !rv.Session.RevokedAt.Equal(ms(now)) {
			t.Errorf("expired session %+v: want Ended at %v", rv.Session, ms(now))
		}
		want := store.SessionEndLifetime // past its lifetime wins over idle
		if rv.Session.ID == idleDead.ID {
			want = store.SessionEndIdle
		}
		if rv.Session.EndReason != want || getSession(t, s, rv.Session.ID).EndReason != want {
			t.Errorf("expired session %s has end reason %q, want %q", rv.Session.ID, rv.Session.EndReason, want)
		}
		if rv.Session.ID == idleDead.ID && (len(rv.Keys) != 1 || rv.Keys[0].ID != key.ID) {
			t.Errorf("expiring session %s revoked keys %v, want its key", rv.Session.ID, rv.Keys)
		}
	}
	if getKey(t, s, key.ID).RevokedAt.IsZero() || !getKey(t, s, liveKey.ID).RevokedAt.IsZero() {
		t.Error("wrong keys revoked by ExpireSessions")
	}
	if !getSession(t, s, live.ID).RevokedAt.IsZero() {
		t.Error("a live session was expired")
	}
	if got := getSession(t, s, revoked.ID); !got.RevokedAt.Equal(ms(at(time.Hour))) || got.EndReason != store.SessionEndRevoked {
		t.Errorf("an already revoked session got a new time or reason: %v, %q", got.RevokedAt, got.EndReason)
	}
	// No idle limit: only the lifetime counts.
	if r, err := s.ExpireSessions(ctx, now.Add(2*time.Hour), 0, 100); err != nil || len(r) != 1 || r[0].Session.ID != live.ID {
		t.Errorf("ExpireSessions(idle 0) = %v, %v; want the session past its lifetime", revokedIDs(r), err)
	}
}

func testExpireSessionsConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	const dead = 25
	for range dead {
		sess := mustSession(t, s, u.ID, at(0), time.Minute)
		mustSessionKey(t, s, sess, at(0))
	}
	live := mustSession(t, s, u.ID, at(0), 48*time.Hour)
	var total atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range dead {
				revs, err := s.ExpireSessions(ctx, at(time.Hour), 0, 3)
				if err != nil {
					t.Errorf("concurrent ExpireSessions: %v", err)
					return
				}
				if len(revs) == 0 {
					return
				}
				total.Add(int32(len(revs)))
			}
		})
	}
	wg.Wait()
	revs, err := s.ExpireSessions(ctx, at(time.Hour), 0, dead)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(total.Load()) + len(revs); got != dead {
		t.Errorf("%d sessions expired in total, want each of %d once", got, dead)
	}
	if !getSession(t, s, live.ID).RevokedAt.IsZero() {
		t.Error("a live session was expired")
	}
}

func testDeleteSessionsBefore(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	cutoff := at(time.Hour)
	mkEnded := func(expires, revoked time.Time, reason string) store.Session {
		t.Helper()
		sess := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), CreatedAt: at(-time.Hour),
			ExpiresAt: expires, RevokedAt: revoked, EndReason: reason}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		return sess
	}
	mk := func(expires, revoked time.Time) store.Session {
		t.Helper()
		return mkEnded(expires, revoked, "")
	}
	none := time.Time{}
	keep := []store.Session{
		mk(at(2*time.Hour), none),
		mk(cutoff, none),
		mk(at(2*time.Hour), cutoff),
		mk(at(3*time.Hour), at(90*time.Minute)),
		// Ended idle long ago, but grants keep its claims until its
		// lifetime ends.
		mkEnded(at(5*time.Hour), at(30*time.Minute), store.SessionEndIdle),
	}
	gone := []store.Session{
		mk(at(10*time.Minute), none),
		mk(at(20*time.Minute), at(5*time.Minute)),
		mk(at(5*time.Hour), at(30*time.Minute)),
		mkEnded(at(40*time.Minute), at(30*time.Minute), store.SessionEndIdle),
	}
	// Session keys go with their session; while it stays, so do they,
	// even long expired (so the session never gets a second key).
	goneKey := mustSessionKey(t, s, store.Session{ID: gone[0].ID, UserID: u.ID, ExpiresAt: at(0)}, at(-time.Hour))
	staleKey := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Hash: randomHash(), Kind: store.KeyKindSession,
		CreatedAt: at(-time.Hour), ExpiresAt: at(0), SessionID: keep[0].ID}
	if err := s.CreateAPIKey(ctx, staleKey); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteAPIKeysBefore(ctx, cutoff, 100); err != nil || n != 0 {
		t.Errorf("DeleteAPIKeysBefore deleted %d session keys (%v); want 0", n, err)
	}

	if n, err := s.DeleteSessionsBefore(ctx, cutoff, 0); err != nil || n != 0 {
		t.Errorf("DeleteSessionsBefore(limit 0) = %d, %v", n, err)
	}
	n, err := s.DeleteSessionsBefore(ctx, cutoff, 2)
	if err != nil || n != 2 {
		t.Fatalf("DeleteSessionsBefore(limit 2) = %d, %v; want 2", n, err)
	}
	n, err = s.DeleteSessionsBefore(ctx, cutoff, 100)
	if err != nil || n != 2 {
		t.Fatalf("DeleteSessionsBefore(rest) = %d, %v; want 2", n, err)
	}
	for _, sess := range gone {
		if _, err := s.GetSession(ctx, sess.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s survived: %v", sess.ID, err)
		}
	}
	for _, sess := range keep {
		if _, err := s.GetSession(ctx, sess.ID); err != nil {
			t.Errorf("session %s deleted too early: %v", sess.ID, err)
		}
	}
	if _, err := s.GetAPIKey(ctx, goneKey.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the key of a deleted session survived: %v", err)
	}
	if _, err := s.GetAPIKey(ctx, staleKey.ID); err != nil {
		t.Errorf("the key of a kept session was deleted: %v", err)
	}
}

func testDeleteSessionsBeforeConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	const old = 30
	for i := range old {
		sess := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), CreatedAt: at(0), ExpiresAt: at(time.Duration(i) * time.Second)}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	live := mustSession(t, s, u.ID, at(0), 48*time.Hour)
	var total atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range old {
				n, err := s.DeleteSessionsBefore(ctx, at(time.Hour), 3)
				if err != nil {
					t.Errorf("concurrent DeleteSessionsBefore: %v", err)
					return
				}
				if n == 0 {
					return
				}
				total.Add(int32(n))
			}
		})
	}
	wg.Wait()
	n, err := s.DeleteSessionsBefore(ctx, at(time.Hour), old)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(total.Load()) + n; got != old {
		t.Errorf("deleted %d sessions in total, want %d", got, old)
	}
	list, _ := s.ListSessions(ctx, u.ID)
	if d := diff([]string{live.ID}, sessionIDs(list)); d != "" {
		t.Errorf("sessions left (-want +got):\n%s", d)
	}
}

// testSessionKeyRoundTrip: a session key reads back with its SessionID.
func testSessionKeyRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	sess := mustSession(t, s, u.ID, at(0), time.Hour)
	k := mustSessionKey(t, s, sess, at(time.Minute))
	got, gotU, err := s.LookupAPIKey(ctx, k.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(k, got); d != "" {
		t.Errorf("LookupAPIKey(session key) (-want +got):\n%s", d)
	}
	if gotU.ID != u.ID {
		t.Errorf("LookupAPIKey user = %s, want %s", gotU.ID, u.ID)
	}
	keys, err := s.ListSessionKeys(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff([]store.APIKey{k}, keys); d != "" {
		t.Errorf("ListSessionKeys (-want +got):\n%s", d)
	}
	all, _ := s.ListAPIKeys(ctx, u.ID)
	if d := diff([]store.APIKey{k}, all); d != "" {
		t.Errorf("ListAPIKeys shows session keys too (-want +got):\n%s", d)
	}
}

// testSessionEndReason: every way a session ends records why, and only
// someone ending it (sign-out, revocation, password change) turns an idle
// end into a revocation; nothing else rewrites the reason.
func testSessionEndReason(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	reason := func(id string) string { t.Helper(); return getSession(t, s, id).EndReason }

	if live := mustSession(t, s, u.ID, at(0), time.Hour); reason(live.ID) != "" {
		t.Errorf("a live session has end reason %q, want none", reason(live.ID))
	}
	if _, err := s.RevokeSession(ctx, mustSession(t, s, u.ID, at(0), time.Hour).ID, at(time.Minute), "bored"); err == nil {
		t.Error("RevokeSession with an unknown end reason succeeded")
	}

	// Ended idle (by the cleaner or by Current); a later idle or lifetime
	// end keeps that, someone revoking it makes it revoked, keeping the time.
	idle := mustSession(t, s, u.ID, at(0), time.Hour)
	if rv, err := s.RevokeSession(ctx, idle.ID, at(time.Minute), store.SessionEndIdle); err != nil || !rv.Ended || rv.Session.EndReason != store.SessionEndIdle {
		t.Fatalf("RevokeSession(idle) = %+v, %v; want ended idle", rv, err)
	}
	if rv, err := s.RevokeSession(ctx, idle.ID, at(2*time.Minute), store.SessionEndLifetime); err != nil || rv.Ended || rv.Session.EndReason != store.SessionEndIdle {
		t.Errorf("RevokeSession(lifetime) of an idle session = %+v, %v; want it left idle", rv, err)
	}
	rv, err := s.RevokeSession(ctx, idle.ID, at(3*time.Minute), store.SessionEndRevoked)
	if err != nil || rv.Ended || rv.Session.EndReason != store.SessionEndRevoked || !rv.Session.RevokedAt.Equal(ms(at(time.Minute))) {
		t.Errorf("RevokeSession(revoked) of an idle session = %+v, %v; want revoked, first time kept, not reported as ended", rv, err)
	}
	if reason(idle.ID) != store.SessionEndRevoked {
		t.Errorf("stored end reason %q, want revoked", reason(idle.ID))
	}

	// Past its lifetime stays so.
	old := mustSession(t, s, u.ID, at(0), time.Minute)
	if _, err := s.RevokeSession(ctx, old.ID, at(time.Minute), store.SessionEndLifetime); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(ctx, old.ID, at(2*time.Minute), store.SessionEndRevoked); err != nil || reason(old.ID) != store.SessionEndLifetime {
		t.Errorf("revoking a session past its lifetime: %v, reason %q; want lifetime kept", err, reason(old.ID))
	}

	// RevokeUserSessions (password change, user disabled, "sign out
	// everywhere else"): live sessions and idle ones become revoked, the
	// kept one and other users' are untouched.
	carol := mustUser(t, s, "carol@example.com")
	keep := mustSession(t, s, carol.ID, at(0), time.Hour)
	liveOther := mustSession(t, s, carol.ID, at(0), time.Hour)
	idleOther := mustSession(t, s, carol.ID, at(0), time.Hour)
	keepIdle := mustSession(t, s, carol.ID, at(0), time.Hour)
	bob := mustUser(t, s, "bob@example.com")
	bobIdle := mustSession(t, s, bob.ID, at(0), time.Hour)
	for _, id := range []string{idleOther.ID, keepIdle.ID, bobIdle.ID} {
		if _, err := s.RevokeSession(ctx, id, at(time.Minute), store.SessionEndIdle); err != nil {
			t.Fatal(err)
		}
	}
	revs, err := s.RevokeUserSessions(ctx, carol.ID, keepIdle.ID, at(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(sortedIDs(keep.ID, liveOther.ID), revokedIDs(revs)); d != "" {
		t.Errorf("RevokeUserSessions reported (-want +got):\n%s", d)
	}
	for _, rv := range revs {
		if rv.Session.EndReason != store.SessionEndRevoked {
			t.Errorf("RevokeUserSessions ended %s with reason %q, want revoked", rv.Session.ID, rv.Session.EndReason)
		}
	}
	for id, want := range map[string]string{
		keep.ID: store.SessionEndRevoked, liveOther.ID: store.SessionEndRevoked, idleOther.ID: store.SessionEndRevoked,
		keepIdle.ID: store.SessionEndIdle, bobIdle.ID: store.SessionEndIdle,
	} {
		if got := reason(id); got != want {
			t.Errorf("after RevokeUserSessions, session %s has end reason %q, want %q", id, got, want)
		}
	}
	if got := getSession(t, s, idleOther.ID).RevokedAt; !got.Equal(ms(at(time.Minute))) {
		t.Errorf("an idle session got a new revocation time %v", got)
	}

	// CreateSession: a revoked session without a reason was ended by
	// someone; a reason without a revocation, or an unknown one, is refused.
	gone := store.Session{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), ExpiresAt: at(time.Hour), RevokedAt: at(0)}
	if err := s.CreateSession(ctx, gone); err != nil || reason(gone.ID) != store.SessionEndRevoked {
		t.Errorf("CreateSession(revoked, no reason) = %v, reason %q; want revoked", err, reason(gone.ID))
	}
	for _, bad := range []store.Session{
		{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), ExpiresAt: at(time.Hour), EndReason: store.SessionEndIdle},
		{ID: store.NewID("ses"), UserID: u.ID, Hash: randomHash(), ExpiresAt: at(time.Hour), RevokedAt: at(0), EndReason: "bored"},
	} {
		if err := s.CreateSession(ctx, bad); err == nil {
			t.Errorf("CreateSession(revoked at %v, reason %q) succeeded", bad.RevokedAt, bad.EndReason)
		}
	}
}
