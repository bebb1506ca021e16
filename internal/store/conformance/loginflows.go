package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// loginFlowTests is the LoginFlowStore part of the suite.
var loginFlowTests = []struct {
	name string
	fn   func(t *testing.T, s store.LoginFlowStore)
}{
	{"LoginFlowRoundTrip", testLoginFlowRoundTrip},
	{"LoginFlowCreateErrors", testLoginFlowCreateErrors},
	{"LoginFlowCap", testLoginFlowCap},
	{"LoginFlowSourceCap", testLoginFlowSourceCap},
	{"LoginFlowCapConcurrent", testLoginFlowCapConcurrent},
	{"LoginFlowSetUser", testLoginFlowSetUser},
	{"LoginFlowSetUserConcurrent", testLoginFlowSetUserConcurrent},
	{"LoginFlowUse", testLoginFlowUse},
	{"LoginFlowUseConcurrent", testLoginFlowUseConcurrent},
	{"LoginFlowDeleteExpired", testLoginFlowDeleteExpired},
	{"LoginFlowDeleteExpiredConcurrent", testLoginFlowDeleteExpiredConcurrent},
}

// RunLoginFlows runs the LoginFlowStore tests, one subtest per behaviour,
// each on a fresh store from newStore (Run calls it).
func RunLoginFlows(t *testing.T, newStore func(t *testing.T) store.LoginFlowStore) {
	for _, tc := range loginFlowTests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func loginFlowMS(f store.LoginFlow) store.LoginFlow {
	f.CreatedAt, f.ExpiresAt, f.UserAt, f.UsedAt = ms(f.CreatedAt), ms(f.ExpiresAt), ms(f.UserAt), ms(f.UsedAt)
	return f
}

func newUpstreamFlow(created time.Time) store.LoginFlow {
	return store.LoginFlow{
		ID: store.NewID("lgf"), Kind: store.LoginFlowUpstream, Provider: "corp", StateHash: randomHash(),
		Sealed: []byte{1, 2, 3, 0, 255}, ReturnTo: "/oauth/consent?request=areq_x&y=\"z\"", Source: "2001:db8:1:2::/64",
		CreatedAt: created, ExpiresAt: created.Add(10 * time.Minute),
	}
}

func newCustomFlow(created time.Time) store.LoginFlow {
	return store.LoginFlow{
		ID: store.NewID("lgf"), Kind: store.LoginFlowCustom, StateHash: randomHash(), RequestHash: randomHash(),
		ReturnTo: "/account", Source: "198.51.100.7", CreatedAt: created, ExpiresAt: created.Add(10 * time.Minute),
	}
}

func mustLoginFlow(t *testing.T, s store.LoginFlowStore, f store.LoginFlow) store.LoginFlow {
	t.Helper()
	if err := s.CreateLoginFlow(t.Context(), f, store.LoginFlowLimits{}); err != nil {
		t.Fatalf("CreateLoginFlow: %v", err)
	}
	return loginFlowMS(f)
}

func getLoginFlow(t *testing.T, s store.LoginFlowStore, f store.LoginFlow) store.LoginFlow {
	t.Helper()
	got, err := s.GetLoginFlow(t.Context(), f.Kind, f.StateHash)
	if err != nil {
		t.Fatalf("GetLoginFlow(%s): %v", f.ID, err)
	}
	return got
}

func testLoginFlowRoundTrip(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	up := mustLoginFlow(t, s, newUpstreamFlow(at(0)))
	custom := mustLoginFlow(t, s, newCustomFlow(at(time.Second)))
	for _, want := range []store.LoginFlow{up, custom} {
		if d := diff(want, getLoginFlow(t, s, want)); d != "" {
			t.Errorf("GetLoginFlow(%s) (-want +got):\n%s", want.Kind, d)
		}
	}
	// A state is looked up within its kind only, and by its exact hash.
	if _, err := s.GetLoginFlow(ctx, store.LoginFlowCustom, up.StateHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("upstream state as custom: %v, want ErrNotFound", err)
	}
	if _, err := s.GetLoginFlow(ctx, store.LoginFlowCustom, custom.RequestHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("login request hash as a state: %v, want ErrNotFound", err)
	}
	for _, h := range [][]byte{nil, up.StateHash[:31], randomHash()} {
		if _, err := s.GetLoginFlow(ctx, store.LoginFlowUpstream, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetLoginFlow(%x): %v, want ErrNotFound", h, err)
		}
	}
	// No creation time: the store's clock.
	f := newUpstreamFlow(time.Time{})
	f.ExpiresAt = time.Now().Add(time.Minute)
	mustLoginFlow(t, s, f)
	if got := getLoginFlow(t, s, f); time.Since(got.CreatedAt) > time.Minute || got.CreatedAt.IsZero() {
		t.Errorf("CreatedAt defaulted to %v, want about now", got.CreatedAt)
	}
}

func testLoginFlowCreateErrors(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	first := mustLoginFlow(t, s, newCustomFlow(at(0)))
	conflicts := map[string]func(f *store.LoginFlow){
		"id":           func(f *store.LoginFlow) { f.ID = first.ID },
		"state hash":   func(f *store.LoginFlow) { f.StateHash = bytes.Clone(first.StateHash) },
		"request hash": func(f *store.LoginFlow) { f.RequestHash = bytes.Clone(first.RequestHash) },
	}
	for name, edit := range conflicts {
		f := newCustomFlow(at(0))
		edit(&f)
		if err := s.CreateLoginFlow(ctx, f, store.LoginFlowLimits{}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("taken %s: %v, want ErrConflict", name, err)
		}
	}
	invalid := map[string]func(f *store.LoginFlow){
		"no id":                  func(f *store.LoginFlow) { f.ID = "" },
		"unknown kind":           func(f *store.LoginFlow) { f.Kind = "saml" },
		"upstream with request":  func(f *store.LoginFlow) { f.Kind, f.Provider = store.LoginFlowUpstream, "corp" },
		"upstream, no provider":  func(f *store.LoginFlow) { f.Kind, f.RequestHash = store.LoginFlowUpstream, nil },
		"custom with provider":   func(f *store.LoginFlow) { f.Provider = "corp" },
		"custom without request": func(f *store.LoginFlow) { f.RequestHash = nil },
		"short state hash":       func(f *store.LoginFlow) { f.StateHash = f.StateHash[:16] },
		"plain state":            func(f *store.LoginFlow) { f.StateHash = []byte("the-state-in-clear") },
		"short request hash":     func(f *store.LoginFlow) { f.RequestHash = f.RequestHash[:31] },
		"sealed too large":       func(f *store.LoginFlow) { f.Sealed = make([]byte, store.MaxLoginFlowSealedBytes+1) },
		"no expiry":              func(f *store.LoginFlow) { f.ExpiresAt = time.Time{} },
		"born used":              func(f *store.LoginFlow) { f.UsedAt = at(0) },
		"born with user":         func(f *store.LoginFlow) { f.User, f.UserAt = `{"sub":"x"}`, at(0) },
		"born with callback":     func(f *store.LoginFlow) { f.CallbackHash = randomHash() },
		"NUL in return_to":       func(f *store.LoginFlow) { f.ReturnTo = "/a\x00b" },
		"bad UTF-8 in provider": func(f *store.LoginFlow) {
			f.Kind, f.RequestHash, f.Provider = store.LoginFlowUpstream, nil, "\xff"
		},
	}
	for name, edit := range invalid {
		f := newCustomFlow(at(0))
		edit(&f)
		err := s.CreateLoginFlow(ctx, f, store.LoginFlowLimits{})
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want a validation error", name, err)
		}
		if _, err := s.GetLoginFlow(ctx, f.Kind, f.StateHash); err == nil {
			t.Errorf("%s: the refused flow was stored", name)
		}
	}
}

func testLoginFlowCap(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	// Two flows expired before at(10m): they do not count.
	for range 2 {
		f := newUpstreamFlow(at(0))
		f.ExpiresAt = at(5 * time.Minute)
		mustLoginFlow(t, s, f)
	}
	now := at(10 * time.Minute)
	for i := range 3 {
		if err := s.CreateLoginFlow(ctx, newCustomFlow(now), store.LoginFlowLimits{Total: 3}); err != nil {
			t.Fatalf("flow %d under the cap of 3: %v", i+1, err)
		}
	}
	over := newUpstreamFlow(now)
	if err := s.CreateLoginFlow(ctx, over, store.LoginFlowLimits{Total: 3}); !errors.Is(err, store.ErrFull) {
		t.Fatalf("a 4th live flow with a cap of 3: %v, want ErrFull", err)
	}
	if _, err := s.GetLoginFlow(ctx, over.Kind, over.StateHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused flow was stored: %v", err)
	}
	// Finished (used) flows do not count, as for the per-source bound (so a
	// client cannot fill the total with flows it finishes itself); once
	// the three expire there is room again.
	if err := s.CreateLoginFlow(ctx, over, store.LoginFlowLimits{}); err != nil {
		t.Fatalf("no cap (0): %v", err)
	}
	if _, err := s.UseLoginFlow(ctx, over.Kind, over.StateHash, now); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateLoginFlow(ctx, newCustomFlow(now), store.LoginFlowLimits{Total: 4}); err != nil {
		t.Errorf("3 pending flows and a used one, cap 4: %v, want room (the used one does not count)", err)
	}
	if err := s.CreateLoginFlow(ctx, newCustomFlow(now), store.LoginFlowLimits{Total: 4}); !errors.Is(err, store.ErrFull) {
		t.Errorf("4 pending flows with a cap of 4: %v, want ErrFull", err)
	}
	if err := s.CreateLoginFlow(ctx, newCustomFlow(now.Add(10*time.Minute)), store.LoginFlowLimits{Total: 1}); err != nil {
		t.Errorf("after the others expired: %v", err)
	}
}

// testLoginFlowSourceCap: one source holds at most PerSource sign-ins in
// progress; its finished and expired ones do not count, nor do other
// sources' ones, and ErrSourceFull is an ErrFull the caller can tell apart.
func testLoginFlowSourceCap(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	limits := store.LoginFlowLimits{Total: 100, PerSource: 2}
	from := func(source string, created time.Time) store.LoginFlow {
		f := newCustomFlow(created)
		f.Source = source
		return f
	}
	const a, b = "2001:db8:a::/64", "203.0.113.9"
	// An expired flow of a does not count.
	old := from(a, at(0))
	old.ExpiresAt = at(time.Minute)
	mustLoginFlow(t, s, old)
	now := at(5 * time.Minute)
	first := from(a, now)
	for _, f := range []store.LoginFlow{first, from(a, now)} {
		if err := s.CreateLoginFlow(ctx, f, limits); err != nil {
			t.Fatalf("pending flow of %s under its bound of 2: %v", a, err)
		}
	}
	over := from(a, now)
	err := s.CreateLoginFlow(ctx, over, limits)
	if !errors.Is(err, store.ErrSourceFull) || !errors.Is(err, store.ErrFull) {
		t.Fatalf("a 3rd pending flow of %s: %v, want ErrSourceFull (an ErrFull)", a, err)
	}
	if _, err := s.GetLoginFlow(ctx, over.Kind, over.StateHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused flow was stored: %v", err)
	}
	// Other sources, and flows without a source, still start.
	for _, f := range []store.LoginFlow{from(b, now), from(b, now), from("", now), from("", now), from("", now)} {
		if err := s.CreateLoginFlow(ctx, f, limits); err != nil {
			t.Errorf("flow from %q while %s is full: %v", f.Source, a, err)
		}
	}
	// A finished sign-in makes room for the next one of its source.
	if _, err := s.UseLoginFlow(ctx, first.Kind, first.StateHash, now); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateLoginFlow(ctx, over, limits); err != nil {
		t.Errorf("after one of %s's sign-ins finished: %v", a, err)
	}
	// The total bound still holds: 7 pending rows (the used one does not
	// count, as for the per-source bound), a total of 7.
	if err := s.CreateLoginFlow(ctx, from("192.0.2.55", now), store.LoginFlowLimits{Total: 7, PerSource: 2}); !errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrSourceFull) {
		t.Errorf("a new source with the total reached: %v, want ErrFull and not ErrSourceFull", err)
	}
}

// testLoginFlowCapConcurrent: the bounds are exact under concurrent
// creates, as from several nodes at once (the counts and the insert are
// serialised on every backend).
func testLoginFlowCapConcurrent(t *testing.T, s store.LoginFlowStore) {
	for _, c := range []struct {
		name   string
		source func(i int) string
		limits store.LoginFlowLimits
		want   int
		full   error
	}{
		{"total", func(i int) string { return fmt.Sprintf("192.0.2.%d", i) }, store.LoginFlowLimits{Total: 10}, 10, store.ErrFull},
		{"per source", func(int) string { return "2001:db8:c::/64" }, store.LoginFlowLimits{PerSource: 7}, 7, store.ErrSourceFull},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := at(0)
			const n = 48
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				stored   int
				full     int
				failures []error
			)
			for i := range n {
				wg.Go(func() {
					f := newUpstreamFlow(now)
					f.Source = c.source(i)
					err := s.CreateLoginFlow(t.Context(), f, c.limits)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						stored++
					case errors.Is(err, c.full):
						full++
					default:
						failures = append(failures, err)
					}
				})
			}
			wg.Wait()
			if stored != c.want || full != n-c.want || len(failures) > 0 {
				t.Fatalf("%d concurrent creates with %+v: %d stored, %d refused full, errors %v; want exactly %d stored",
					n, c.limits, stored, full, failures, c.want)
			}
		})
	}
}

func testLoginFlowSetUser(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	f := mustLoginFlow(t, s, newCustomFlow(at(0)))
	const alice, mallory = `{"sub":"alice","roles":["a"]}`, `{"sub":"mallory"}`
	code := randomHash()
	if _, err := s.SetLoginFlowUser(ctx, randomHash(), alice, code, at(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown request: %v, want ErrNotFound", err)
	}
	if _, err := s.SetLoginFlowUser(ctx, f.StateHash, alice, code, at(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the state hash as a request hash: %v, want ErrNotFound", err)
	}
	got, err := s.SetLoginFlowUser(ctx, f.RequestHash, alice, code, at(time.Minute))
	if err != nil {
		t.Fatalf("SetLoginFlowUser: %v", err)
	}
	want := f
	want.User, want.UserAt, want.CallbackHash = alice, ms(at(time.Minute)), code
	if d := diff(want, got); d != "" {
		t.Errorf("SetLoginFlowUser (-want +got):\n%s", d)
	}
	// Once only: the second description (and its code) is refused and
	// not kept.
	again, err := s.SetLoginFlowUser(ctx, f.RequestHash, mallory, randomHash(), at(2*time.Minute))
	if !errors.Is(err, store.ErrReplayed) || again.User != alice || !bytes.Equal(again.CallbackHash, code) {
		t.Errorf("second SetLoginFlowUser: user %q, %v; want %q with the first code and ErrReplayed", again.User, err, alice)
	}
	if d := diff(want, getLoginFlow(t, s, f)); d != "" {
		t.Errorf("stored after the refusal (-want +got):\n%s", d)
	}
	// Expired: refused as such.
	old := mustLoginFlow(t, s, newCustomFlow(at(0)))
	if got, err := s.SetLoginFlowUser(ctx, old.RequestHash, alice, code, old.ExpiresAt); !errors.Is(err, store.ErrExpired) || got.ID != old.ID {
		t.Errorf("at expiry: %s, %v; want the flow and ErrExpired", got.ID, err)
	}
	// A used flow takes no user.
	used := mustLoginFlow(t, s, newCustomFlow(at(0)))
	if _, err := s.UseLoginFlow(ctx, used.Kind, used.StateHash, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetLoginFlowUser(ctx, used.RequestHash, alice, code, at(time.Minute)); !errors.Is(err, store.ErrReplayed) {
		t.Errorf("used flow: %v, want ErrReplayed", err)
	}
	// Bad input is refused before anything changes.
	fresh := mustLoginFlow(t, s, newCustomFlow(at(0)))
	for name, user := range map[string]string{
		"empty": "", "NUL": "{\"sub\":\"a\x00\"}", "bad UTF-8": "{\"sub\":\"\xff\"}",
		"too large": `{"x":"` + strings.Repeat("a", store.MaxLoginFlowUserBytes) + `"}`,
	} {
		if _, err := s.SetLoginFlowUser(ctx, fresh.RequestHash, user, code, at(time.Minute)); err == nil || errors.Is(err, store.ErrReplayed) {
			t.Errorf("%s user: %v, want a validation error", name, err)
		}
	}
	// The callback code is kept as its SHA-256 only: nothing else fits.
	for name, hash := range map[string][]byte{"no": nil, "short": code[:16], "plain": []byte("the-callback-code-in-clear-43-bytes-long!!!")} {
		if _, err := s.SetLoginFlowUser(ctx, fresh.RequestHash, alice, hash, at(time.Minute)); err == nil || errors.Is(err, store.ErrReplayed) {
			t.Errorf("%s callback hash: %v, want a validation error", name, err)
		}
	}
	if got := getLoginFlow(t, s, fresh); got.User != "" || !got.UserAt.IsZero() || got.CallbackHash != nil {
		t.Errorf("refused users changed the flow: %+v", got)
	}
}

func testLoginFlowSetUserConcurrent(t *testing.T, s store.LoginFlowStore) {
	f := mustLoginFlow(t, s, newCustomFlow(at(0)))
	const n = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		winners  []string
		replayed int
		failures []error
	)
	for i := range n {
		wg.Go(func() {
			user := fmt.Sprintf(`{"sub":"user-%d"}`, i)
			_, err := s.SetLoginFlowUser(t.Context(), f.RequestHash, user, randomHash(), at(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, user)
			case errors.Is(err, store.ErrReplayed):
				replayed++
			default:
				failures = append(failures, err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 || replayed != n-1 || len(failures) > 0 {
		t.Fatalf("concurrent SetLoginFlowUser: winners %v, %d replayed, errors %v; want exactly one winner", winners, replayed, failures)
	}
	if got := getLoginFlow(t, s, f); got.User != winners[0] {
		t.Errorf("stored user %q, the winner posted %q", got.User, winners[0])
	}
}

func testLoginFlowUse(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	f := mustLoginFlow(t, s, newUpstreamFlow(at(0)))
	if _, err := s.UseLoginFlow(ctx, store.LoginFlowCustom, f.StateHash, at(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("use as another kind: %v, want ErrNotFound", err)
	}
	got, err := s.UseLoginFlow(ctx, f.Kind, f.StateHash, at(time.Minute))
	want := f
	want.UsedAt = ms(at(time.Minute))
	if err != nil {
		t.Fatalf("UseLoginFlow: %v", err)
	}
	if d := diff(want, got); d != "" {
		t.Errorf("UseLoginFlow (-want +got):\n%s", d)
	}
	// A replay is told apart while the row lives, and changes nothing.
	for _, when := range []time.Duration{2 * time.Minute, 9 * time.Minute} {
		again, err := s.UseLoginFlow(ctx, f.Kind, f.StateHash, at(when))
		if !errors.Is(err, store.ErrReplayed) || !again.UsedAt.Equal(want.UsedAt) {
			t.Errorf("replay at +%s: used %v, %v; want ErrReplayed and the first use kept", when, again.UsedAt, err)
		}
	}
	if _, err := s.UseLoginFlow(ctx, f.Kind, randomHash(), at(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown state: %v, want ErrNotFound", err)
	}
	// Expired, used or not: ErrExpired, and the unused one stays unused.
	old := mustLoginFlow(t, s, newCustomFlow(at(0)))
	for _, fl := range []store.LoginFlow{old, f} {
		got, err := s.UseLoginFlow(ctx, fl.Kind, fl.StateHash, fl.ExpiresAt)
		if !errors.Is(err, store.ErrExpired) || got.ID != fl.ID {
			t.Errorf("%s at expiry: %s, %v; want the flow and ErrExpired", fl.Kind, got.ID, err)
		}
	}
	if got := getLoginFlow(t, s, old); !got.UsedAt.IsZero() {
		t.Errorf("an expired flow was marked used: %v", got.UsedAt)
	}
}

func testLoginFlowUseConcurrent(t *testing.T, s store.LoginFlowStore) {
	for _, f := range []store.LoginFlow{newUpstreamFlow(at(0)), newCustomFlow(at(0))} {
		f = mustLoginFlow(t, s, f)
		const n = 8
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			won      int
			replayed int
			failures []error
		)
		for range n {
			wg.Go(func() {
				_, err := s.UseLoginFlow(t.Context(), f.Kind, f.StateHash, at(time.Minute))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, store.ErrReplayed):
					replayed++
				default:
					failures = append(failures, err)
				}
			})
		}
		wg.Wait()
		if won != 1 || replayed != n-1 || len(failures) > 0 {
			t.Errorf("%s: concurrent uses: %d won, %d replayed, errors %v; want exactly one winner", f.Kind, won, replayed, failures)
		}
	}
}

func testLoginFlowDeleteExpired(t *testing.T, s store.LoginFlowStore) {
	ctx := t.Context()
	var expired []store.LoginFlow
	for i := range 5 {
		f := newCustomFlow(at(0))
		f.ExpiresAt = at(time.Duration(i+1) * time.Minute)
		expired = append(expired, mustLoginFlow(t, s, f))
	}
	live := mustLoginFlow(t, s, newUpstreamFlow(at(5*time.Minute)))
	usedLive := mustLoginFlow(t, s, newCustomFlow(at(5*time.Minute)))
	if _, err := s.UseLoginFlow(ctx, usedLive.Kind, usedLive.StateHash, at(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	now := at(10 * time.Minute)
	if n, err := s.DeleteExpiredLoginFlows(ctx, now, 3); err != nil || n != 3 {
		t.Fatalf("DeleteExpiredLoginFlows(limit 3) = %d, %v; want 3", n, err)
	}
	if n, err := s.DeleteExpiredLoginFlows(ctx, now, 100); err != nil || n != 2 {
		t.Fatalf("DeleteExpiredLoginFlows(rest) = %d, %v; want 2", n, err)
	}
	for _, f := range expired {
		if _, err := s.GetLoginFlow(ctx, f.Kind, f.StateHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired flow %s survived: %v", f.ID, err)
		}
	}
	// Live flows stay, a used one too (a replay must still read "replayed").
	getLoginFlow(t, s, live)
	if _, err := s.UseLoginFlow(ctx, usedLive.Kind, usedLive.StateHash, now); !errors.Is(err, store.ErrReplayed) {
		t.Errorf("replay of a used live flow after the cleaner: %v, want ErrReplayed", err)
	}
	if n, err := s.DeleteExpiredLoginFlows(ctx, now, 0); n != 0 || err != nil {
		t.Errorf("limit 0: %d, %v", n, err)
	}
}

func testLoginFlowDeleteExpiredConcurrent(t *testing.T, s store.LoginFlowStore) {
	const rows = 40
	for range rows {
		f := newUpstreamFlow(at(0))
		mustLoginFlow(t, s, f)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		errs  []error
	)
	for range 4 {
		wg.Go(func() {
			for {
				n, err := s.DeleteExpiredLoginFlows(t.Context(), at(time.Hour), 7)
				mu.Lock()
				total += n
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				if err != nil || n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if total != rows || len(errs) > 0 {
		t.Errorf("concurrent cleaners deleted %d of %d rows, errors %v", total, rows, errs)
	}
}
