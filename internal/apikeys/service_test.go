package apikeys

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// resultView is what a caller sees of a Result.
type resultView struct {
	KeyID, UserID, Kind string
	Scopes              []string
	ExpiresAt           time.Time
}

func view(r Result) resultView {
	return resultView{KeyID: r.KeyID(), UserID: r.UserID(), Kind: r.Kind(), Scopes: r.Scopes(), ExpiresAt: r.ExpiresAt()}
}

var allRefusals = []error{ErrMalformed, ErrUnknown, ErrRevoked, ErrExpired, ErrDisabledUser}

// refusal names which sentinel err matches, for readable failures.
func refusal(err error) string {
	for _, s := range allRefusals {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return fmt.Sprint(err)
}

func TestIssueAndVerify(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, Options{})
		u := e.user()
		exp := t0.Add(24 * time.Hour)
		plain, k := e.issue(IssueRequest{
			UserID:    u.ID,
			Name:      "  laptop  ",
			Scopes:    []string{"tools:write", "payments:read", "tools:write"},
			ExpiresAt: exp,
			Kind:      store.KeyKindManual,
		})

		if err := Parse(plain); err != nil {
			t.Fatalf("issued key does not parse: %v", err)
		}
		wantKey := store.APIKey{
			ID:        k.ID,
			UserID:    u.ID,
			Name:      "laptop",
			Prefix:    plain[:12],
			Hash:      func() []byte { h := sha256.Sum256([]byte(plain)); return h[:] }(),
			Kind:      store.KeyKindManual,
			Scopes:    []string{"payments:read", "tools:write"},
			CreatedAt: time.UnixMilli(t0.UnixMilli()),
			ExpiresAt: time.UnixMilli(exp.UnixMilli()),
		}
		if diff := cmp.Diff(wantKey, k); diff != "" {
			t.Errorf("Issue returned key (-want +got):\n%s", diff)
		}
		if p, _, ok := store.ParseID(k.ID); !ok || p != "key" {
			t.Errorf("key id %q is not a store.NewID(\"key\") id", k.ID)
		}
		stored, err := e.svc.Get(e.ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(k, stored); diff != "" {
			t.Errorf("stored key differs from returned key (-returned +stored):\n%s", diff)
		}

		r, err := e.svc.Verify(e.ctx, plain)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		want := resultView{KeyID: k.ID, UserID: u.ID, Kind: store.KeyKindManual, Scopes: []string{"payments:read", "tools:write"}, ExpiresAt: k.ExpiresAt}
		if diff := cmp.Diff(want, view(r)); diff != "" {
			t.Errorf("Verify result (-want +got):\n%s", diff)
		}
		if !r.HasScope("payments:read") || r.HasScope("payments:write") {
			t.Errorf("HasScope: payments:read=%v payments:write=%v, want true false", r.HasScope("payments:read"), r.HasScope("payments:write"))
		}
		// The cached answer is the same answer.
		r2, err := e.svc.Verify(e.ctx, plain)
		if err != nil {
			t.Fatalf("second Verify: %v", err)
		}
		if diff := cmp.Diff(want, view(r2)); diff != "" {
			t.Errorf("cached Verify result (-want +got):\n%s", diff)
		}

		keys, err := e.svc.List(e.ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].ID != k.ID {
			t.Errorf("List = %v, want the one key", keys)
		}
	})
}

func TestVerifyRefusals(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the key to present; it may change the store and clock.
		setup   func(e *env) string
		wantErr error
	}{
		{
			name:    "malformed",
			setup:   func(e *env) string { p, _ := e.key(); return p[:53] + flip(p[53:]) },
			wantErr: ErrMalformed,
		},
		{
			name:    "unknown",
			setup:   func(e *env) string { e.key(); return Generate() },
			wantErr: ErrUnknown,
		},
		{
			name: "revoked",
			setup: func(e *env) string {
				p, k := e.key()
				if _, err := e.svc.Revoke(e.ctx, k.ID); err != nil {
					e.t.Fatal(err)
				}
				return p
			},
			wantErr: ErrRevoked,
		},
		{
			name: "expired, never verified",
			setup: func(e *env) string {
				p, _ := e.issue(IssueRequest{UserID: e.user().ID, Name: "n", ExpiresAt: t0.Add(time.Hour)})
				e.clock.Advance(time.Hour)
				return p
			},
			wantErr: ErrExpired,
		},
		{
			name: "expired while cached",
			setup: func(e *env) string {
				p, _ := e.issue(IssueRequest{UserID: e.user().ID, Name: "n", ExpiresAt: t0.Add(2 * time.Second)})
				if _, err := e.svc.Verify(e.ctx, p); err != nil {
					e.t.Fatalf("Verify before expiry: %v", err)
				}
				e.clock.Advance(2 * time.Second) // still within the 5s cache TTL
				return p
			},
			wantErr: ErrExpired,
		},
		{
			name: "owner disabled",
			setup: func(e *env) string {
				u := e.user()
				p, _ := e.issue(IssueRequest{UserID: u.ID, Name: "n"})
				if _, err := e.svc.Verify(e.ctx, p); err != nil {
					e.t.Fatalf("Verify before disable: %v", err)
				}
				e.setDisabled(u.ID, true)
				e.svc.InvalidateUser(u.ID)
				return p
			},
			wantErr: ErrDisabledUser,
		},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, b, Options{})
				key := tc.setup(e)
				r, err := e.svc.Verify(e.ctx, key)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Verify = %v, want %v", refusal(err), tc.wantErr)
				}
				if r != (Result{}) || r.KeyID() != "" || r.UserID() != "" {
					t.Errorf("refused Verify returned a non-zero Result %+v", view(r))
				}
			})
		}
	})
}

func TestVerifyMalformedReadsNoDatabase(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	e.key()
	for _, tc := range malformedKeys() {
		if _, err := e.svc.Verify(e.ctx, tc.key); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, want ErrMalformed", tc.name, err)
		}
	}
	if n := e.lookups(); n != 0 {
		t.Errorf("malformed keys caused %d database lookups, want 0", n)
	}
}

func TestVerifyStorageFailureFailsClosed(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	plain, _ := e.key()
	boom := errors.New("database is on fire")
	e.spy.setLookupErr(boom)
	_, err := e.svc.Verify(e.ctx, plain)
	if err == nil || !errors.Is(err, boom) {
		t.Fatalf("Verify with a failing store = %v, want an error wrapping the storage error", err)
	}
	for _, s := range allRefusals {
		if errors.Is(err, s) {
			t.Errorf("storage failure reported as %v; callers could not tell it from a bad key", s)
		}
	}
	if strings.Contains(err.Error(), plain) {
		t.Errorf("error %q contains the key", err)
	}
	// The failure is not remembered: once the store answers, the key works.
	e.spy.setLookupErr(nil)
	if _, err := e.svc.Verify(e.ctx, plain); err != nil {
		t.Errorf("Verify after the store recovered = %v", err)
	}
}

// TestVerifyInconsistentStoreRow: a store that answers a lookup with a row
// for another hash (a storage bug) must not authenticate anyone.
func TestVerifyInconsistentStoreRow(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	plain, _ := e.key()
	other, _ := e.key()
	e.svc = New(&wrongRowStore{Store: e.raw, hash: Hash(other)}, e.rec, Options{Now: e.clock.Now, Logger: e.svc.log})
	if r, err := e.svc.Verify(e.ctx, plain); err == nil {
		t.Fatalf("Verify accepted a key on a row with another hash: %+v", view(r))
	}
}

type wrongRowStore struct {
	store.Store
	hash [32]byte
}

func (s *wrongRowStore) LookupAPIKey(ctx context.Context, _ []byte) (store.APIKey, store.User, error) {
	return s.Store.LookupAPIKey(ctx, s.hash[:])
}

func TestCacheServesRepeatedVerifications(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, Options{})
		plain, _ := e.key("a")
		for range 10 {
			if _, err := e.svc.Verify(e.ctx, plain); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.lookups(); n != 1 {
			t.Errorf("10 verifications made %d database lookups, want 1", n)
		}
		e.clock.Advance(DefaultCacheTTL)
		if _, err := e.svc.Verify(e.ctx, plain); err != nil {
			t.Fatal(err)
		}
		if n := e.lookups(); n != 2 {
			t.Errorf("after the TTL: %d lookups, want 2 (the entry must be re-read)", n)
		}
	})
}

func TestRefusalsAreNotCached(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	unknown := Generate()
	revoked, k := e.key()
	if _, err := e.svc.Revoke(e.ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{unknown, revoked} {
		before := e.lookups()
		for range 3 {
			_, _ = e.svc.Verify(e.ctx, key)
		}
		if n := e.lookups() - before; n != 3 {
			t.Errorf("3 refused verifications made %d lookups, want 3 (refusals must not be cached)", n)
		}
	}
	if n := e.svc.cache.len(); n != 0 {
		t.Errorf("cache holds %d entries after only refusals, want 0", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	for _, opts := range []Options{{CacheTTL: -1}, {CacheSize: -1}} {
		e := newEnv(t, backends[0], opts)
		plain, _ := e.key()
		for range 3 {
			if _, err := e.svc.Verify(e.ctx, plain); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.lookups(); n != 3 {
			t.Errorf("%+v: 3 verifications made %d lookups, want 3", opts, n)
		}
	}
}

// TestChangesByAnotherNode: a revocation or disable written to the shared
// database by another node is noticed within CacheTTL, and not before the
// cached entry expires.
func TestChangesByAnotherNode(t *testing.T) {
	tests := []struct {
		name    string
		change  func(e *env, k store.APIKey)
		wantErr error
	}{
		{"revoked", func(e *env, k store.APIKey) { e.revokeInStore(k.ID) }, ErrRevoked},
		{"owner disabled", func(e *env, k store.APIKey) { e.setDisabled(k.UserID, true) }, ErrDisabledUser},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				const ttl = 3 * time.Second
				e := newEnv(t, b, Options{CacheTTL: ttl})
				plain, k := e.key()
				if _, err := e.svc.Verify(e.ctx, plain); err != nil {
					t.Fatal(err)
				}
				tc.change(e, k)

				e.clock.Advance(ttl - time.Millisecond)
				if _, err := e.svc.Verify(e.ctx, plain); err != nil {
					t.Fatalf("within the TTL the cached verification should stand, got %v", refusal(err))
				}
				e.clock.Advance(time.Millisecond)
				if _, err := e.svc.Verify(e.ctx, plain); !errors.Is(err, tc.wantErr) {
					t.Fatalf("after the TTL: Verify = %v, want %v", refusal(err), tc.wantErr)
				}
			})
		}
	})
}

func TestRevoke(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, Options{})
		plain, k := e.key()
		if _, err := e.svc.Verify(e.ctx, plain); err != nil {
			t.Fatal(err)
		}
		admin := store.NewID("usr")
		ctx := principal.With(e.ctx, &principal.Principal{UserID: admin})

		got, err := e.svc.Revoke(ctx, k.ID)
		if err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		wantAt := time.UnixMilli(t0.UnixMilli())
		if !got.RevokedAt.Equal(wantAt) {
			t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, wantAt)
		}
		// Refused at once, although the key was cached.
		if _, err := e.svc.Verify(e.ctx, plain); !errors.Is(err, ErrRevoked) {
			t.Fatalf("Verify right after Revoke = %v, want ErrRevoked", refusal(err))
		}

		// Idempotent: no error, the first time stays, no second event.
		e.clock.Advance(time.Minute)
		again, err := e.svc.Revoke(ctx, k.ID)
		if err != nil {
			t.Fatalf("second Revoke: %v", err)
		}
		if !again.RevokedAt.Equal(wantAt) {
			t.Errorf("second Revoke moved RevokedAt to %v, want %v", again.RevokedAt, wantAt)
		}
		events := e.rec.ofType(audit.TypeKeyRevoked)
		want := []audit.Event{{
			Time:         t0,
			Type:         audit.TypeKeyRevoked,
			Outcome:      store.OutcomeAllow,
			UserID:       k.UserID,
			CredentialID: k.ID,
			Details:      map[string]any{"name": k.Name, "prefix": k.Prefix, "kind": k.Kind, "actor": admin},
		}}
		if diff := cmp.Diff(want, events); diff != "" {
			t.Errorf("key.revoked events (-want +got):\n%s", diff)
		}

		if _, err := e.svc.Revoke(e.ctx, store.NewID("key")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Revoke(unknown id) = %v, want store.ErrNotFound", err)
		}
	})
}

// TestRevokeKeyRevokedElsewhere: revoking here a key another node already
// revoked keeps the original time, records nothing new, and stops this
// node's cache from accepting it for the rest of the TTL.
func TestRevokeKeyRevokedElsewhere(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, Options{})
		plain, k := e.key()
		if _, err := e.svc.Verify(e.ctx, plain); err != nil {
			t.Fatal(err)
		}
		e.revokeInStore(k.ID)
		first := time.UnixMilli(t0.UnixMilli())
		e.clock.Advance(time.Second)

		got, err := e.svc.Revoke(e.ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.RevokedAt.Equal(first) {
			t.Errorf("RevokedAt = %v, want the original %v", got.RevokedAt, first)
		}
		if n := len(e.rec.ofType(audit.TypeKeyRevoked)); n != 0 {
			t.Errorf("%d key.revoked events, want 0 (the other node recorded it)", n)
		}
		if _, err := e.svc.Verify(e.ctx, plain); !errors.Is(err, ErrRevoked) {
			t.Errorf("Verify = %v, want ErrRevoked at once", refusal(err))
		}
	})
}

// TestRevokeRacingVerify: a verification that read the row before the
// revocation must not put the key back into the cache after Revoke evicted
// it.
func TestRevokeRacingVerify(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	plain, k := e.key()

	rowRead, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.spy.mu.Lock()
	e.spy.beforeLookupReturn = func() {
		once.Do(func() {
			close(rowRead)
			<-release
		})
	}
	e.spy.mu.Unlock()

	done := make(chan error)
	go func() {
		_, err := e.svc.Verify(e.ctx, plain)
		done <- err
	}()
	<-rowRead // the row, still active, is in hand
	if _, err := e.svc.Revoke(e.ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the racing Verify read an active row and should succeed, got %v", err)
	}
	if _, err := e.svc.Verify(e.ctx, plain); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Verify after Revoke = %v, want ErrRevoked (a stale row was cached)", refusal(err))
	}
}

func TestInvalidateUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, Options{})
		alice, bob := e.user(), e.user()
		a1, _ := e.issue(IssueRequest{UserID: alice.ID, Name: "a1"})
		a2, _ := e.issue(IssueRequest{UserID: alice.ID, Name: "a2"})
		b1, _ := e.issue(IssueRequest{UserID: bob.ID, Name: "b1"})
		for _, p := range []string{a1, a2, b1} {
			if _, err := e.svc.Verify(e.ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		// Both are disabled in the database; only Alice's keys are evicted.
		e.setDisabled(alice.ID, true)
		e.setDisabled(bob.ID, true)
		e.svc.InvalidateUser(alice.ID)

		for _, p := range []string{a1, a2} {
			if _, err := e.svc.Verify(e.ctx, p); !errors.Is(err, ErrDisabledUser) {
				t.Errorf("Alice's key: Verify = %v, want ErrDisabledUser", refusal(err))
			}
		}
		if _, err := e.svc.Verify(e.ctx, b1); err != nil {
			t.Errorf("Bob's key was evicted too: Verify = %v, want the cached success", refusal(err))
		}
		e.svc.InvalidateUser("not an id") // must not panic
	})
}

func TestCacheIsBounded(t *testing.T) {
	e := newEnv(t, backends[0], Options{CacheSize: 32})
	u := e.user()
	var keys []string
	for i := range 200 {
		p, _ := e.issue(IssueRequest{UserID: u.ID, Name: fmt.Sprint("k", i)})
		keys = append(keys, p)
	}
	for range 2 {
		for _, p := range keys {
			if _, err := e.svc.Verify(e.ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := e.svc.cache.len(); n > 32 || n == 0 {
		t.Errorf("cache holds %d entries, want 1..32", n)
	}
}

func TestTouchBatching(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		const interval = time.Minute
		e := newEnv(t, b, Options{TouchInterval: interval})
		p1, k1 := e.key()
		p2, k2 := e.key()
		p3, k3 := e.key() // never used
		_ = p3
		verify := func(p string) {
			t.Helper()
			if _, err := e.svc.Verify(e.ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		lastUsed := func(id string) time.Time {
			t.Helper()
			k, err := e.svc.Get(e.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return k.LastUsedAt
		}
		msAt := func(d time.Duration) time.Time { return time.UnixMilli(t0.Add(d).UnixMilli()) }

		// Many uses within one interval: one write per key.
		start := e.clock.Now()
		for range 100 {
			verify(p1)
			e.clock.Advance(100 * time.Millisecond) // 10s in all, across cache refills
		}
		verify(p2)
		if got := lastUsed(k1.ID); !got.IsZero() {
			t.Fatalf("last-used written before Flush: %v (Verify must not write)", got)
		}
		if err := e.svc.Flush(e.ctx); err != nil {
			t.Fatal(err)
		}
		batches := e.spy.touchBatches()
		if len(batches) != 1 || len(batches[0]) != 2 {
			t.Fatalf("Flush wrote %v, want one batch with the two used keys", batches)
		}
		if got, want := lastUsed(k1.ID), time.UnixMilli(start.UnixMilli()); !got.Equal(want) {
			t.Errorf("key 1 last used %v, want %v", got, want)
		}
		if got, want := lastUsed(k2.ID), msAt(10*time.Second); !got.Equal(want) {
			t.Errorf("key 2 last used %v, want %v", got, want)
		}
		if got := lastUsed(k3.ID); !got.IsZero() {
			t.Errorf("unused key has last-used %v", got)
		}

		// Used again within the interval: nothing new to write.
		verify(p1)
		if err := e.svc.Flush(e.ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(e.spy.touchBatches()); n != 1 {
			t.Errorf("%d batches after a use within the interval, want still 1", n)
		}

		// After the interval the next use is noted again; Close writes it.
		e.clock.Advance(interval)
		verify(p1)
		verify(p1)
		if err := e.svc.Close(e.ctx); err != nil {
			t.Fatal(err)
		}
		batches = e.spy.touchBatches()
		if len(batches) != 2 || len(batches[1]) != 1 {
			t.Fatalf("batches %v, want a second batch with key 1 only", batches)
		}
		if got, want := lastUsed(k1.ID), msAt(10*time.Second+interval); !got.Equal(want) {
			t.Errorf("key 1 last used %v after Close, want %v", got, want)
		}
	})
}

func TestTouchRetriedAfterFailure(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	p, k := e.key()
	if _, err := e.svc.Verify(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	e.spy.setTouchErr(errors.New("disk full"))
	if err := e.svc.Flush(e.ctx); err == nil {
		t.Fatal("Flush hid a storage failure")
	}
	e.spy.setTouchErr(nil)
	if err := e.svc.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Get(e.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(t0.UnixMilli()); !got.LastUsedAt.Equal(want) {
		t.Errorf("LastUsedAt = %v after a retried flush, want %v", got.LastUsedAt, want)
	}
}

func TestRunFlushesPeriodically(t *testing.T) {
	e := newEnv(t, backends[0], Options{TouchInterval: 10 * time.Millisecond})
	e.svc.now = time.Now // Run's ticker is real time
	p, k := e.key()
	if _, err := e.svc.Verify(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Polls; the generous bound only turns a hang into a failure.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got, err := e.svc.Get(e.ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.LastUsedAt.IsZero() {
			return
		}
	}
	t.Fatal("Run never wrote the last-used time")
}

func TestIssueValidation(t *testing.T) {
	longScope := strings.Repeat("s", 65)
	many := make([]string, 33)
	for i := range many {
		many[i] = fmt.Sprint("scope", i)
	}
	// owner stands for the id of an existing, enabled user.
	const owner = "<owner>"
	tests := []struct {
		name      string
		req       IssueRequest
		wantField string
	}{
		{"no user", IssueRequest{Name: "n"}, "user_id"},
		{"unknown user", IssueRequest{UserID: store.NewID("usr"), Name: "n"}, "user_id"},
		{"empty name", IssueRequest{UserID: owner}, "name"},
		{"blank name", IssueRequest{UserID: owner, Name: " \t\n "}, "name"},
		{"name of 101 characters", IssueRequest{UserID: owner, Name: strings.Repeat("é", 101)}, "name"},
		{"newline in name", IssueRequest{UserID: owner, Name: "a\nb"}, "name"},
		{"NUL in name", IssueRequest{UserID: owner, Name: "a\x00b"}, "name"},
		{"escape sequence in name", IssueRequest{UserID: owner, Name: "a\x1b[31mred"}, "name"},
		{"C1 control in name", IssueRequest{UserID: owner, Name: "a\u0085b"}, "name"},
		{"bidi override in name", IssueRequest{UserID: owner, Name: "key\u202egpj.exe"}, "name"},
		{"invalid UTF-8 name", IssueRequest{UserID: owner, Name: "a\xffb"}, "name"},
		{"empty scope", IssueRequest{UserID: owner, Name: "n", Scopes: []string{""}}, "scopes"},
		{"space in scope", IssueRequest{UserID: owner, Name: "n", Scopes: []string{"a b"}}, "scopes"},
		{"quote in scope", IssueRequest{UserID: owner, Name: "n", Scopes: []string{`a"b`}}, "scopes"},
		{"backslash in scope", IssueRequest{UserID: owner, Name: "n", Scopes: []string{`a\b`}}, "scopes"},
		{"non-ASCII scope", IssueRequest{UserID: owner, Name: "n", Scopes: []string{"café"}}, "scopes"},
		{"DEL in scope", IssueRequest{UserID: owner, Name: "n", Scopes: []string{"a\x7f"}}, "scopes"},
		{"scope of 65 characters", IssueRequest{UserID: owner, Name: "n", Scopes: []string{longScope}}, "scopes"},
		{"33 scopes", IssueRequest{UserID: owner, Name: "n", Scopes: many}, "scopes"},
		{"expired", IssueRequest{UserID: owner, Name: "n", ExpiresAt: t0.Add(-time.Second)}, "expires_at"},
		{"expires now", IssueRequest{UserID: owner, Name: "n", ExpiresAt: t0}, "expires_at"},
		{"expires within the current millisecond", IssueRequest{UserID: owner, Name: "n", ExpiresAt: t0.Add(time.Microsecond)}, "expires_at"},
		{"expires in year 10000", IssueRequest{UserID: owner, Name: "n", ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "expires_at"},
		{"unknown kind", IssueRequest{UserID: owner, Name: "n", Kind: "admin"}, "kind"},
		{"session kind (only SessionKey makes those)", IssueRequest{UserID: owner, Name: "n", Kind: store.KeyKindSession}, "kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, backends[0], Options{})
			u := e.user()
			req := tc.req
			if req.UserID == owner {
				req.UserID = u.ID
			}
			plain, k, err := e.svc.Issue(e.ctx, req)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Issue = %v, want a *ValidationError", err)
			}
			if ve.Field != tc.wantField || ve.Message == "" {
				t.Errorf("ValidationError = %+v, want field %q with a message", ve, tc.wantField)
			}
			if plain != "" || k.ID != "" {
				t.Errorf("Issue returned a key (%q, %q) with an error", plain, k.ID)
			}
			if keys, _ := e.svc.List(e.ctx, ""); len(keys) != 0 {
				t.Errorf("a rejected request stored %d keys", len(keys))
			}
			if n := len(e.rec.all()); n != 0 {
				t.Errorf("a rejected request recorded %d audit events", n)
			}
		})
	}
}

func TestIssueAccepts(t *testing.T) {
	max := make([]string, 0, 40)
	for i := range 32 {
		max = append(max, fmt.Sprintf("s%02d", i))
	}
	max = append(max, max[:8]...) // 40 entries, 32 distinct
	tests := []struct {
		name       string
		req        IssueRequest
		wantName   string
		wantScopes []string
		wantKind   string
	}{
		{"defaults", IssueRequest{Name: "ci"}, "ci", []string{}, store.KeyKindManual},
		{"100 multi-byte characters", IssueRequest{Name: strings.Repeat("日", 100)}, strings.Repeat("日", 100), []string{}, store.KeyKindManual},
		{"emoji with joiners", IssueRequest{Name: "👩‍💻 dev"}, "👩‍💻 dev", []string{}, store.KeyKindManual},
		{"trimmed", IssueRequest{Name: "\t my key \n"}, "my key", []string{}, store.KeyKindManual},
		{"32 distinct scopes among duplicates", IssueRequest{Name: "n", Scopes: max}, "n", max[:32], store.KeyKindManual},
		{"every scope-token character", IssueRequest{Name: "n", Scopes: []string{"!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"}}, "n", []string{"!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"}, store.KeyKindManual},
		{"manual kind", IssueRequest{Name: "n", Kind: store.KeyKindManual}, "n", []string{}, store.KeyKindManual},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, backends[0], Options{})
			tc.req.UserID = e.user().ID
			_, k, err := e.svc.Issue(e.ctx, tc.req)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			got := []any{k.Name, k.Scopes, k.Kind}
			want := []any{tc.wantName, tc.wantScopes, tc.wantKind}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("name, scopes, kind (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIssueRefusesDisabledUser(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	u := e.user()
	e.setDisabled(u.ID, true)
	_, _, err := e.svc.Issue(e.ctx, IssueRequest{UserID: u.ID, Name: "n"})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "user_id" {
		t.Fatalf("Issue for a disabled user = %v, want a user_id ValidationError", err)
	}
}

func TestIssueAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, Options{})
		u := e.user()
		admin := store.NewID("usr")
		exp := t0.Add(90 * 24 * time.Hour)

		_, k1 := e.issue(IssueRequest{UserID: u.ID, Name: "from the cli", Scopes: []string{"b", "a"}})
		ctx := principal.With(e.ctx, &principal.Principal{UserID: admin})
		_, k2, err := e.svc.Issue(ctx, IssueRequest{UserID: u.ID, Name: "from the web", ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		want := []audit.Event{
			{
				Time: t0, Type: audit.TypeKeyCreated, Outcome: store.OutcomeAllow, UserID: u.ID, CredentialID: k1.ID,
				Details: map[string]any{
					"name": "from the cli", "prefix": k1.Prefix, "kind": "manual",
					"scopes": []string{"a", "b"}, "expires_at": nil, "actor": "cli",
				},
			},
			{
				Time: t0, Type: audit.TypeKeyCreated, Outcome: store.OutcomeAllow, UserID: u.ID, CredentialID: k2.ID,
				Details: map[string]any{
					"name": "from the web", "prefix": k2.Prefix, "kind": "manual",
					"scopes": []string{}, "expires_at": time.UnixMilli(exp.UnixMilli()).UTC().Format(time.RFC3339Nano), "actor": admin,
				},
			},
		}
		if diff := cmp.Diff(want, e.rec.all()); diff != "" {
			t.Errorf("audit events (-want +got):\n%s", diff)
		}
	})
}

// TestPlaintextStaysSecret: the key appears only in Issue's return value:
// not in audit events, logs, the stored row or errors.
func TestPlaintextStaysSecret(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	plain, k := e.key("a")
	if _, err := e.svc.Verify(e.ctx, plain); err != nil {
		t.Fatal(err)
	}
	e.spy.setLookupErr(errors.New("down"))
	e.clock.Advance(time.Hour)
	_, verifyErr := e.svc.Verify(e.ctx, plain)
	e.spy.setLookupErr(nil)
	if _, err := e.svc.Revoke(e.ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	e.spy.setTouchErr(errors.New("down"))
	flushErr := e.svc.Flush(e.ctx)
	stored, _ := e.svc.Get(e.ctx, k.ID)

	secret := plain[DisplayPrefixLen:] // everything past the display prefix
	places := map[string]string{
		"audit events": fmt.Sprintf("%#v", e.rec.all()),
		"logs":         e.logs.String(),
		"stored row":   fmt.Sprintf("%#v %s", stored, stored.Hash),
		"errors":       fmt.Sprint(verifyErr, flushErr),
	}
	for where, text := range places {
		if strings.Contains(text, secret) || strings.Contains(text, secret[:16]) {
			t.Errorf("the secret part of the key appears in %s", where)
		}
	}
}

func TestVerifyCachedAllocatesNothing(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	plain, _ := e.key("a", "b")
	ctx := context.Background()
	if _, err := e.svc.Verify(ctx, plain); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(1000, func() {
		if _, err := e.svc.Verify(ctx, plain); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("cached Verify: %v allocations per call, want 0", n)
	}
}

// TestCacheEntryHasNoPointers guards the property that keeps a large cache
// free for the garbage collector.
func TestCacheEntryHasNoPointers(t *testing.T) {
	var s shard
	for _, typ := range []reflect.Type{reflect.TypeOf(s.entries), reflect.TypeOf(s.uses)} {
		for _, part := range []reflect.Type{typ.Key(), typ.Elem()} {
			if hasPointers(part) {
				t.Errorf("%v in %v holds pointers", part, typ)
			}
		}
	}
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	}
	return true
}

// TestScopeTableFull: once the process-wide scope table is full, keys with
// new scopes still verify with all their scopes, read from the database
// each time; keys with registered scopes stay cached.
func TestScopeTableFull(t *testing.T) {
	saved := scopes
	scopes = newScopeTable()
	t.Cleanup(func() { scopes = saved })

	if err := RegisterScopes("payments:read", "payments:write"); err != nil {
		t.Fatal(err)
	}
	if err := RegisterScopes("bad scope"); err == nil {
		t.Error("RegisterScopes accepted an invalid scope")
	}
	e := newEnv(t, backends[0], Options{})
	// A user fills the rest of the table with invented scopes.
	for i := range 2 {
		var junk []string
		for j := range 31 {
			junk = append(junk, fmt.Sprintf("junk%d.%d", i, j))
		}
		p, _ := e.key(junk...)
		if _, err := e.svc.Verify(e.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := RegisterScopes("one:more"); err == nil {
		t.Error("RegisterScopes succeeded on a full table")
	}

	overflow, _ := e.key("payments:read", "reports:read", "reports:write")
	registered, _ := e.key("payments:write")
	for _, tc := range []struct {
		key         string
		wantScopes  []string
		wantLookups int64
	}{
		{overflow, []string{"payments:read", "reports:read", "reports:write"}, 3},
		{registered, []string{"payments:write"}, 1},
	} {
		before := e.lookups()
		for range 3 {
			r, err := e.svc.Verify(e.ctx, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantScopes, r.Scopes()); diff != "" {
				t.Errorf("Scopes (-want +got):\n%s", diff)
			}
			if !r.HasScope(tc.wantScopes[len(tc.wantScopes)-1]) || r.HasScope("junk0.0") {
				t.Errorf("HasScope wrong for %v", tc.wantScopes)
			}
		}
		if n := e.lookups() - before; n != tc.wantLookups {
			t.Errorf("scopes %v: 3 verifications made %d lookups, want %d", tc.wantScopes, n, tc.wantLookups)
		}
	}
}

// TestUnusualRowsVerifyUncached: rows the compact form cannot hold (ids not
// made by store.NewID, an unknown kind) still verify exactly, uncached.
func TestUnusualRowsVerifyUncached(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	u := store.User{ID: "legacy-user-1", Email: "legacy@example.com", CreatedAt: t0, UpdatedAt: t0}
	if err := e.raw.CreateUser(e.ctx, u); err != nil {
		t.Fatal(err)
	}
	plain := Generate()
	h := Hash(plain)
	k := store.APIKey{ID: "legacy-key-1", UserID: u.ID, Name: "old", Prefix: plain[:12], Hash: h[:], Kind: "imported", Scopes: []string{"x"}, CreatedAt: t0}
	if err := e.raw.CreateAPIKey(e.ctx, k); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r, err := e.svc.Verify(e.ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		want := resultView{KeyID: k.ID, UserID: u.ID, Kind: "imported", Scopes: []string{"x"}}
		if diff := cmp.Diff(want, view(r)); diff != "" {
			t.Errorf("Verify (-want +got):\n%s", diff)
		}
	}
	if n := e.lookups(); n != 2 {
		t.Errorf("%d lookups, want 2 (not cacheable)", n)
	}
	if err := e.svc.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.Get(e.ctx, k.ID); got.LastUsedAt.IsZero() {
		t.Error("last use of an uncached key was not recorded")
	}
}

func TestZeroResult(t *testing.T) {
	var r Result
	got := []any{r.KeyID(), r.UserID(), r.Kind(), r.Scopes(), r.ExpiresAt().IsZero(), r.HasScope("a")}
	want := []any{"", "", "", []string{}, true, false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("zero Result (-want +got):\n%s", diff)
	}
}

// TestConcurrentUse exercises the cache under the race detector: many
// verifications, revocations, invalidations and flushes at once, and no
// key is accepted after its Revoke returned.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, backends[0], Options{CacheSize: 64})
	e.svc.now = time.Now
	u := e.user()
	type issued struct {
		plain string
		id    string
	}
	var keys []issued
	for i := range 40 {
		p, k := e.issue(IssueRequest{UserID: u.ID, Name: fmt.Sprint("k", i), Scopes: []string{"a", fmt.Sprint("s", i%5)}})
		keys = append(keys, issued{p, k.ID})
	}
	var revoked sync.Map // id → struct{}, set after Revoke returned
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				k := keys[(i*7+w)%len(keys)]
				_, wasRevoked := revoked.Load(k.id)
				_, err := e.svc.Verify(e.ctx, k.plain)
				if wasRevoked && err == nil {
					t.Errorf("key %s accepted after its Revoke returned", k.id)
					return
				}
				if err != nil && !errors.Is(err, ErrRevoked) {
					t.Errorf("Verify: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i, k := range keys {
			if i%2 == 0 {
				if _, err := e.svc.Revoke(e.ctx, k.id); err != nil {
					t.Error(err)
				}
				revoked.Store(k.id, struct{}{})
			}
			e.svc.InvalidateUser(u.ID)
			if err := e.svc.Flush(e.ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

// TestCacheEntryNeedsFullHash: the cache is indexed by half the key hash;
// an entry whose full hash differs from the presented key's (a crafted or
// colliding entry) must not vouch for it.
func TestCacheEntryNeedsFullHash(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	victim, _ := e.key()
	_, other := e.key()

	h := Hash(victim)
	forged := h
	forged[31] ^= 1 // same map key (first 16 bytes), different hash
	otherID, _ := rawID(other.ID, keyIDPrefix)
	otherUser, _ := rawID(other.UserID, userIDPrefix)
	sh := e.svc.cache.shard(&h)
	sh.mu.Lock()
	sh.entries[mapKey(&h)] = entry{hash: forged, keyID: otherID, userID: otherUser, flags: flagValid, cachedUntil: t0.Add(time.Hour).UnixNano()}
	sh.mu.Unlock()

	r, err := e.svc.Verify(e.ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if r.KeyID() == other.ID {
		t.Fatal("Verify trusted a cache entry whose hash does not match the key")
	}
	if n := e.lookups(); n != 1 {
		t.Errorf("%d lookups, want 1 (the mismatching entry is a miss)", n)
	}
}

// TestRevokeLosingRace: when another revocation lands between Revoke's read
// and its write, the store keeps the earlier time and Revoke records
// nothing (the winner did).
func TestRevokeLosingRace(t *testing.T) {
	e := newEnv(t, backends[0], Options{})
	_, k := e.key()
	e.revokeInStore(k.ID) // the winner, at t0
	e.clock.Advance(time.Second)
	svc := New(staleGetStore{e.raw}, e.rec, Options{Now: e.clock.Now, Logger: e.svc.log})

	got, err := svc.Revoke(e.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(t0.UnixMilli()); !got.RevokedAt.Equal(want) {
		t.Errorf("RevokedAt = %v, want the winner's %v", got.RevokedAt, want)
	}
	if n := len(e.rec.ofType(audit.TypeKeyRevoked)); n != 0 {
		t.Errorf("%d key.revoked events from the losing Revoke, want 0", n)
	}
}

// staleGetStore answers GetAPIKey as if the key were not revoked yet.
type staleGetStore struct{ store.Store }

func (s staleGetStore) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	k, err := s.Store.GetAPIKey(ctx, id)
	k.RevokedAt = time.Time{}
	return k, err
}
