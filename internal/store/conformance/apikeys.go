package conformance

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

func testAPIKeyCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustUser(t, s, "alice@example.com")
	bob := mustUser(t, s, "bob@example.com")

	full := store.APIKey{
		ID:         store.NewID("key"),
		UserID:     alice.ID,
		Name:       "laptop – Zoë's \"key\"; --",
		Prefix:     "mcpg_7Hq2xZ1a",
		Hash:       randomHash(),
		Kind:       store.KeyKindSession,
		Scopes:     []string{"mcp:tools", "payments:read", "payments:write"},
		CreatedAt:  at(time.Minute),
		ExpiresAt:  at(24 * time.Hour),
		LastUsedAt: at(2 * time.Minute),
		RevokedAt:  time.Time{},
	}
	if err := s.CreateAPIKey(ctx, full); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	wantFull := keyMS(full)
	older := mustKey(t, s, alice.ID, "older", at(0))
	bobs := mustKey(t, s, bob.ID, "bobs", at(2*time.Minute))

	// Zero times and no scopes round-trip as zero and empty.
	bare := store.APIKey{ID: store.NewID("key"), UserID: bob.ID, Hash: randomHash(), Kind: store.KeyKindManual, CreatedAt: at(-time.Minute)}
	if err := s.CreateAPIKey(ctx, bare); err != nil {
		t.Fatalf("CreateAPIKey(bare): %v", err)
	}

	got, err := s.GetAPIKey(ctx, full.ID)
	if err != nil {
		t.Fatalf("GetAPIKey: %v", err)
	}
	if d := diff(wantFull, got); d != "" {
		t.Errorf("GetAPIKey mismatch (-want +got):\n%s", d)
	}
	got, err = s.GetAPIKey(ctx, bare.ID)
	if err != nil {
		t.Fatalf("GetAPIKey(bare): %v", err)
	}
	if d := diff(keyMS(bare), got); d != "" {
		t.Errorf("GetAPIKey(bare) mismatch (-want +got):\n%s", d)
	}

	gotKey, gotUser, err := s.LookupAPIKey(ctx, full.Hash)
	if err != nil {
		t.Fatalf("LookupAPIKey: %v", err)
	}
	if d := diff(wantFull, gotKey); d != "" {
		t.Errorf("LookupAPIKey key mismatch (-want +got):\n%s", d)
	}
	if d := diff(alice, gotUser); d != "" {
		t.Errorf("LookupAPIKey user mismatch (-want +got):\n%s", d)
	}

	list, err := s.ListAPIKeys(ctx, alice.ID)
	if err != nil {
		t.Fatalf("ListAPIKeys(alice): %v", err)
	}
	if d := diff([]store.APIKey{wantFull, older}, list); d != "" {
		t.Errorf("ListAPIKeys(alice), newest first (-want +got):\n%s", d)
	}
	list, err = s.ListAPIKeys(ctx, "")
	if err != nil {
		t.Fatalf("ListAPIKeys(all): %v", err)
	}
	if d := diff([]store.APIKey{bobs, wantFull, older, keyMS(bare)}, list); d != "" {
		t.Errorf("ListAPIKeys(all), newest first (-want +got):\n%s", d)
	}
	list, err = s.ListAPIKeys(ctx, store.NewID("usr"))
	if err != nil || len(list) != 0 {
		t.Errorf("ListAPIKeys(unknown user) = %v, %v; want none", list, err)
	}
}

func testAPIKeyConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	k := mustKey(t, s, u.ID, "first", at(0))

	sameHash := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Hash: k.Hash, Kind: store.KeyKindManual, CreatedAt: at(0)}
	if err := s.CreateAPIKey(ctx, sameHash); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAPIKey(same hash) err = %v, want ErrConflict", err)
	}
	sameID := store.APIKey{ID: k.ID, UserID: u.ID, Hash: randomHash(), Kind: store.KeyKindManual, CreatedAt: at(0)}
	if err := s.CreateAPIKey(ctx, sameID); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAPIKey(same id) err = %v, want ErrConflict", err)
	}
	list, err := s.ListAPIKeys(ctx, "")
	if err != nil {
		t.Fatalf("ListAPIKeys: %v", err)
	}
	if d := diff([]store.APIKey{k}, list); d != "" {
		t.Errorf("conflicting creates changed the keys (-want +got):\n%s", d)
	}
}

func testAPIKeyNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	k := mustKey(t, s, u.ID, "k", at(0))
	if _, err := s.GetAPIKey(ctx, store.NewID("key")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAPIKey(unknown) err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.LookupAPIKey(ctx, randomHash()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupAPIKey(unknown) err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.LookupAPIKey(ctx, k.Hash[:16]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupAPIKey(hash prefix) err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.LookupAPIKey(ctx, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupAPIKey(nil) err = %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeAPIKey(ctx, store.NewID("key"), at(0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeAPIKey(unknown) err = %v, want ErrNotFound", err)
	}
}

func testAPIKeyUnknownUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := store.APIKey{ID: store.NewID("key"), UserID: store.NewID("usr"), Hash: randomHash(), Kind: store.KeyKindManual, CreatedAt: at(0)}
	if err := s.CreateAPIKey(ctx, k); err == nil {
		t.Error("CreateAPIKey for an unknown user succeeded")
	}
	if _, err := s.GetAPIKey(ctx, k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAPIKey after failed create err = %v, want ErrNotFound", err)
	}
}

func testRevokeAPIKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	k := mustKey(t, s, u.ID, "k", at(0))
	other := mustKey(t, s, u.ID, "other", at(0))

	got, err := s.RevokeAPIKey(ctx, k.ID, at(2*time.Hour))
	if err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	want := k
	want.RevokedAt = ms(at(2 * time.Hour))
	if d := diff(want, got); d != "" {
		t.Errorf("RevokeAPIKey result (-want +got):\n%s", d)
	}
	if got.Active(at(3 * time.Hour)) {
		t.Error("revoked key reports Active")
	}

	// A later revocation keeps the earlier time.
	got, err = s.RevokeAPIKey(ctx, k.ID, at(5*time.Hour))
	if err != nil {
		t.Fatalf("RevokeAPIKey(again): %v", err)
	}
	if !got.RevokedAt.Equal(ms(at(2 * time.Hour))) {
		t.Errorf("second revocation moved RevokedAt to %v, want %v", got.RevokedAt, ms(at(2*time.Hour)))
	}
	// An earlier one (e.g. a delayed replica of the first) wins.
	got, err = s.RevokeAPIKey(ctx, k.ID, at(time.Hour))
	if err != nil {
		t.Fatalf("RevokeAPIKey(earlier): %v", err)
	}
	if !got.RevokedAt.Equal(ms(at(time.Hour))) {
		t.Errorf("earlier revocation: RevokedAt = %v, want %v", got.RevokedAt, ms(at(time.Hour)))
	}

	// The stored row agrees, the other key is untouched, and lookup still
	// finds the revoked key so callers can say why it is refused.
	stored, err := s.GetAPIKey(ctx, k.ID)
	if err != nil {
		t.Fatalf("GetAPIKey: %v", err)
	}
	if !stored.RevokedAt.Equal(ms(at(time.Hour))) {
		t.Errorf("stored RevokedAt = %v, want %v", stored.RevokedAt, ms(at(time.Hour)))
	}
	looked, _, err := s.LookupAPIKey(ctx, k.Hash)
	if err != nil {
		t.Fatalf("LookupAPIKey(revoked): %v", err)
	}
	if looked.RevokedAt.IsZero() {
		t.Error("LookupAPIKey(revoked) returned a key without RevokedAt")
	}
	o, err := s.GetAPIKey(ctx, other.ID)
	if err != nil {
		t.Fatalf("GetAPIKey(other): %v", err)
	}
	if d := diff(other, o); d != "" {
		t.Errorf("revoking one key changed another (-want +got):\n%s", d)
	}
}

func testTouchAPIKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	a := mustKey(t, s, u.ID, "a", at(0))
	b := mustKey(t, s, u.ID, "b", at(0))
	c := mustKey(t, s, u.ID, "c", at(0))

	lastUsed := func(k store.APIKey) time.Time {
		t.Helper()
		got, err := s.GetAPIKey(ctx, k.ID)
		if err != nil {
			t.Fatalf("GetAPIKey: %v", err)
		}
		return got.LastUsedAt
	}
	check := func(step string, k store.APIKey, want time.Time) {
		t.Helper()
		if got := lastUsed(k); !got.Equal(ms(want)) {
			t.Errorf("%s: key %s LastUsedAt = %v, want %v", step, k.Name, got, ms(want))
		}
	}

	if err := s.TouchAPIKeys(ctx, nil); err != nil {
		t.Fatalf("TouchAPIKeys(nil): %v", err)
	}
	err := s.TouchAPIKeys(ctx, map[string]time.Time{
		a.ID:               at(10 * time.Minute),
		b.ID:               at(20 * time.Minute),
		store.NewID("key"): at(30 * time.Minute), // unknown: ignored
	})
	if err != nil {
		t.Fatalf("TouchAPIKeys: %v", err)
	}
	check("first batch", a, at(10*time.Minute))
	check("first batch", b, at(20*time.Minute))
	check("first batch", c, time.Time{})

	// a moves forward; b is offered an older time and keeps its own.
	err = s.TouchAPIKeys(ctx, map[string]time.Time{a.ID: at(15 * time.Minute), b.ID: at(5 * time.Minute)})
	if err != nil {
		t.Fatalf("TouchAPIKeys(second): %v", err)
	}
	check("second batch", a, at(15*time.Minute))
	check("second batch", b, at(20*time.Minute))
	check("second batch", c, time.Time{})
}

func testTouchAPIKeysConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	var keys []store.APIKey
	for _, name := range []string{"a", "b", "c", "d"} {
		keys = append(keys, mustKey(t, s, u.ID, name, at(0)))
	}
	// Overlapping batches from several "nodes" at once must neither fail
	// (e.g. deadlock) nor lose the newest time.
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			batch := map[string]time.Time{}
			for i, k := range keys {
				batch[k.ID] = at(time.Duration(w*10+i) * time.Second)
			}
			errs <- s.TouchAPIKeys(ctx, batch)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent TouchAPIKeys: %v", err)
		}
	}
	for i, k := range keys {
		got, err := s.GetAPIKey(ctx, k.ID)
		if err != nil {
			t.Fatalf("GetAPIKey: %v", err)
		}
		want := ms(at(time.Duration((workers-1)*10+i) * time.Second))
		if !got.LastUsedAt.Equal(want) {
			t.Errorf("key %s LastUsedAt = %v, want the newest %v", k.Name, got.LastUsedAt, want)
		}
	}
}

func testDeleteAPIKeysBefore(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	cutoff := at(time.Hour)
	mk := func(name string, expires, revoked time.Time) store.APIKey {
		t.Helper()
		k := store.APIKey{
			ID: store.NewID("key"), UserID: u.ID, Name: name, Hash: randomHash(), Kind: store.KeyKindManual,
			CreatedAt: at(0), ExpiresAt: expires, RevokedAt: revoked,
			LastUsedAt: at(-time.Hour), // irrelevant to expiry
		}
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatalf("CreateAPIKey(%s): %v", name, err)
		}
		return keyMS(k)
	}
	none := time.Time{}
	keep := []store.APIKey{
		mk("never-expires", none, none),
		mk("expires-later", at(2*time.Hour), none),
		mk("expires-at-cutoff", cutoff, none),
		mk("revoked-at-cutoff", none, cutoff),
		mk("revoked-later", none, at(90*time.Minute)),
		mk("revoked-later-expires-later", at(3*time.Hour), at(2*time.Hour)),
	}
	gone := []store.APIKey{
		mk("expired-1", at(10*time.Minute), none),
		mk("expired-2", at(20*time.Minute), none),
		mk("expired-3", at(59*time.Minute), none),
		mk("revoked", none, at(30*time.Minute)),
		mk("revoked-and-expired", at(40*time.Minute), at(50*time.Minute)),
		mk("revoked-early-expires-later", at(5*time.Hour), at(time.Minute)),
	}

	if n, err := s.DeleteAPIKeysBefore(ctx, cutoff, 0); err != nil || n != 0 {
		t.Errorf("DeleteAPIKeysBefore(limit 0) = %d, %v; want 0, nil", n, err)
	}
	n, err := s.DeleteAPIKeysBefore(ctx, cutoff, 4)
	if err != nil || n != 4 {
		t.Fatalf("DeleteAPIKeysBefore(limit 4) = %d, %v; want 4, nil", n, err)
	}
	n, err = s.DeleteAPIKeysBefore(ctx, cutoff, 100)
	if err != nil || n != len(gone)-4 {
		t.Fatalf("DeleteAPIKeysBefore(limit 100) = %d, %v; want %d, nil", n, err, len(gone)-4)
	}
	n, err = s.DeleteAPIKeysBefore(ctx, cutoff, 100)
	if err != nil || n != 0 {
		t.Fatalf("DeleteAPIKeysBefore(nothing left) = %d, %v; want 0, nil", n, err)
	}

	list, err := s.ListAPIKeys(ctx, u.ID)
	if err != nil {
		t.Fatalf("ListAPIKeys: %v", err)
	}
	names := func(ks []store.APIKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.Name)
		}
		slices.Sort(out)
		return out
	}
	if d := diff(names(keep), names(list)); d != "" {
		t.Errorf("keys left after GC (-want +got):\n%s", d)
	}
	for _, k := range gone {
		if _, err := s.GetAPIKey(ctx, k.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("key %s survived GC: %v", k.Name, err)
		}
	}
}

func testDeleteAPIKeysBeforeConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	const expired = 30
	for i := range expired {
		k := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Hash: randomHash(), Kind: store.KeyKindManual,
			CreatedAt: at(0), ExpiresAt: at(time.Duration(i) * time.Second)}
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatalf("CreateAPIKey: %v", err)
		}
	}
	live := mustKey(t, s, u.ID, "live", at(0))

	// Several nodes collect garbage at once: every expired key is deleted
	// exactly once, nothing fails, nothing else goes.
	const nodes = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for range nodes {
		wg.Go(func() {
			for range expired {
				n, err := s.DeleteAPIKeysBefore(ctx, at(time.Hour), 3)
				if err != nil {
					t.Errorf("concurrent DeleteAPIKeysBefore: %v", err)
					return
				}
				if n == 0 {
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// A node that found only locked rows stops early; sweep what is left.
	n, err := s.DeleteAPIKeysBefore(ctx, at(time.Hour), expired)
	if err != nil {
		t.Fatalf("DeleteAPIKeysBefore: %v", err)
	}
	if total+n != expired {
		t.Errorf("deleted %d keys in total, want %d", total+n, expired)
	}
	list, err := s.ListAPIKeys(ctx, u.ID)
	if err != nil {
		t.Fatalf("ListAPIKeys: %v", err)
	}
	if d := diff([]store.APIKey{live}, list); d != "" {
		t.Errorf("keys left (-want +got):\n%s", d)
	}
}
