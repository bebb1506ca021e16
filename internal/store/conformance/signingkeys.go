package conformance

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// RunSigningKeys runs the signing-key tests (store.SigningKeyStore), each on
// a fresh store from newStore. Run calls it; a backend that implements only
// SigningKeyStore may call it directly.
func RunSigningKeys(t *testing.T, newStore func(t *testing.T) store.SigningKeyStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.SigningKeyStore)
	}{
		{"SigningKeyCreateList", testSigningKeyCreateList},
		{"SigningKeyGenerationConflict", testSigningKeyGenerationConflict},
		{"SigningKeyInvalid", testSigningKeyInvalid},
		{"SigningKeyRotationRace", testSigningKeyRotationRace},
		{"DeleteSigningKeysRetiredBefore", testDeleteSigningKeysRetiredBefore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// newSigningKey returns a valid key of generation gen activating at act.
// The "sealed" private key is random bytes: the store treats it as opaque.
func newSigningKey(gen int64, act time.Time) store.SigningKey {
	priv := make([]byte, 60)
	rand.Read(priv)
	id := store.NewID("kid") // any unique text; tokens uses JWK thumbprints
	return store.SigningKey{
		ID:          id,
		Generation:  gen,
		Algorithm:   "ES256",
		PublicJWK:   fmt.Appendf(nil, `{"kty":"EC","crv":"P-256","kid":%q,"x":"x","y":"y"}`, id),
		PrivateKey:  priv,
		CreatedAt:   act.Add(-time.Minute),
		ActivatesAt: act,
	}
}

func signingKeyMS(k store.SigningKey) store.SigningKey {
	k.CreatedAt, k.ActivatesAt, k.RetiresAt = ms(k.CreatedAt), ms(k.ActivatesAt), ms(k.RetiresAt)
	return k
}

func mustSigningKey(t *testing.T, s store.SigningKeyStore, gen int64, act time.Time) store.SigningKey {
	t.Helper()
	k := newSigningKey(gen, act)
	if err := s.CreateSigningKey(t.Context(), k); err != nil {
		t.Fatalf("CreateSigningKey(generation %d): %v", gen, err)
	}
	return signingKeyMS(k)
}

func listSigningKeys(t *testing.T, s store.SigningKeyStore) []store.SigningKey {
	t.Helper()
	keys, err := s.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	return keys
}

func generations(keys []store.SigningKey) []int64 {
	var out []int64
	for _, k := range keys {
		out = append(out, k.Generation)
	}
	return out
}

// testSigningKeyCreateList: keys round-trip byte for byte, newest first, and
// creating generation n+1 retires generation n at n+1's activation time.
func testSigningKeyCreateList(t *testing.T, s store.SigningKeyStore) {
	if got := listSigningKeys(t, s); len(got) != 0 {
		t.Fatalf("ListSigningKeys on an empty store = %d keys", len(got))
	}
	k1 := mustSigningKey(t, s, 1, at(0))
	if d := diff([]store.SigningKey{k1}, listSigningKeys(t, s)); d != "" {
		t.Errorf("after generation 1 (-want +got):\n%s", d)
	}

	k2 := mustSigningKey(t, s, 2, at(30*24*time.Hour))
	k3 := newSigningKey(3, at(60*24*time.Hour))
	k3.Algorithm = "EdDSA"
	k3.PublicJWK = []byte(`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`)
	if err := s.CreateSigningKey(t.Context(), k3); err != nil {
		t.Fatalf("CreateSigningKey(generation 3): %v", err)
	}
	k3 = signingKeyMS(k3)

	k1.RetiresAt = k2.ActivatesAt
	k2.RetiresAt = k3.ActivatesAt
	if d := diff([]store.SigningKey{k3, k2, k1}, listSigningKeys(t, s)); d != "" {
		t.Errorf("after three generations, newest first (-want +got):\n%s", d)
	}
}

// testSigningKeyGenerationConflict: only the next generation can be created;
// a taken generation, a gap, a second generation 1 and a taken id are all
// conflicts, and a refused create changes nothing.
func testSigningKeyGenerationConflict(t *testing.T, s store.SigningKeyStore) {
	ctx := t.Context()
	k1 := mustSigningKey(t, s, 1, at(0))
	k2 := mustSigningKey(t, s, 2, at(time.Hour))

	for _, tc := range []struct {
		name string
		k    store.SigningKey
	}{
		{"generation 1 again", newSigningKey(1, at(2*time.Hour))},
		{"generation 2 again", newSigningKey(2, at(2*time.Hour))},
		{"gap: generation 4 after 2", newSigningKey(4, at(2*time.Hour))},
		{"taken id", func() store.SigningKey { k := newSigningKey(3, at(2*time.Hour)); k.ID = k1.ID; return k }()},
	} {
		if err := s.CreateSigningKey(ctx, tc.k); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateSigningKey(%s) = %v, want ErrConflict", tc.name, err)
		}
	}
	k1.RetiresAt = k2.ActivatesAt
	if d := diff([]store.SigningKey{k2, k1}, listSigningKeys(t, s)); d != "" {
		t.Errorf("refused creates changed the keys (-want +got):\n%s", d)
	}
}

// testSigningKeyInvalid: values the store refuses to keep.
func testSigningKeyInvalid(t *testing.T, s store.SigningKeyStore) {
	for _, tc := range []struct {
		name   string
		change func(*store.SigningKey)
	}{
		{"empty id", func(k *store.SigningKey) { k.ID = "" }},
		{"id with NUL", func(k *store.SigningKey) { k.ID = "kid\x00" }},
		{"generation 0", func(k *store.SigningKey) { k.Generation = 0 }},
		{"no algorithm", func(k *store.SigningKey) { k.Algorithm = "" }},
		{"no private key", func(k *store.SigningKey) { k.PrivateKey = nil }},
		{"public JWK not JSON", func(k *store.SigningKey) { k.PublicJWK = []byte("{not json") }},
		{"no activation time", func(k *store.SigningKey) { k.ActivatesAt = time.Time{} }},
		{"already retired", func(k *store.SigningKey) { k.RetiresAt = at(time.Hour) }},
	} {
		k := newSigningKey(1, at(0))
		tc.change(&k)
		if err := s.CreateSigningKey(t.Context(), k); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateSigningKey(%s) = %v, want a validation error", tc.name, err)
		}
	}
	if got := listSigningKeys(t, s); len(got) != 0 {
		t.Errorf("invalid keys were stored: %v", generations(got))
	}
}

// testSigningKeyRotationRace: several nodes rotating at the same moment all
// try to create the same next generation; exactly one succeeds, the others
// get ErrConflict, and the previous generation is retired once, at the
// winner's activation time.
func testSigningKeyRotationRace(t *testing.T, s store.SigningKeyStore) {
	ctx := t.Context()
	mustSigningKey(t, s, 1, at(0))
	const nodes = 8
	var (
		wg       sync.WaitGroup
		won      atomic.Int32
		winner   atomic.Value
		start    = make(chan struct{})
		failures = make(chan error, nodes)
	)
	for i := range nodes {
		k := newSigningKey(2, at(time.Duration(i+1)*time.Minute))
		wg.Go(func() {
			<-start
			err := s.CreateSigningKey(ctx, k)
			switch {
			case err == nil:
				won.Add(1)
				winner.Store(k)
			case !errors.Is(err, store.ErrConflict):
				failures <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Errorf("losing CreateSigningKey = %v, want ErrConflict", err)
	}
	if n := won.Load(); n != 1 {
		t.Fatalf("%d nodes created generation 2, want exactly 1", n)
	}
	w := signingKeyMS(winner.Load().(store.SigningKey))
	got := listSigningKeys(t, s)
	if d := diff([]int64{2, 1}, generations(got)); d != "" {
		t.Fatalf("generations after the race (-want +got):\n%s", d)
	}
	if got[0].ID != w.ID || !bytes.Equal(got[0].PrivateKey, w.PrivateKey) {
		t.Errorf("stored generation 2 is %s, want the winner %s", got[0].ID, w.ID)
	}
	if !got[1].RetiresAt.Equal(w.ActivatesAt) {
		t.Errorf("generation 1 RetiresAt = %v, want the winner's activation %v", got[1].RetiresAt, w.ActivatesAt)
	}
}

// testDeleteSigningKeysRetiredBefore: retired keys go once their retirement
// is before the cutoff; the newest generation never goes, and generations
// keep counting after a deletion.
func testDeleteSigningKeysRetiredBefore(t *testing.T, s store.SigningKeyStore) {
	ctx := t.Context()
	day := 24 * time.Hour
	mustSigningKey(t, s, 1, at(0))
	mustSigningKey(t, s, 2, at(30*day)) // retires 1 at 30d
	mustSigningKey(t, s, 3, at(60*day)) // retires 2 at 60d

	del := func(cutoff time.Time) int {
		t.Helper()
		n, err := s.DeleteSigningKeysRetiredBefore(ctx, cutoff)
		if err != nil {
			t.Fatalf("DeleteSigningKeysRetiredBefore: %v", err)
		}
		return n
	}
	if n := del(time.Time{}); n != 0 {
		t.Errorf("zero cutoff deleted %d keys", n)
	}
	if n := del(at(30 * day)); n != 0 { // retired exactly at the cutoff: kept
		t.Errorf("cutoff = retirement deleted %d keys, want 0", n)
	}
	if n := del(at(30*day + time.Millisecond)); n != 1 {
		t.Errorf("cutoff after generation 1 retired: deleted %d keys, want 1", n)
	}
	if n := del(at(10 * 365 * day)); n != 1 {
		t.Errorf("far cutoff deleted %d keys, want 1 (generation 2; 3 is the newest)", n)
	}
	if d := diff([]int64{3}, generations(listSigningKeys(t, s))); d != "" {
		t.Errorf("generations left (-want +got):\n%s", d)
	}
	mustSigningKey(t, s, 4, at(90*day))
	if d := diff([]int64{4, 3}, generations(listSigningKeys(t, s))); d != "" {
		t.Errorf("generations after rotating again (-want +got):\n%s", d)
	}
}
