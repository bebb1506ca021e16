package conformance

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// oauthTests is the OAuthStore part of the suite.
var oauthTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"OAuthRequestRoundTrip", testOAuthRequestRoundTrip},
	{"OAuthRequestTakeConcurrent", testOAuthRequestTakeConcurrent},
	{"OAuthApprove", testOAuthApprove},
	{"OAuthApproveConcurrent", testOAuthApproveConcurrent},
	{"OAuthGrantClaims", testOAuthGrantClaims},
	{"OAuthDropGrantClaims", testOAuthDropGrantClaims},
	{"OAuthRedeemCode", testOAuthRedeemCode},
	{"OAuthRedeemCodeConcurrent", testOAuthRedeemCodeConcurrent},
	{"OAuthRevokeGrant", testOAuthRevokeGrant},
	{"OAuthRevokeConsent", testOAuthRevokeConsent},
	{"OAuthRevokeUserGrants", testOAuthRevokeUserGrants},
	{"OAuthClientCredentialsGrant", testOAuthClientCredentialsGrant},
	{"OAuthRefreshRotation", testOAuthRefreshRotation},
	{"OAuthRefreshExpiry", testOAuthRefreshExpiry},
	{"OAuthRefreshRotateConcurrent", testOAuthRefreshRotateConcurrent},
	{"OAuthRefreshGraceSingleSuccessor", testOAuthRefreshGraceSingleSuccessor},
	{"OAuthTouchGrant", testOAuthTouchGrant},
	{"OAuthClientDeleteCascades", testOAuthClientDeleteCascades},
	{"OAuthDeleteExpired", testOAuthDeleteExpired},
	{"OAuthHostileInput", testOAuthHostileInput},
}

// RunOAuth runs the OAuthStore tests, one subtest per behaviour, each on a
// fresh store from newStore (Run calls it).
func RunOAuth(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range oauthTests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

const testResource = "https://mcp.example.com/mcp"

func oauthRequestMS(q store.OAuthRequest) store.OAuthRequest {
	q.CreatedAt, q.ExpiresAt = ms(q.CreatedAt), ms(q.ExpiresAt)
	return q
}

func grantMS(g store.OAuthGrant) store.OAuthGrant {
	g.AuthTime, g.CodeExpiresAt, g.CodeRedeemedAt = ms(g.AuthTime), ms(g.CodeExpiresAt), ms(g.CodeRedeemedAt)
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = ms(g.CreatedAt), ms(g.ExpiresAt), ms(g.LastUsedAt), ms(g.RevokedAt)
	return g
}

// oauthFixture is a user and a client to hang OAuth state on.
type oauthFixture struct {
	user   store.User
	client store.OAuthClient
}

func newOAuthFixture(t *testing.T, s store.Store, email string) oauthFixture {
	t.Helper()
	return oauthFixture{user: mustUser(t, s, email), client: mustClient(t, s, newClient(at(0)))}
}

func newRequest(f oauthFixture, created time.Time) store.OAuthRequest {
	return store.OAuthRequest{
		ID: store.NewID("areq"), ClientID: f.client.ClientID, RedirectURI: "http://127.0.0.1:4711/callback",
		RedirectURIProvided: true, Scopes: []string{"payments:read", "openid"}, Resource: testResource,
		State: "st&te=\"x\"", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Nonce: "n-0S6_WzA2Mj",
		CreatedAt: created, ExpiresAt: created.Add(10 * time.Minute),
	}
}

// newGrant returns a grant with a fresh code for f (not stored) and the
// code's hash.
func newGrant(f oauthFixture, scopes []string, created time.Time) store.OAuthGrant {
	return store.OAuthGrant{
		ID: store.NewID("grt"), UserID: f.user.ID, ClientID: f.client.ClientID, Resource: testResource,
		Scopes: scopes, Nonce: "nonce", AuthTime: created.Add(-time.Minute),
		CodeHash: randomHash(), CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		RedirectURI: "http://127.0.0.1:4711/callback", RedirectURIProvided: true, CodeExpiresAt: created.Add(10 * time.Minute),
		CreatedAt: created, ExpiresAt: created.Add(90 * 24 * time.Hour),
	}
}

// mustApprove approves without a pending request and returns the grant.
func mustApprove(t *testing.T, s store.Store, f oauthFixture, scopes []string, created time.Time) store.OAuthGrant {
	t.Helper()
	_, g, err := s.ApproveOAuthRequest(t.Context(), "", scopes, newGrant(f, scopes, created))
	if err != nil {
		t.Fatalf("ApproveOAuthRequest: %v", err)
	}
	return g
}

func newRefresh(created time.Time, life time.Duration) store.OAuthRefreshToken {
	return store.OAuthRefreshToken{ID: store.NewID("ort"), Hash: randomHash(), CreatedAt: created, ExpiresAt: created.Add(life)}
}

func getGrant(t *testing.T, s store.Store, id string) store.OAuthGrant {
	t.Helper()
	g, err := s.GetOAuthGrant(t.Context(), id)
	if err != nil {
		t.Fatalf("GetOAuthGrant(%s): %v", id, err)
	}
	return g
}

func testOAuthRequestRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "req@example.com")
	q := newRequest(f, at(0))
	q.Prompt = "consent"
	if err := s.CreateOAuthRequest(ctx, q); err != nil {
		t.Fatalf("CreateOAuthRequest: %v", err)
	}
	got, err := s.GetOAuthRequest(ctx, q.ID)
	if err != nil {
		t.Fatalf("GetOAuthRequest: %v", err)
	}
	if d := diff(oauthRequestMS(q), got); d != "" {
		t.Errorf("GetOAuthRequest mismatch (-want +got):\n%s", d)
	}
	if err := s.CreateOAuthRequest(ctx, q); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOAuthRequest(same id): err = %v, want ErrConflict", err)
	}
	// A request that did not give redirect_uri keeps that fact.
	q2 := newRequest(f, at(time.Second))
	q2.RedirectURIProvided = false
	q2.Scopes = nil
	if err := s.CreateOAuthRequest(ctx, q2); err != nil {
		t.Fatalf("CreateOAuthRequest(q2): %v", err)
	}
	if got, err := s.GetOAuthRequest(ctx, q2.ID); err != nil || got.RedirectURIProvided || len(got.Scopes) != 0 {
		t.Errorf("GetOAuthRequest(q2) = %+v, %v; want RedirectURIProvided false and no scopes", got, err)
	}

	taken, err := s.TakeOAuthRequest(ctx, q.ID)
	if err != nil {
		t.Fatalf("TakeOAuthRequest: %v", err)
	}
	if d := diff(oauthRequestMS(q), taken); d != "" {
		t.Errorf("TakeOAuthRequest mismatch (-want +got):\n%s", d)
	}
	if _, err := s.TakeOAuthRequest(ctx, q.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeOAuthRequest twice: err = %v, want ErrNotFound (single use)", err)
	}
	if _, err := s.GetOAuthRequest(ctx, q.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOAuthRequest after take: err = %v, want ErrNotFound", err)
	}

	bad := newRequest(f, at(0))
	bad.ClientID = "client_unknown"
	if err := s.CreateOAuthRequest(ctx, bad); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateOAuthRequest(unknown client): err = %v, want ErrNotFound", err)
	}
	noExpiry := newRequest(f, at(0))
	noExpiry.ExpiresAt = time.Time{}
	if err := s.CreateOAuthRequest(ctx, noExpiry); err == nil {
		t.Error("CreateOAuthRequest without expiry succeeded")
	}
}

func testOAuthRequestTakeConcurrent(t *testing.T, s store.Store) {
	f := newOAuthFixture(t, s, "take@example.com")
	q := newRequest(f, at(0))
	if err := s.CreateOAuthRequest(t.Context(), q); err != nil {
		t.Fatalf("CreateOAuthRequest: %v", err)
	}
	const n = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won, nf  int
		failures []error
	)
	for range n {
		wg.Go(func() {
			_, err := s.TakeOAuthRequest(t.Context(), q.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrNotFound):
				nf++
			default:
				failures = append(failures, err)
			}
		})
	}
	wg.Wait()
	if won != 1 || nf != n-1 || len(failures) > 0 {
		t.Errorf("concurrent takes: %d won, %d not found, errors %v; want exactly one winner", won, nf, failures)
	}
}

func testOAuthApprove(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "approve@example.com")
	q := newRequest(f, at(0))
	if err := s.CreateOAuthRequest(ctx, q); err != nil {
		t.Fatalf("CreateOAuthRequest: %v", err)
	}
	g1 := newGrant(f, []string{"payments:read"}, at(time.Minute))
	g1.ConsentID = "ocn_ignored"
	c1, stored, err := s.ApproveOAuthRequest(ctx, q.ID, []string{"payments:read"}, g1)
	if err != nil {
		t.Fatalf("ApproveOAuthRequest: %v", err)
	}
	if c1.ID == "" || c1.ID == "ocn_ignored" || c1.UserID != f.user.ID || c1.ClientID != f.client.ClientID || c1.Resource != testResource {
		t.Errorf("consent = %+v; want a new consent of the user for the client and resource", c1)
	}
	if d := diff([]string{"payments:read"}, c1.Scopes); d != "" {
		t.Errorf("consent scopes (-want +got):\n%s", d)
	}
	if !c1.CreatedAt.Equal(ms(at(time.Minute))) || !c1.LastUsedAt.IsZero() {
		t.Errorf("consent created %v, last used %v; want the approval time and never", c1.CreatedAt, c1.LastUsedAt)
	}
	want := grantMS(g1)
	want.ConsentID = c1.ID
	if d := diff(want, stored); d != "" {
		t.Errorf("approved grant (-want +got):\n%s", d)
	}
	if d := diff(want, getGrant(t, s, g1.ID)); d != "" {
		t.Errorf("GetOAuthGrant (-want +got):\n%s", d)
	}
	if _, err := s.GetOAuthRequest(ctx, q.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pending request after approval: err = %v, want ErrNotFound", err)
	}
	// The request is single use: approving it again fails and stores nothing.
	g2 := newGrant(f, []string{"payments:read"}, at(2*time.Minute))
	if _, _, err := s.ApproveOAuthRequest(ctx, q.ID, []string{"payments:read"}, g2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second approval of one request: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetOAuthGrant(ctx, g2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of the refused second approval was stored: %v", err)
	}

	// New scopes extend the consent, which keeps its id.
	g3 := newGrant(f, []string{"payments:write", "payments:read"}, at(3*time.Minute))
	c3, _, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:write", "payments:read"}, g3)
	if err != nil {
		t.Fatalf("ApproveOAuthRequest(no request): %v", err)
	}
	if c3.ID != c1.ID {
		t.Errorf("consent id changed from %s to %s", c1.ID, c3.ID)
	}
	if d := diff([]string{"payments:read", "payments:write"}, c3.Scopes); d != "" {
		t.Errorf("extended consent scopes (-want +got):\n%s", d)
	}
	if !c3.UpdatedAt.Equal(ms(at(3 * time.Minute))) {
		t.Errorf("consent UpdatedAt = %v, want the time of the extension", c3.UpdatedAt)
	}
	got, err := s.GetOAuthConsent(ctx, f.user.ID, f.client.ClientID, testResource)
	if err != nil {
		t.Fatalf("GetOAuthConsent: %v", err)
	}
	if d := diff(c3, got); d != "" {
		t.Errorf("GetOAuthConsent (-want +got):\n%s", d)
	}
	if byID, err := s.GetOAuthConsentByID(ctx, c1.ID); err != nil || byID.ID != c1.ID {
		t.Errorf("GetOAuthConsentByID = %v, %v", byID.ID, err)
	}
	// A consent for another resource is another row.
	other := newGrant(f, []string{"payments:read"}, at(4*time.Minute))
	other.Resource = "https://other.example.com/mcp"
	c4, _, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:read"}, other)
	if err != nil || c4.ID == c1.ID {
		t.Fatalf("approval for another resource: consent %s, err %v; want a new consent", c4.ID, err)
	}
	if _, err := s.GetOAuthConsent(ctx, f.user.ID, f.client.ClientID, "https://nowhere.example.com/mcp"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOAuthConsent(unknown resource): err = %v, want ErrNotFound", err)
	}
	list, err := s.ListOAuthConsents(ctx, f.user.ID)
	if err != nil {
		t.Fatalf("ListOAuthConsents: %v", err)
	}
	if len(list) != 2 || list[0].ID != c4.ID || list[1].ID != c1.ID {
		t.Errorf("ListOAuthConsents = %v; want the newer consent first", list)
	}
	if l, err := s.ListOAuthConsents(ctx, "usr_nobody"); err != nil || len(l) != 0 {
		t.Errorf("ListOAuthConsents(unknown user) = %v, %v", l, err)
	}

	// A grant's code hash is unique.
	dup := newGrant(f, nil, at(5*time.Minute))
	dup.CodeHash = g3.CodeHash
	if _, _, err := s.ApproveOAuthRequest(ctx, "", nil, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("approval with a taken code hash: err = %v, want ErrConflict", err)
	}
	// Unknown user or client.
	ghost := newGrant(f, nil, at(5*time.Minute))
	ghost.UserID = store.NewID("usr")
	if _, _, err := s.ApproveOAuthRequest(ctx, "", nil, ghost); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("approval for an unknown user: err = %v, want ErrNotFound", err)
	}
	short := newGrant(f, nil, at(5*time.Minute))
	short.CodeHash = []byte("plaintext code")
	if _, _, err := s.ApproveOAuthRequest(ctx, "", nil, short); err == nil {
		t.Error("approval with a code hash that is not a SHA-256 digest succeeded")
	}
}

func testOAuthApproveConcurrent(t *testing.T, s store.Store) {
	f := newOAuthFixture(t, s, "concurrent-consent@example.com")
	scopes := []string{"a", "b", "c", "d", "e", "f"}
	var wg sync.WaitGroup
	errs := make([]error, len(scopes))
	ids := make([]string, len(scopes))
	for i, sc := range scopes {
		wg.Go(func() {
			c, _, err := s.ApproveOAuthRequest(t.Context(), "", []string{sc}, newGrant(f, []string{sc}, at(time.Duration(i)*time.Second)))
			errs[i], ids[i] = err, c.ID
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("approval %d: %v", i, err)
		}
		if ids[i] != ids[0] {
			t.Errorf("approvals got different consents: %v", ids)
			break
		}
	}
	c, err := s.GetOAuthConsent(t.Context(), f.user.ID, f.client.ClientID, testResource)
	if err != nil {
		t.Fatalf("GetOAuthConsent: %v", err)
	}
	got := slices.Clone(c.Scopes)
	slices.Sort(got)
	if d := diff(scopes, got); d != "" {
		t.Errorf("consent after concurrent approvals lost scopes (-want +got):\n%s", d)
	}
}

func testOAuthRedeemCode(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "redeem@example.com")
	g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	if _, err := s.RedeemOAuthCode(ctx, randomHash(), at(time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemOAuthCode(unknown): err = %v, want ErrNotFound", err)
	}
	if _, err := s.RedeemOAuthCode(ctx, []byte("short"), at(time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemOAuthCode(not a digest): err = %v, want ErrNotFound", err)
	}
	got, err := s.RedeemOAuthCode(ctx, g.CodeHash, at(time.Second))
	if err != nil {
		t.Fatalf("RedeemOAuthCode: %v", err)
	}
	want := g
	want.CodeRedeemedAt, want.LastUsedAt = ms(at(time.Second)), ms(at(time.Second))
	if d := diff(want, got); d != "" {
		t.Errorf("redeemed grant (-want +got):\n%s", d)
	}
	c, err := s.GetOAuthConsentByID(ctx, g.ConsentID)
	if err != nil || !c.LastUsedAt.Equal(ms(at(time.Second))) {
		t.Errorf("consent last used = %v (%v); want the redemption time", c.LastUsedAt, err)
	}
	again, err := s.RedeemOAuthCode(ctx, g.CodeHash, at(2*time.Second))
	if !errors.Is(err, store.ErrReplayed) {
		t.Fatalf("second redemption: err = %v, want ErrReplayed", err)
	}
	if again.ID != g.ID || !again.CodeRedeemedAt.Equal(ms(at(time.Second))) {
		t.Errorf("replayed redemption returned grant %s redeemed at %v; want %s redeemed at the first time", again.ID, again.CodeRedeemedAt, g.ID)
	}
}

func testOAuthRedeemCodeConcurrent(t *testing.T, s store.Store) {
	f := newOAuthFixture(t, s, "redeem-race@example.com")
	g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	const n = 8
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		won, replayed int
		failures      []error
	)
	for range n {
		wg.Go(func() {
			_, err := s.RedeemOAuthCode(t.Context(), g.CodeHash, at(time.Second))
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
		t.Errorf("concurrent redemptions: %d won, %d replayed, errors %v; want exactly one winner", won, replayed, failures)
	}
}

func testOAuthRevokeGrant(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "revoke-grant@example.com")
	g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	if !g.Active(at(time.Minute)) {
		t.Fatal("fresh grant is not active")
	}
	got, ended, err := s.RevokeOAuthGrant(ctx, g.ID, at(time.Minute), "user_revoked")
	if err != nil || !ended {
		t.Fatalf("RevokeOAuthGrant = ended %v, %v; want true", ended, err)
	}
	if !got.RevokedAt.Equal(ms(at(time.Minute))) || got.RevokeReason != "user_revoked" || got.Active(at(time.Minute)) {
		t.Errorf("revoked grant: at %v reason %q active %v", got.RevokedAt, got.RevokeReason, got.Active(at(time.Minute)))
	}
	got, ended, err = s.RevokeOAuthGrant(ctx, g.ID, at(time.Hour), "again")
	if err != nil || ended || !got.RevokedAt.Equal(ms(at(time.Minute))) || got.RevokeReason != "user_revoked" {
		t.Errorf("second revocation: ended %v at %v reason %q err %v; want the first time and reason kept", ended, got.RevokedAt, got.RevokeReason, err)
	}
	if _, _, err := s.RevokeOAuthGrant(ctx, "grt_unknown", at(0), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeOAuthGrant(unknown): err = %v, want ErrNotFound", err)
	}
	if _, err := s.CreateOAuthRefreshToken(ctx, store.OAuthRefreshToken{ID: store.NewID("ort"), GrantID: g.ID, Hash: randomHash(), ExpiresAt: at(time.Hour)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token for a revoked grant: err = %v, want ErrNotFound", err)
	}
}

func testOAuthRevokeConsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "revoke-consent@example.com")
	g1 := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	g2 := mustApprove(t, s, f, []string{"payments:write"}, at(time.Second))
	done := mustApprove(t, s, f, []string{"payments:read"}, at(2*time.Second))
	if _, _, err := s.RevokeOAuthGrant(ctx, done.ID, at(3*time.Second), "earlier"); err != nil {
		t.Fatal(err)
	}
	// Another user cannot revoke it.
	mallory := mustUser(t, s, "mallory@example.com")
	if _, _, err := s.RevokeOAuthConsent(ctx, mallory.ID, g1.ConsentID, at(time.Minute), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeOAuthConsent by another user: err = %v, want ErrNotFound", err)
	}
	c, grants, err := s.RevokeOAuthConsent(ctx, f.user.ID, g1.ConsentID, at(time.Minute), "user_revoked")
	if err != nil {
		t.Fatalf("RevokeOAuthConsent: %v", err)
	}
	if c.ID != g1.ConsentID {
		t.Errorf("revoked consent %s, want %s", c.ID, g1.ConsentID)
	}
	wantIDs := []string{g1.ID, g2.ID}
	slices.Sort(wantIDs)
	var gotIDs []string
	for _, g := range grants {
		gotIDs = append(gotIDs, g.ID)
		if !g.RevokedAt.Equal(ms(at(time.Minute))) || g.RevokeReason != "user_revoked" {
			t.Errorf("grant %s revoked at %v reason %q", g.ID, g.RevokedAt, g.RevokeReason)
		}
	}
	if d := diff(wantIDs, gotIDs); d != "" {
		t.Errorf("grants revoked with the consent (-want +got):\n%s", d)
	}
	if _, err := s.GetOAuthConsentByID(ctx, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("consent after revocation: err = %v, want ErrNotFound", err)
	}
	if g := getGrant(t, s, g2.ID); g.Active(at(time.Hour)) || g.ConsentID != "" {
		t.Errorf("grant after consent revocation: active %v consent %q; want inactive without consent", g.Active(at(time.Hour)), g.ConsentID)
	}
	if g := getGrant(t, s, done.ID); g.RevokeReason != "earlier" {
		t.Errorf("earlier revocation reason overwritten: %q", g.RevokeReason)
	}
	if _, _, err := s.RevokeOAuthConsent(ctx, f.user.ID, g1.ConsentID, at(time.Hour), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second RevokeOAuthConsent: err = %v, want ErrNotFound", err)
	}
}

func testOAuthRevokeUserGrants(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "revoke-user@example.com")
	g1 := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	g2 := mustApprove(t, s, f, []string{"payments:read"}, at(time.Second))
	other := newOAuthFixture(t, s, "bystander@example.com")
	keep := mustApprove(t, s, other, []string{"payments:read"}, at(0))
	got, err := s.RevokeUserOAuthGrants(ctx, f.user.ID, at(time.Minute), "password_changed")
	if err != nil {
		t.Fatalf("RevokeUserOAuthGrants: %v", err)
	}
	want := []string{g1.ID, g2.ID}
	slices.Sort(want)
	var ids []string
	for _, g := range got {
		ids = append(ids, g.ID)
	}
	if d := diff(want, ids); d != "" {
		t.Errorf("revoked grants (-want +got):\n%s", d)
	}
	if again, err := s.RevokeUserOAuthGrants(ctx, f.user.ID, at(time.Hour), "x"); err != nil || len(again) != 0 {
		t.Errorf("second RevokeUserOAuthGrants = %d grants, %v; want none", len(again), err)
	}
	if !getGrant(t, s, keep.ID).Active(at(time.Hour)) {
		t.Error("another user's grant was revoked")
	}
	if _, err := s.GetOAuthConsent(ctx, f.user.ID, f.client.ClientID, testResource); err != nil {
		t.Errorf("consent after RevokeUserOAuthGrants: %v; want it kept", err)
	}
}

func testOAuthClientCredentialsGrant(t *testing.T, s store.Store) {
	ctx := t.Context()
	cl := newClient(at(0))
	cl.Kind, cl.SecretHash, cl.TokenEndpointAuthMethod = store.ClientKindStatic, randomHash(), "client_secret_basic"
	cl = mustClient(t, s, cl)
	g := store.OAuthGrant{
		ID: store.NewID("grt"), ClientID: cl.ClientID, Resource: testResource, Scopes: []string{"payments:read"},
		CreatedAt: at(0), ExpiresAt: at(time.Hour),
	}
	if err := s.CreateOAuthGrant(ctx, g); err != nil {
		t.Fatalf("CreateOAuthGrant: %v", err)
	}
	if d := diff(grantMS(g), getGrant(t, s, g.ID)); d != "" {
		t.Errorf("client credentials grant (-want +got):\n%s", d)
	}
	if err := s.CreateOAuthGrant(ctx, g); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOAuthGrant(same id): err = %v, want ErrConflict", err)
	}
	bad := g
	bad.ID, bad.ClientID = store.NewID("grt"), "client_unknown"
	if err := s.CreateOAuthGrant(ctx, bad); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateOAuthGrant(unknown client): err = %v, want ErrNotFound", err)
	}
}

func testOAuthRefreshRotation(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "rotate@example.com")
	g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	first := newRefresh(at(time.Second), 7*24*time.Hour)
	first.GrantID = g.ID
	stored, err := s.CreateOAuthRefreshToken(ctx, first)
	if err != nil {
		t.Fatalf("CreateOAuthRefreshToken: %v", err)
	}
	if stored.GrantID != g.ID || !stored.ExpiresAt.Equal(ms(first.ExpiresAt)) {
		t.Errorf("stored refresh token = %+v", stored)
	}
	if _, err := s.CreateOAuthRefreshToken(ctx, first); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOAuthRefreshToken(same hash): err = %v, want ErrConflict", err)
	}
	if tok, gr, err := s.GetOAuthRefreshToken(ctx, first.Hash); err != nil || tok.ID != first.ID || gr.ID != g.ID {
		t.Errorf("GetOAuthRefreshToken = %s/%s, %v", tok.ID, gr.ID, err)
	}
	if _, _, err := s.GetOAuthRefreshToken(ctx, randomHash()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOAuthRefreshToken(unknown): err = %v, want ErrNotFound", err)
	}
	if _, err := s.RotateRefreshToken(ctx, randomHash(), newRefresh(at(0), time.Hour), at(time.Minute), 30*time.Second); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateRefreshToken(unknown): err = %v, want ErrNotFound", err)
	}

	grace := 30 * time.Second
	second := newRefresh(at(time.Minute), 7*24*time.Hour)
	second.Sealed = []byte("sealed-second")
	res, err := s.RotateRefreshToken(ctx, first.Hash, second, at(time.Minute), grace)
	if err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	if res.Outcome != store.RefreshRotated || res.Next.ID != second.ID || res.Next.GrantID != g.ID || res.Token.ID != first.ID || res.Grant.ID != g.ID {
		t.Fatalf("rotation = %s next %s/%s token %s grant %s", res.Outcome, res.Next.ID, res.Next.GrantID, res.Token.ID, res.Grant.ID)
	}
	if !res.Grant.LastUsedAt.Equal(ms(at(time.Minute))) || !res.Consent.LastUsedAt.Equal(ms(at(time.Minute))) || res.Consent.ID != g.ConsentID {
		t.Errorf("after rotation: grant last used %v, consent %s last used %v; want the rotation time", res.Grant.LastUsedAt, res.Consent.ID, res.Consent.LastUsedAt)
	}
	if tok, _, _ := s.GetOAuthRefreshToken(ctx, first.Hash); !tok.RotatedAt.Equal(ms(at(time.Minute))) {
		t.Errorf("rotated token RotatedAt = %v", tok.RotatedAt)
	}

	// A retry of the first token within the grace window gets the same
	// successor back (with the sealed secret of the rotation), not a
	// sibling: the next argument is ignored.
	if len(res.Next.Sealed) != 0 {
		t.Errorf("rotation returned a sealed secret %x; only grace retries do", res.Next.Sealed)
	}
	if tok, _, _ := s.GetOAuthRefreshToken(ctx, first.Hash); tok.SuccessorID != second.ID {
		t.Errorf("rotated token SuccessorID = %q, want %q", tok.SuccessorID, second.ID)
	}
	sibling := newRefresh(at(time.Minute+10*time.Second), 7*24*time.Hour)
	res, err = s.RotateRefreshToken(ctx, first.Hash, sibling, at(time.Minute+10*time.Second), grace)
	if err != nil || res.Outcome != store.RefreshGraceRetry || res.Next.ID != second.ID || !slices.Equal(res.Next.Hash, second.Hash) {
		t.Fatalf("retry within grace = %s next %s, %v; want grace_retry with %s", res.Outcome, res.Next.ID, err, second.ID)
	}
	if !slices.Equal(res.Next.Sealed, second.Sealed) || res.Next.GrantID != g.ID || !res.Next.RotatedAt.IsZero() {
		t.Errorf("grace retry Next = %+v; want the stored successor with its sealed secret %x", res.Next, second.Sealed)
	}
	if !res.Grant.LastUsedAt.Equal(ms(at(time.Minute + 10*time.Second))) {
		t.Errorf("grace retry: grant last used %v", res.Grant.LastUsedAt)
	}
	if _, _, err := s.GetOAuthRefreshToken(ctx, sibling.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a grace retry stored a sibling successor: %v", err)
	}
	// At the very end of the window it is still a retry.
	if res, err := s.RotateRefreshToken(ctx, first.Hash, newRefresh(at(0), time.Hour), at(time.Minute+grace), grace); err != nil || res.Outcome != store.RefreshGraceRetry || res.Next.ID != second.ID {
		t.Fatalf("retry at the end of the window = %s next %s, %v", res.Outcome, res.Next.ID, err)
	}
	// The second token rotates normally.
	third := newRefresh(at(2*time.Minute), 7*24*time.Hour)
	third.Sealed = []byte("sealed-third")
	if res, err := s.RotateRefreshToken(ctx, second.Hash, third, at(2*time.Minute), grace); err != nil || res.Outcome != store.RefreshRotated {
		t.Fatalf("rotating the second token = %s, %v", res.Outcome, err)
	}
	// The first token after the grace window is a replay: the grant is revoked.
	late := newRefresh(at(5*time.Minute), time.Hour)
	res, err = s.RotateRefreshToken(ctx, first.Hash, late, at(5*time.Minute), grace)
	if err != nil || res.Outcome != store.RefreshReplayed {
		t.Fatalf("replay after grace = %s, %v; want replayed", res.Outcome, err)
	}
	if res.Grant.RevokedAt.IsZero() || res.Grant.RevokeReason != "refresh_replayed" {
		t.Errorf("grant after replay: revoked %v reason %q", res.Grant.RevokedAt, res.Grant.RevokeReason)
	}
	if _, _, err := s.GetOAuthRefreshToken(ctx, late.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("successor of a replayed token was stored: %v", err)
	}
	// Every token of the family is dead now, retries within grace too.
	for _, tok := range []store.OAuthRefreshToken{third, second} {
		res, err := s.RotateRefreshToken(ctx, tok.Hash, newRefresh(at(2*time.Minute+time.Second), time.Hour), at(2*time.Minute+time.Second), grace)
		if err != nil || res.Outcome != store.RefreshGrantRevoked {
			t.Errorf("rotating %s after the family was revoked = %s, %v; want grant_revoked", tok.ID, res.Outcome, err)
		}
	}
	// Without a grace window, any second use is a replay.
	g2 := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	a := newRefresh(at(0), time.Hour)
	a.GrantID = g2.ID
	if _, err := s.CreateOAuthRefreshToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	sealedA := newRefresh(at(time.Second), time.Hour)
	sealedA.Sealed = []byte("not kept without a grace window")
	if res, err := s.RotateRefreshToken(ctx, a.Hash, sealedA, at(time.Second), 0); err != nil || res.Outcome != store.RefreshRotated {
		t.Fatalf("rotation = %s, %v", res.Outcome, err)
	}
	if res, err := s.RotateRefreshToken(ctx, a.Hash, newRefresh(at(time.Second), time.Hour), at(time.Second), 0); err != nil || res.Outcome != store.RefreshReplayed {
		t.Errorf("immediate second use without grace = %s, %v; want replayed", res.Outcome, err)
	}
	// A rotation without a sealed successor cannot be retried: replay.
	g3 := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	b := newRefresh(at(0), time.Hour)
	b.GrantID = g3.ID
	if _, err := s.CreateOAuthRefreshToken(ctx, b); err != nil {
		t.Fatal(err)
	}
	if res, err := s.RotateRefreshToken(ctx, b.Hash, newRefresh(at(time.Second), time.Hour), at(time.Second), grace); err != nil || res.Outcome != store.RefreshRotated {
		t.Fatalf("rotation = %s, %v", res.Outcome, err)
	}
	if res, err := s.RotateRefreshToken(ctx, b.Hash, newRefresh(at(2*time.Second), time.Hour), at(2*time.Second), grace); err != nil || res.Outcome != store.RefreshReplayed {
		t.Errorf("retry of a rotation without a sealed successor = %s, %v; want replayed", res.Outcome, err)
	}
	// A sealed secret is bounded.
	g4 := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	c := newRefresh(at(0), time.Hour)
	c.GrantID = g4.ID
	if _, err := s.CreateOAuthRefreshToken(ctx, c); err != nil {
		t.Fatal(err)
	}
	huge := newRefresh(at(time.Second), time.Hour)
	huge.Sealed = make([]byte, store.MaxSealedRefreshBytes+1)
	if _, err := s.RotateRefreshToken(ctx, c.Hash, huge, at(time.Second), grace); err == nil {
		t.Error("RotateRefreshToken with an oversized sealed secret succeeded")
	}
	if tok, _, err := s.GetOAuthRefreshToken(ctx, c.Hash); err != nil || !tok.RotatedAt.IsZero() {
		t.Errorf("a refused rotation used the token: %v %v", tok.RotatedAt, err)
	}
}

// testOAuthRefreshGraceSingleSuccessor: the attack of RFC 9700 §4.14.2
// against a grace window. A stolen token retried within the window gets
// the one successor the legitimate rotation produced, however often; once
// that successor is used, or the window is over, the stolen token is a
// replay that revokes the family.
func testOAuthRefreshGraceSingleSuccessor(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "single-successor@example.com")
	grace := 30 * time.Second

	start := func() (store.OAuthGrant, store.OAuthRefreshToken) {
		t.Helper()
		g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
		tok := newRefresh(at(0), 7*24*time.Hour)
		tok.GrantID = g.ID
		if _, err := s.CreateOAuthRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		return g, tok
	}
	rotate := func(tok store.OAuthRefreshToken, when time.Duration) (store.OAuthRefreshResult, store.OAuthRefreshToken) {
		t.Helper()
		next := newRefresh(at(when), 7*24*time.Hour)
		next.Sealed = []byte("sealed " + next.ID)
		res, err := s.RotateRefreshToken(ctx, tok.Hash, next, at(when), grace)
		if err != nil {
			t.Fatalf("RotateRefreshToken at %v: %v", when, err)
		}
		return res, next
	}

	// Five retries of the stolen parent within the window: one successor.
	g, parent := start()
	res, legit := rotate(parent, time.Minute)
	if res.Outcome != store.RefreshRotated {
		t.Fatalf("legitimate rotation = %s", res.Outcome)
	}
	for i := range 5 {
		res, offered := rotate(parent, time.Minute+time.Duration(i+1)*time.Second)
		if res.Outcome != store.RefreshGraceRetry || res.Next.ID != legit.ID || !slices.Equal(res.Next.Sealed, legit.Sealed) {
			t.Fatalf("stolen retry %d = %s next %s; want grace_retry with %s", i, res.Outcome, res.Next.ID, legit.ID)
		}
		if _, _, err := s.GetOAuthRefreshToken(ctx, offered.Hash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("stolen retry %d stored a sibling: %v", i, err)
		}
	}
	// The successor is used: the parent's sealed secret is gone, so even
	// within its window the parent is now a replay.
	if res, _ := rotate(legit, time.Minute+10*time.Second); res.Outcome != store.RefreshRotated {
		t.Fatalf("rotating the successor = %s", res.Outcome)
	}
	if res, _ := rotate(parent, time.Minute+11*time.Second); res.Outcome != store.RefreshReplayed {
		t.Errorf("parent retried after its successor was used = %s; want replayed", res.Outcome)
	}
	if gr := getGrant(t, s, g.ID); gr.RevokedAt.IsZero() || gr.RevokeReason != "refresh_replayed" {
		t.Errorf("grant after the replay: revoked %v reason %q", gr.RevokedAt, gr.RevokeReason)
	}

	// After the window the parent is a replay.
	g, parent = start()
	if res, _ := rotate(parent, time.Minute); res.Outcome != store.RefreshRotated {
		t.Fatal(res.Outcome)
	}
	if res, _ := rotate(parent, time.Minute+grace+time.Millisecond); res.Outcome != store.RefreshReplayed {
		t.Errorf("parent after the window = %s; want replayed", res.Outcome)
	}
	if gr := getGrant(t, s, g.ID); gr.RevokedAt.IsZero() {
		t.Error("a replay after the window did not revoke the grant")
	}

	// The cleaner wipes sealed secrets past their window (and only those):
	// a retry can no longer be answered, so it is a replay.
	g, parent = start()
	if res, _ := rotate(parent, time.Minute); res.Outcome != store.RefreshRotated {
		t.Fatal(res.Outcome)
	}
	_, other := start()
	if res, _ := rotate(other, 2*time.Minute); res.Outcome != store.RefreshRotated {
		t.Fatal(res.Outcome)
	}
	n, err := s.DeleteExpiredOAuth(ctx, at(time.Minute+grace+time.Second), at(0), 100)
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredOAuth = %d, %v; want 1 (one sealed successor wiped)", n, err)
	}
	if res, _ := rotate(other, 2*time.Minute+time.Second); res.Outcome != store.RefreshGraceRetry {
		t.Errorf("retry whose sealed successor is within its window = %s; want grace_retry (the cleaner wiped too much)", res.Outcome)
	}
	if res, _ := rotate(parent, time.Minute+time.Second); res.Outcome != store.RefreshReplayed {
		t.Errorf("retry whose sealed successor was wiped = %s; want replayed", res.Outcome)
	}
	if gr := getGrant(t, s, g.ID); gr.RevokedAt.IsZero() {
		t.Error("the replay did not revoke the grant")
	}
}

func testOAuthRefreshExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "refresh-expiry@example.com")
	g := newGrant(f, []string{"payments:read"}, at(0))
	g.ExpiresAt = at(24 * time.Hour)
	_, g, err := s.ApproveOAuthRequest(ctx, "", nil, g)
	if err != nil {
		t.Fatal(err)
	}
	// The idle expiry is capped at the grant's absolute expiry.
	tok := newRefresh(at(0), 7*24*time.Hour)
	tok.GrantID = g.ID
	stored, err := s.CreateOAuthRefreshToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.ExpiresAt.Equal(ms(g.ExpiresAt)) {
		t.Errorf("refresh expiry %v not capped at the grant's %v", stored.ExpiresAt, g.ExpiresAt)
	}
	next := newRefresh(at(time.Hour), 7*24*time.Hour)
	res, err := s.RotateRefreshToken(ctx, tok.Hash, next, at(time.Hour), 0)
	if err != nil || res.Outcome != store.RefreshRotated || !res.Next.ExpiresAt.Equal(ms(g.ExpiresAt)) {
		t.Fatalf("rotation = %s next expires %v, %v; want capped at %v", res.Outcome, res.Next.ExpiresAt, err, g.ExpiresAt)
	}
	// Past the grant's absolute lifetime.
	if res, err := s.RotateRefreshToken(ctx, next.Hash, newRefresh(at(25*time.Hour), time.Hour), at(25*time.Hour), 0); err != nil || res.Outcome != store.RefreshGrantExpired {
		t.Errorf("rotation after the grant expired = %s, %v; want grant_expired", res.Outcome, err)
	}
	// Past the token's idle expiry.
	g2 := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	idle := newRefresh(at(0), time.Hour)
	idle.GrantID = g2.ID
	if _, err := s.CreateOAuthRefreshToken(ctx, idle); err != nil {
		t.Fatal(err)
	}
	if res, err := s.RotateRefreshToken(ctx, idle.Hash, newRefresh(at(2*time.Hour), time.Hour), at(2*time.Hour), 0); err != nil || res.Outcome != store.RefreshExpired {
		t.Errorf("rotation after idle expiry = %s, %v; want expired", res.Outcome, err)
	}
	if gr := getGrant(t, s, g2.ID); !gr.RevokedAt.IsZero() {
		t.Error("an expired refresh token revoked its grant")
	}
}

// testOAuthRefreshRotateConcurrent: 20 concurrent rotations of one token
// (with and without a grace window): exactly one rotation and at most one
// live successor. With a window every other caller gets that successor;
// without one (where SQLite must serialise through BEGIN IMMEDIATE) the
// first replay revokes the family.
func testOAuthRefreshRotateConcurrent(t *testing.T, s store.Store) {
	for _, grace := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("grace=%v", grace), func(t *testing.T) {
			f := newOAuthFixture(t, s, fmt.Sprintf("rotate-race-%d@example.com", grace))
			g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
			tok := newRefresh(at(0), time.Hour)
			tok.GrantID = g.ID
			if _, err := s.CreateOAuthRefreshToken(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			const n = 20
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				outcomes = map[string]int{}
				offered  []store.OAuthRefreshToken
				results  []store.OAuthRefreshResult
				failures []error
				startGun = make(chan struct{})
			)
			for range n {
				wg.Go(func() {
					next := newRefresh(at(time.Second), time.Hour)
					next.Sealed = []byte("sealed " + next.ID)
					<-startGun
					res, err := s.RotateRefreshToken(t.Context(), tok.Hash, next, at(time.Second), grace)
					mu.Lock()
					defer mu.Unlock()
					offered = append(offered, next)
					if err != nil {
						failures = append(failures, err)
						return
					}
					outcomes[res.Outcome]++
					results = append(results, res)
				})
			}
			close(startGun)
			wg.Wait()
			if len(failures) > 0 {
				t.Fatalf("concurrent rotations failed (are SQLite transactions BEGIN IMMEDIATE?): %v", failures)
			}
			if outcomes[store.RefreshRotated] != 1 {
				t.Errorf("outcomes %v: want exactly one rotation", outcomes)
			}
			// Exactly one of the offered successors was stored.
			stored := 0
			for _, o := range offered {
				if _, _, err := s.GetOAuthRefreshToken(t.Context(), o.Hash); err == nil {
					stored++
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Fatal(err)
				}
			}
			if stored != 1 {
				t.Errorf("%d successors stored, want exactly 1", stored)
			}
			if grace == 0 {
				// The first replay revokes the grant; the ones after it find it revoked.
				if outcomes[store.RefreshReplayed] != 1 || outcomes[store.RefreshGrantRevoked] != n-2 {
					t.Errorf("outcomes %v: want one replay and %d grant_revoked", outcomes, n-2)
				}
				if gr := getGrant(t, s, g.ID); gr.RevokedAt.IsZero() {
					t.Error("grant not revoked")
				}
				return
			}
			if outcomes[store.RefreshGraceRetry] != n-1 {
				t.Errorf("outcomes %v: want %d grace retries", outcomes, n-1)
			}
			var successor store.OAuthRefreshToken
			for _, r := range results {
				if r.Outcome == store.RefreshRotated {
					successor = r.Next
				}
			}
			for _, r := range results {
				if r.Next.ID != successor.ID || !slices.Equal(r.Next.Hash, successor.Hash) {
					t.Errorf("%s got successor %s, want the single successor %s", r.Outcome, r.Next.ID, successor.ID)
				}
				if r.Outcome == store.RefreshGraceRetry && !slices.Equal(r.Next.Sealed, []byte("sealed "+successor.ID)) {
					t.Errorf("grace retry got sealed %q, want the rotation's", r.Next.Sealed)
				}
			}
			if gr := getGrant(t, s, g.ID); !gr.RevokedAt.IsZero() {
				t.Error("concurrent refreshes within the grace window revoked the grant")
			}
		})
	}
}

func testOAuthTouchGrant(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "touch-grant@example.com")
	g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	if err := s.TouchOAuthGrant(ctx, g.ID, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchOAuthGrant(ctx, g.ID, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := getGrant(t, s, g.ID); !got.LastUsedAt.Equal(ms(at(time.Hour))) {
		t.Errorf("grant last used %v, want %v (never backwards)", got.LastUsedAt, ms(at(time.Hour)))
	}
	if c, err := s.GetOAuthConsentByID(ctx, g.ConsentID); err != nil || !c.LastUsedAt.Equal(ms(at(time.Hour))) {
		t.Errorf("consent last used %v (%v), want %v", c.LastUsedAt, err, ms(at(time.Hour)))
	}
	if err := s.TouchOAuthGrant(ctx, "grt_unknown", at(time.Hour)); err != nil {
		t.Errorf("TouchOAuthGrant(unknown) = %v, want nil", err)
	}
}

func testOAuthClientDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "cascade@example.com")
	q := newRequest(f, at(0))
	if err := s.CreateOAuthRequest(ctx, q); err != nil {
		t.Fatal(err)
	}
	g := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	tok := newRefresh(at(0), time.Hour)
	tok.GrantID = g.ID
	if _, err := s.CreateOAuthRefreshToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteOAuthClient(ctx, f.client.ClientID); err != nil {
		t.Fatalf("DeleteOAuthClient: %v", err)
	}
	if _, err := s.GetOAuthRequest(ctx, q.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pending request of a deleted client: %v", err)
	}
	if _, err := s.GetOAuthGrant(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of a deleted client: %v", err)
	}
	if _, err := s.GetOAuthConsentByID(ctx, g.ConsentID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("consent of a deleted client: %v", err)
	}
	if _, _, err := s.GetOAuthRefreshToken(ctx, tok.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token of a deleted client: %v", err)
	}
}

func testOAuthDeleteExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "expired@example.com")
	oldReq := newRequest(f, at(0)) // expires at(10m)
	newReq := newRequest(f, at(time.Hour))
	for _, q := range []store.OAuthRequest{oldReq, newReq} {
		if err := s.CreateOAuthRequest(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	unredeemed := mustApprove(t, s, f, []string{"a"}, at(0)) // code expires at(10m)
	live := mustApprove(t, s, f, []string{"a"}, at(0))
	if _, err := s.RedeemOAuthCode(ctx, live.CodeHash, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	revoked := mustApprove(t, s, f, []string{"a"}, at(0))
	if _, err := s.RedeemOAuthCode(ctx, revoked.CodeHash, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RevokeOAuthGrant(ctx, revoked.ID, at(2*time.Minute), "x"); err != nil {
		t.Fatal(err)
	}
	staleTok := newRefresh(at(0), 5*time.Minute)
	staleTok.GrantID = live.ID
	freshTok := newRefresh(at(0), 7*24*time.Hour)
	freshTok.GrantID = live.ID
	for _, tok := range []store.OAuthRefreshToken{staleTok, freshTok} {
		if _, err := s.CreateOAuthRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	now, cutoff := at(time.Hour+time.Minute), at(time.Hour)
	total := 0
	for {
		n, err := s.DeleteExpiredOAuth(ctx, now, cutoff, 1)
		if err != nil {
			t.Fatalf("DeleteExpiredOAuth: %v", err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != 4 {
		t.Errorf("deleted %d rows, want 4 (a request, an unredeemed grant, a revoked grant, a stale refresh token)", total)
	}
	if _, err := s.GetOAuthRequest(ctx, oldReq.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired request kept: %v", err)
	}
	if _, err := s.GetOAuthRequest(ctx, newReq.ID); err != nil {
		t.Errorf("live request deleted: %v", err)
	}
	for _, g := range []store.OAuthGrant{unredeemed, revoked} {
		if _, err := s.GetOAuthGrant(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("dead grant %s kept: %v", g.ID, err)
		}
	}
	getGrant(t, s, live.ID)
	if _, _, err := s.GetOAuthRefreshToken(ctx, staleTok.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stale refresh token kept: %v", err)
	}
	if _, _, err := s.GetOAuthRefreshToken(ctx, freshTok.Hash); err != nil {
		t.Errorf("live refresh token deleted: %v", err)
	}
	if n, err := s.DeleteExpiredOAuth(ctx, now, cutoff, 0); n != 0 || err != nil {
		t.Errorf("DeleteExpiredOAuth(limit 0) = %d, %v", n, err)
	}
}

func testOAuthHostileInput(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "hostile-oauth@example.com")
	for _, id := range []string{"\x00", "\xff\xfe", "areq_' OR '1'='1", ""} {
		if _, err := s.GetOAuthRequest(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetOAuthRequest(%q): err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.TakeOAuthRequest(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TakeOAuthRequest(%q): err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.GetOAuthGrant(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetOAuthGrant(%q): err = %v, want ErrNotFound", id, err)
		}
		if _, _, err := s.RevokeOAuthConsent(ctx, f.user.ID, id, at(0), "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeOAuthConsent(%q): err = %v, want ErrNotFound", id, err)
		}
	}
	q := newRequest(f, at(0))
	q.State = "bad\x00state"
	if err := s.CreateOAuthRequest(ctx, q); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOAuthRequest with a NUL byte: err = %v, want a validation error", err)
	}
	q = newRequest(f, at(0))
	q.Scopes = []string{"two words"}
	if err := s.CreateOAuthRequest(ctx, q); err == nil {
		t.Error("CreateOAuthRequest with a scope containing a space succeeded")
	}
	h := sha256.Sum256([]byte("x"))
	if _, err := s.RotateRefreshToken(ctx, h[:], newRefresh(at(0), time.Hour), at(0), 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateRefreshToken(unknown) = %v", err)
	}
}

// testOAuthGrantClaims: a grant keeps the custom claims its access tokens
// carry and the session they came from, and every way back to the grant
// (redemption, refresh lookup, rotation, revocation) returns them
// unchanged; another approval keeps its own; claims without their session,
// or anything but a bounded JSON object, are refused and nothing is
// stored.
func testOAuthGrantClaims(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "claims@example.com")
	claims := `{"organization_id":"org_1","roles":["auditor","admin"],"seats":12,"beta":true}`
	g := newGrant(f, []string{"payments:read"}, at(0))
	g.Claims, g.SessionID = claims, "ses_first"
	same := func(what string, got store.OAuthGrant, claims, sessionID string) {
		t.Helper()
		if got.Claims != claims || got.SessionID != sessionID {
			t.Errorf("%s: claims %q session %q, want %q %q", what, got.Claims, got.SessionID, claims, sessionID)
		}
	}
	_, stored, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:read"}, g)
	if err != nil {
		t.Fatalf("ApproveOAuthRequest: %v", err)
	}
	same("ApproveOAuthRequest", stored, claims, "ses_first")
	same("GetOAuthGrant", getGrant(t, s, g.ID), claims, "ses_first")
	redeemed, err := s.RedeemOAuthCode(ctx, g.CodeHash, at(time.Second))
	if err != nil {
		t.Fatalf("RedeemOAuthCode: %v", err)
	}
	same("RedeemOAuthCode", redeemed, claims, "ses_first")
	first := newRefresh(at(time.Second), 7*24*time.Hour)
	first.GrantID = g.ID
	if _, err := s.CreateOAuthRefreshToken(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, gr, err := s.GetOAuthRefreshToken(ctx, first.Hash); err != nil {
		t.Errorf("GetOAuthRefreshToken: %v", err)
	} else {
		same("GetOAuthRefreshToken", gr, claims, "ses_first")
	}
	res, err := s.RotateRefreshToken(ctx, first.Hash, newRefresh(at(time.Minute), 7*24*time.Hour), at(time.Minute), 30*time.Second)
	if err != nil || res.Outcome != store.RefreshRotated {
		t.Errorf("RotateRefreshToken: %s, %v", res.Outcome, err)
	}
	same("RotateRefreshToken", res.Grant, claims, "ses_first")

	// A later approval (a new sign-in with other claims) has its own;
	// the first grant keeps what it was approved with.
	g2 := newGrant(f, []string{"payments:read"}, at(2*time.Minute))
	g2.Claims, g2.SessionID = `{"organization_id":"org_2"}`, "ses_second"
	if _, stored, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:read"}, g2); err != nil {
		t.Fatalf("second approval: %v", err)
	} else {
		same("second approval", stored, g2.Claims, "ses_second")
	}
	same("first grant after the second approval", getGrant(t, s, g.ID), claims, "ses_first")
	revoked, _, err := s.RevokeOAuthGrant(ctx, g2.ID, at(3*time.Minute), "test")
	if err != nil {
		t.Errorf("RevokeOAuthGrant: %v", err)
	}
	same("RevokeOAuthGrant", revoked, g2.Claims, "ses_second")
	// No claims: "", with or without a session.
	if got := mustApprove(t, s, f, []string{"payments:read"}, at(4*time.Minute)); got.Claims != "" || got.SessionID != "" {
		t.Errorf("grant without claims: claims %q session %q", got.Claims, got.SessionID)
	} else {
		same("GetOAuthGrant without claims", getGrant(t, s, got.ID), "", "")
	}
	plain := newGrant(f, []string{"payments:read"}, at(4*time.Minute))
	plain.SessionID = "ses_plain"
	if _, stored, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:read"}, plain); err != nil {
		t.Errorf("approval from a session without claims: %v", err)
	} else {
		same("approval from a session without claims", stored, "", "ses_plain")
	}

	for name, bad := range map[string]string{
		"not JSON":  `{"organization_id":`,
		"an array":  `["org_1"]`,
		"a string":  `"org_1"`,
		"null":      `null`,
		"too large": `{"blob":"` + strings.Repeat("x", store.MaxOAuthGrantClaimsBytes) + `"}`,
		// Valid claims, but no sign-in they could live as long as.
		"no session": `{"organization_id":"org_1"}`,
	} {
		g := newGrant(f, []string{"payments:read"}, at(5*time.Minute))
		g.Claims = bad
		if name != "no session" {
			g.SessionID = "ses_bad"
		}
		if _, _, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:read"}, g); err == nil {
			t.Errorf("%s: ApproveOAuthRequest accepted claims", name)
		}
		if _, err := s.GetOAuthGrant(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the refused grant was stored (%v)", name, err)
		}
		cc := store.OAuthGrant{ID: store.NewID("grt"), ClientID: f.client.ClientID, Resource: testResource, Claims: bad,
			SessionID: g.SessionID, CreatedAt: at(0), ExpiresAt: at(time.Hour)}
		if err := s.CreateOAuthGrant(ctx, cc); err == nil {
			t.Errorf("%s: CreateOAuthGrant accepted claims", name)
		}
	}
}

// testOAuthDropGrantClaims: dropping a grant's claims (its sign-in ended)
// empties them for good — every later read sees none, the session id
// stays for the record — and reports true exactly once, also under
// concurrent callers; other grants keep theirs; a grant without claims
// or an unknown id reports false.
func testOAuthDropGrantClaims(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := newOAuthFixture(t, s, "drop-claims@example.com")
	approve := func(claims, sessionID string) store.OAuthGrant {
		t.Helper()
		g := newGrant(f, []string{"payments:read"}, at(0))
		g.Claims, g.SessionID = claims, sessionID
		_, stored, err := s.ApproveOAuthRequest(ctx, "", []string{"payments:read"}, g)
		if err != nil {
			t.Fatalf("ApproveOAuthRequest: %v", err)
		}
		return stored
	}
	g := approve(`{"roles":["auditor"]}`, "ses_gone")
	other := approve(`{"roles":["auditor"]}`, "ses_live")

	const callers = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		dropped int
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.DropOAuthGrantClaims(ctx, g.ID)
			if err != nil {
				t.Errorf("DropOAuthGrantClaims: %v", err)
			}
			if ok {
				mu.Lock()
				dropped++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if dropped != 1 {
		t.Errorf("%d of %d concurrent calls report dropping the claims, want exactly 1", dropped, callers)
	}
	if got := getGrant(t, s, g.ID); got.Claims != "" || got.SessionID != "ses_gone" || !got.RevokedAt.IsZero() {
		t.Errorf("grant after the drop: claims %q session %q revoked %v; want no claims, the session kept, still live", got.Claims, got.SessionID, got.RevokedAt)
	}
	redeemed, err := s.RedeemOAuthCode(ctx, g.CodeHash, at(time.Second))
	if err != nil || redeemed.Claims != "" {
		t.Errorf("RedeemOAuthCode after the drop: claims %q, %v", redeemed.Claims, err)
	}
	if ok, err := s.DropOAuthGrantClaims(ctx, g.ID); ok || err != nil {
		t.Errorf("second drop = %v, %v; want false", ok, err)
	}
	if got := getGrant(t, s, other.ID); got.Claims != `{"roles":["auditor"]}` {
		t.Errorf("another grant's claims became %q", got.Claims)
	}
	none := mustApprove(t, s, f, []string{"payments:read"}, at(0))
	for name, id := range map[string]string{"no claims": none.ID, "unknown": "grt_unknown", "empty": "", "NUL": "grt_\x00"} {
		if ok, err := s.DropOAuthGrantClaims(ctx, id); ok || err != nil {
			t.Errorf("DropOAuthGrantClaims(%s) = %v, %v; want false, nil", name, ok, err)
		}
	}
}
