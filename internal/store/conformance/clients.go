package conformance

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// clientTests is the ClientStore part of the suite.
var clientTests = []struct {
	name string
	fn   func(t *testing.T, s store.ClientStore)
}{
	{"OAuthClientCRUD", testOAuthClientCRUD},
	{"OAuthClientConflict", testOAuthClientConflict},
	{"OAuthClientInvalid", testOAuthClientInvalid},
	{"OAuthClientHostileIDs", testOAuthClientHostileIDs},
	{"OAuthClientDedupKey", testOAuthClientDedupKey},
	{"TouchOAuthClient", testTouchOAuthClient},
	{"UpsertCIMDClient", testUpsertCIMDClient},
	{"UpsertCIMDClientConcurrent", testUpsertCIMDClientConcurrent},
	{"ReapOAuthClients", testReapOAuthClients},
	{"ReapOAuthClientsConcurrent", testReapOAuthClientsConcurrent},
}

// RunClients runs the ClientStore tests, one subtest per behaviour, each
// on a fresh store from newStore (Run calls it; a backend that only
// implements ClientStore can call it directly).
func RunClients(t *testing.T, newStore func(t *testing.T) store.ClientStore) {
	for _, tc := range clientTests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func clientMS(c store.OAuthClient) store.OAuthClient {
	c.CreatedAt, c.LastUsedAt, c.FetchedAt, c.CacheUntil = ms(c.CreatedAt), ms(c.LastUsedAt), ms(c.FetchedAt), ms(c.CacheUntil)
	if c.ApplicationType == "" {
		c.ApplicationType = "web"
	}
	return c
}

// newClient returns a public DCR client created at created (not stored).
func newClient(created time.Time) store.OAuthClient {
	return store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: store.NewID("client"), Kind: store.ClientKindDCR, Name: "Test client",
		RedirectURIs: []string{"http://127.0.0.1/callback"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", ApplicationType: "native",
		CreatedAt: created,
	}
}

func mustClient(t *testing.T, s store.ClientStore, c store.OAuthClient) store.OAuthClient {
	t.Helper()
	if err := s.CreateOAuthClient(t.Context(), c); err != nil {
		t.Fatalf("CreateOAuthClient(%s): %v", c.ClientID, err)
	}
	return clientMS(c)
}

func getClient(t *testing.T, s store.ClientStore, clientID string) store.OAuthClient {
	t.Helper()
	c, err := s.GetOAuthClient(t.Context(), clientID)
	if err != nil {
		t.Fatalf("GetOAuthClient(%s): %v", clientID, err)
	}
	return c
}

func clientIDs(cs []store.OAuthClient) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ClientID)
	}
	return out
}

func testOAuthClientCRUD(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	static := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: store.NewID("client"), Kind: store.ClientKindStatic, Name: "Zoë's \"service\"; --",
		SecretHash: randomHash(), RedirectURIs: []string{"https://app.example.com/cb", "https://app.example.com/cb2?x=1&y=%20"},
		GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "client_secret_basic", ApplicationType: "web", Scopes: []string{"payments:read", "openid"},
		ClientURI: "https://app.example.com", LogoURI: "https://app.example.com/logo.png",
		MetadataJSON: `{"client_name":"x"}`, SoftwareID: "sw-1", SoftwareVersion: "1.2.3",
		CreatedAt: at(time.Minute), LastUsedAt: at(2 * time.Minute),
	}
	long := "https://client.example.com/" + strings.Repeat("p", 1900) + "/metadata.json"
	cimd := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: long, Kind: store.ClientKindCIMD, Name: "CIMD client",
		RedirectURIs: []string{"http://localhost/callback", "cursor://anysphere.cursor-mcp/oauth/callback"},
		GrantTypes:   []string{"authorization_code"}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none",
		ApplicationType: "native", MetadataURL: long, MetadataJSON: `{"client_id":"` + long + `"}`,
		CreatedAt: at(3 * time.Minute), FetchedAt: at(3 * time.Minute), CacheUntil: at(time.Hour),
	}
	dcr := newClient(at(0))
	for _, c := range []store.OAuthClient{static, cimd, dcr} {
		mustClient(t, s, c)
	}
	for _, c := range []store.OAuthClient{static, cimd, dcr} {
		if d := diff(clientMS(c), getClient(t, s, c.ClientID)); d != "" {
			t.Errorf("GetOAuthClient(%s) mismatch (-want +got):\n%s", c.Kind, d)
		}
	}
	if got := getClient(t, s, dcr.ClientID); got.SecretHash != nil || !got.Public() {
		t.Errorf("public client read back with SecretHash %v, want nil", got.SecretHash)
	}

	all, err := s.ListOAuthClients(ctx, "")
	if err != nil {
		t.Fatalf("ListOAuthClients: %v", err)
	}
	if d := diff([]string{cimd.ClientID, static.ClientID, dcr.ClientID}, clientIDs(all)); d != "" {
		t.Errorf("ListOAuthClients(all) order (-want +got):\n%s", d)
	}
	statics, err := s.ListOAuthClients(ctx, store.ClientKindStatic)
	if err != nil || len(statics) != 1 || statics[0].ClientID != static.ClientID {
		t.Errorf("ListOAuthClients(static) = %v, %v; want the static client only", clientIDs(statics), err)
	}
	if none, err := s.ListOAuthClients(ctx, "nonsense"); err != nil || len(none) != 0 {
		t.Errorf("ListOAuthClients(nonsense) = %v, %v; want none", clientIDs(none), err)
	}

	gone, err := s.DeleteOAuthClient(ctx, static.ClientID)
	if err != nil {
		t.Fatalf("DeleteOAuthClient: %v", err)
	}
	if d := diff(clientMS(static), gone); d != "" {
		t.Errorf("DeleteOAuthClient returned (-want +got):\n%s", d)
	}
	if _, err := s.GetOAuthClient(ctx, static.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOAuthClient after delete: err = %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteOAuthClient(ctx, static.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteOAuthClient: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetOAuthClient(ctx, "client_unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOAuthClient(unknown): err = %v, want ErrNotFound", err)
	}
}

func testOAuthClientConflict(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	a := mustClient(t, s, newClient(at(0)))
	sameClientID := newClient(at(0))
	sameClientID.ClientID = a.ClientID
	sameID := newClient(at(0))
	sameID.ID = a.ID
	for name, c := range map[string]store.OAuthClient{"client_id": sameClientID, "id": sameID} {
		if err := s.CreateOAuthClient(ctx, c); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateOAuthClient with a taken %s: err = %v, want ErrConflict", name, err)
		}
	}
	// client_id comparison is byte for byte: a case variant is another client.
	upper := newClient(at(0))
	upper.ClientID = strings.ToUpper(a.ClientID)
	mustClient(t, s, upper)
	if got := getClient(t, s, a.ClientID); got.ID != a.ID {
		t.Errorf("GetOAuthClient(%s) found %s", a.ClientID, got.ID)
	}
}

func testOAuthClientInvalid(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	for name, mod := range map[string]func(*store.OAuthClient){
		"empty id":                func(c *store.OAuthClient) { c.ID = "" },
		"empty client_id":         func(c *store.OAuthClient) { c.ClientID = "" },
		"unknown kind":            func(c *store.OAuthClient) { c.Kind = "other" },
		"plaintext secret":        func(c *store.OAuthClient) { c.SecretHash = []byte("secret") },
		"no auth method":          func(c *store.OAuthClient) { c.TokenEndpointAuthMethod = "" },
		"space in redirect URI":   func(c *store.OAuthClient) { c.RedirectURIs = []string{"https://a.example/x y"} },
		"empty scope":             func(c *store.OAuthClient) { c.Scopes = []string{""} },
		"NUL in name":             func(c *store.OAuthClient) { c.Name = "a\x00b" },
		"invalid UTF-8 in client": func(c *store.OAuthClient) { c.ClientID = "client_\xff" },
	} {
		c := newClient(at(0))
		mod(&c)
		err := s.CreateOAuthClient(ctx, c)
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("CreateOAuthClient(%s): err = %v, want a validation error", name, err)
		}
	}
	if all, err := s.ListOAuthClients(ctx, ""); err != nil || len(all) != 0 {
		t.Errorf("invalid clients were stored: %v, %v", clientIDs(all), err)
	}
}

func testOAuthClientHostileIDs(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	c := mustClient(t, s, newClient(at(0)))
	for _, id := range []string{"", c.ClientID + "\x00", "client_\xff", "' OR '1'='1", "%"} {
		if _, err := s.GetOAuthClient(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetOAuthClient(%q): err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.FindOAuthClientByDedupKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("FindOAuthClientByDedupKey(%q): err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.DeleteOAuthClient(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteOAuthClient(%q): err = %v, want ErrNotFound", id, err)
		}
		if err := s.TouchOAuthClient(ctx, id, at(time.Hour)); err != nil {
			t.Errorf("TouchOAuthClient(%q): err = %v, want nil (unknown ids are ignored)", id, err)
		}
	}
	if got := getClient(t, s, c.ClientID); !got.LastUsedAt.IsZero() {
		t.Errorf("a hostile touch reached the client: LastUsedAt = %v", got.LastUsedAt)
	}
}

func testOAuthClientDedupKey(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	a := newClient(at(0))
	a.DedupKey = "dk_1"
	mustClient(t, s, a)
	b := newClient(at(0))
	b.DedupKey = "dk_1"
	if err := s.CreateOAuthClient(ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOAuthClient with a taken dedup key: err = %v, want ErrConflict", err)
	}
	// Empty dedup keys never collide.
	mustClient(t, s, newClient(at(0)))
	mustClient(t, s, newClient(at(0)))
	got, err := s.FindOAuthClientByDedupKey(ctx, "dk_1")
	if err != nil || got.ClientID != a.ClientID || got.DedupKey != "dk_1" {
		t.Errorf("FindOAuthClientByDedupKey = %s (%q), %v; want %s", got.ClientID, got.DedupKey, err, a.ClientID)
	}
	if _, err := s.FindOAuthClientByDedupKey(ctx, "dk_2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FindOAuthClientByDedupKey(unknown): err = %v, want ErrNotFound", err)
	}
	// The key is free again once its client is gone.
	if _, err := s.DeleteOAuthClient(ctx, a.ClientID); err != nil {
		t.Fatal(err)
	}
	mustClient(t, s, b)
}

func testTouchOAuthClient(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	c := mustClient(t, s, newClient(at(0)))
	steps := []struct {
		at, want time.Time
	}{
		{at(time.Hour), at(time.Hour)},
		{at(30 * time.Minute), at(time.Hour)}, // never backwards
		{at(2 * time.Hour), at(2 * time.Hour)},
		{time.Time{}, at(2 * time.Hour)}, // zero time: nothing
	}
	for _, st := range steps {
		if err := s.TouchOAuthClient(ctx, c.ClientID, st.at); err != nil {
			t.Fatalf("TouchOAuthClient: %v", err)
		}
		if got := getClient(t, s, c.ClientID).LastUsedAt; !got.Equal(ms(st.want)) {
			t.Errorf("after touch at %v: LastUsedAt = %v, want %v", st.at, got, ms(st.want))
		}
	}
	if err := s.TouchOAuthClient(ctx, "client_unknown", at(time.Hour)); err != nil {
		t.Errorf("TouchOAuthClient(unknown): %v", err)
	}
}

func cimdClient(url string, fetched time.Time) store.OAuthClient {
	return store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: url, Kind: store.ClientKindCIMD, Name: "Doc v1",
		RedirectURIs: []string{"https://app.example.com/cb"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", ApplicationType: "web",
		MetadataURL: url, MetadataJSON: `{"v":1}`, CreatedAt: fetched, FetchedAt: fetched, CacheUntil: fetched.Add(time.Hour),
	}
}

func testUpsertCIMDClient(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	url := "https://app.example.com/client.json"
	v1 := cimdClient(url, at(0))
	got, err := s.UpsertCIMDClient(ctx, v1)
	if err != nil {
		t.Fatalf("UpsertCIMDClient(insert): %v", err)
	}
	if d := diff(clientMS(v1), got); d != "" {
		t.Errorf("UpsertCIMDClient(insert) returned (-want +got):\n%s", d)
	}
	if err := s.TouchOAuthClient(ctx, url, at(time.Minute)); err != nil {
		t.Fatal(err)
	}

	// A refetch replaces the metadata, keeps the identity and the use.
	v2 := cimdClient(url, at(2*time.Hour))
	v2.Name, v2.RedirectURIs, v2.MetadataJSON = "Doc v2", []string{"https://app.example.com/cb2"}, `{"v":2}`
	v2.ApplicationType, v2.LogoURI = "native", "https://app.example.com/logo.png"
	got, err = s.UpsertCIMDClient(ctx, v2)
	if err != nil {
		t.Fatalf("UpsertCIMDClient(update): %v", err)
	}
	want := clientMS(v2)
	want.ID, want.CreatedAt, want.LastUsedAt = v1.ID, ms(v1.CreatedAt), ms(at(time.Minute))
	if d := diff(want, got); d != "" {
		t.Errorf("UpsertCIMDClient(update) returned (-want +got):\n%s", d)
	}
	if d := diff(want, getClient(t, s, url)); d != "" {
		t.Errorf("GetOAuthClient after update (-want +got):\n%s", d)
	}

	// An operator's client with a URL client_id is never overwritten by a fetch.
	staticURL := "https://partner.example.com/client"
	static := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: staticURL, Kind: store.ClientKindStatic, Name: "Partner",
		RedirectURIs: []string{"https://partner.example.com/cb"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", CreatedAt: at(0),
	}
	static = mustClient(t, s, static)
	if _, err := s.UpsertCIMDClient(ctx, cimdClient(staticURL, at(time.Hour))); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpsertCIMDClient over a static client: err = %v, want ErrConflict", err)
	}
	if d := diff(static, getClient(t, s, staticURL)); d != "" {
		t.Errorf("static client changed by an upsert (-want +got):\n%s", d)
	}
	bad := cimdClient("https://x.example/c", at(0))
	bad.Kind = store.ClientKindDCR
	if _, err := s.UpsertCIMDClient(ctx, bad); err == nil {
		t.Error("UpsertCIMDClient accepted a dcr client")
	}
}

func testUpsertCIMDClientConcurrent(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	url := "https://app.example.com/client.json"
	const workers = 8
	var wg sync.WaitGroup
	ids := make(chan string, workers)
	for w := range workers {
		wg.Go(func() {
			c := cimdClient(url, at(time.Duration(w)*time.Second))
			got, err := s.UpsertCIMDClient(ctx, c)
			if err != nil {
				t.Errorf("concurrent UpsertCIMDClient: %v", err)
				return
			}
			ids <- got.ID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Errorf("concurrent upserts of one URL produced %d different clients, want 1", len(seen))
	}
	if all, err := s.ListOAuthClients(ctx, ""); err != nil || len(all) != 1 {
		t.Errorf("ListOAuthClients = %v, %v; want one row", clientIDs(all), err)
	}
}

func testReapOAuthClients(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	unusedCut, idleCut := at(24*time.Hour), at(10*24*time.Hour)
	mk := func(name, kind string, created, used time.Time) store.OAuthClient {
		c := newClient(created)
		c.ClientID, c.Kind, c.LastUsedAt = name, kind, used
		if kind == store.ClientKindCIMD {
			c.ClientID = "https://" + name + ".example.com/client.json"
		}
		return mustClient(t, s, c)
	}
	none := time.Time{}
	reaped := []store.OAuthClient{
		mk("dcr-unused-old", store.ClientKindDCR, at(0), none),
		mk("dcr-idle", store.ClientKindDCR, at(0), at(time.Hour)),
		mk("cimd-unused-old", store.ClientKindCIMD, at(0), none),
		mk("cimd-idle", store.ClientKindCIMD, at(0), at(9*24*time.Hour)),
	}
	kept := []store.OAuthClient{
		mk("dcr-unused-new", store.ClientKindDCR, at(25*time.Hour), none),
		mk("dcr-unused-at-cutoff", store.ClientKindDCR, unusedCut, none),
		mk("dcr-used-recently", store.ClientKindDCR, at(0), at(11*24*time.Hour)),
		mk("dcr-used-at-cutoff", store.ClientKindDCR, at(0), idleCut),
		mk("static-unused", store.ClientKindStatic, at(0), none),
		mk("static-idle", store.ClientKindStatic, at(0), at(time.Hour)),
	}
	// Zero cutoffs disable their rule.
	if got, err := s.ReapOAuthClients(ctx, time.Time{}, time.Time{}, 100); err != nil || len(got) != 0 {
		t.Errorf("ReapOAuthClients(no cutoffs) = %v, %v; want nothing", clientIDs(got), err)
	}
	got, err := s.ReapOAuthClients(ctx, unusedCut, time.Time{}, 100)
	if err != nil {
		t.Fatalf("ReapOAuthClients(unused only): %v", err)
	}
	wantUnused := []string{reaped[0].ClientID, reaped[2].ClientID}
	if d := diff(sortedIDs(wantUnused...), sortedIDs(clientIDs(got)...)); d != "" {
		t.Errorf("ReapOAuthClients(unused only) (-want +got):\n%s", d)
	}
	// The rest, in batches of one.
	var rest []string
	for range 5 {
		got, err := s.ReapOAuthClients(ctx, unusedCut, idleCut, 1)
		if err != nil {
			t.Fatalf("ReapOAuthClients: %v", err)
		}
		if len(got) > 1 {
			t.Fatalf("ReapOAuthClients(limit 1) returned %d clients", len(got))
		}
		rest = append(rest, clientIDs(got)...)
	}
	if d := diff(sortedIDs(reaped[1].ClientID, reaped[3].ClientID), sortedIDs(rest...)); d != "" {
		t.Errorf("ReapOAuthClients(both rules) (-want +got):\n%s", d)
	}
	for _, c := range reaped {
		if _, err := s.GetOAuthClient(ctx, c.ClientID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s survived the reaper: err = %v", c.ClientID, err)
		}
	}
	for _, c := range kept {
		if d := diff(c, getClient(t, s, c.ClientID)); d != "" {
			t.Errorf("%s changed (-want +got):\n%s", c.ClientID, d)
		}
	}
	if got, err := s.ReapOAuthClients(ctx, unusedCut, idleCut, 0); err != nil || len(got) != 0 {
		t.Errorf("ReapOAuthClients(limit 0) = %v, %v; want nothing", clientIDs(got), err)
	}
}

func testReapOAuthClientsConcurrent(t *testing.T, s store.ClientStore) {
	ctx := t.Context()
	var want []string
	for range 40 {
		want = append(want, mustClient(t, s, newClient(at(0))).ClientID)
	}
	keep := mustClient(t, s, newClient(at(48*time.Hour)))
	// Several "nodes" reap at once: every client is reaped, by exactly one.
	const workers = 6
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got []string
	)
	for range workers {
		wg.Go(func() {
			for {
				cs, err := s.ReapOAuthClients(ctx, at(24*time.Hour), at(24*time.Hour), 3)
				if err != nil {
					t.Errorf("concurrent ReapOAuthClients: %v", err)
					return
				}
				if len(cs) == 0 {
					return
				}
				mu.Lock()
				got = append(got, clientIDs(cs)...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	if d := diff(sortedIDs(want...), got); d != "" {
		t.Errorf("concurrent reaping (-want +got):\n%s", d)
	}
	getClient(t, s, keep.ClientID)
}
