// Package conformance is the test suite every store.Store implementation
// must pass (modelled on Dex's storage/conformance). A backend's test calls
//
//	conformance.Run(t, func(t *testing.T) store.Store { return newEmptyStore(t) })
//
// newStore must return an empty, migrated store private to t and release it
// when t ends. Subtests may run concurrently with nothing else but
// themselves; the suite starts its own goroutines for the concurrency tests.
package conformance

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Run runs the whole suite, one subtest per behaviour, each on a fresh
// store from newStore.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"UserCRUD", testUserCRUD},
		{"UserEmailCaseInsensitive", testUserEmailCaseInsensitive},
		{"UserConflict", testUserConflict},
		{"UserNotFound", testUserNotFound},
		{"UserInvalidRoles", testUserInvalidRoles},
		{"UpdateUser", testUpdateUser},
		{"UpdateUserErrors", testUpdateUserErrors},
		{"UpdateUserConcurrent", testUpdateUserConcurrent},
		{"APIKeyCRUD", testAPIKeyCRUD},
		{"APIKeyConflict", testAPIKeyConflict},
		{"APIKeyNotFound", testAPIKeyNotFound},
		{"APIKeyUnknownUser", testAPIKeyUnknownUser},
		{"RevokeAPIKey", testRevokeAPIKey},
		{"TouchAPIKeys", testTouchAPIKeys},
		{"TouchAPIKeysConcurrent", testTouchAPIKeysConcurrent},
		{"DeleteAPIKeysBefore", testDeleteAPIKeysBefore},
		{"DeleteAPIKeysBeforeConcurrent", testDeleteAPIKeysBeforeConcurrent},
		{"SessionCRUD", testSessionCRUD},
		{"SessionErrors", testSessionErrors},
		{"TouchSession", testTouchSession},
		{"SessionKeyRoundTrip", testSessionKeyRoundTrip},
		{"RevokeSessionWithKeys", testRevokeSessionWithKeys},
		{"RevokeSessionConcurrent", testRevokeSessionConcurrent},
		{"SessionKeyRacesRevocation", testSessionKeyRacesRevocation},
		{"RevokeUserSessions", testRevokeUserSessions},
		{"RevokeUserSessionsConcurrent", testRevokeUserSessionsConcurrent},
		{"ExpireSessions", testExpireSessions},
		{"SessionEndReason", testSessionEndReason},
		{"ExpireSessionsConcurrent", testExpireSessionsConcurrent},
		{"DeleteSessionsBefore", testDeleteSessionsBefore},
		{"DeleteSessionsBeforeConcurrent", testDeleteSessionsBeforeConcurrent},
		{"AuditAppendList", testAuditAppendList},
		{"AuditFilters", testAuditFilters},
		{"AuditPagination", testAuditPagination},
		{"AuditLimits", testAuditLimits},
		{"AuditDetails", testAuditDetails},
		{"AuditHostileStrings", testAuditHostileStrings},
		{"AuditHostileText", testHostileAuditText},
		{"HostileIdentifiers", testHostileIdentifiers},
		{"LedgerSeedListBalance", testLedgerSeedListBalance},
		{"LedgerInsertConflict", testLedgerInsertConflict},
		{"ApplyTransfer", testApplyTransfer},
		{"ApplyTransferInsufficientFunds", testApplyTransferInsufficientFunds},
		{"ApplyTransferIdempotency", testApplyTransferIdempotency},
		{"ApplyTransferUnknownUsers", testApplyTransferUnknownUsers},
		{"ApplyTransferConcurrent", testApplyTransferConcurrent},
		{"ApplyTransferConcurrentReplay", testApplyTransferConcurrentReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
	RunSigningKeys(t, func(t *testing.T) store.SigningKeyStore { return newStore(t) })
	RunClients(t, func(t *testing.T) store.ClientStore { return newStore(t) })
	RunIdentities(t, func(t *testing.T) IdentityBackend { return newStore(t) })
	RunOAuth(t, newStore)
	RunLoginFlows(t, func(t *testing.T) store.LoginFlowStore { return newStore(t) })
}

// base is a fixed instant with sub-millisecond digits, to check that the
// store keeps millisecond precision.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// at returns base + d.
func at(d time.Duration) time.Time { return base.Add(d) }

// ms is t at the precision the store keeps.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// cmpOpts: nil and empty slices/maps are equal; time.Time compares with
// its Equal method (location-independent).
var cmpOpts = cmp.Options{cmpopts.EquateEmpty()}

func diff(want, got any) string { return cmp.Diff(want, got, cmpOpts) }

func userMS(u store.User) store.User {
	u.CreatedAt, u.UpdatedAt = ms(u.CreatedAt), ms(u.UpdatedAt)
	return u
}

func keyMS(k store.APIKey) store.APIKey {
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = ms(k.CreatedAt), ms(k.ExpiresAt), ms(k.LastUsedAt), ms(k.RevokedAt)
	return k
}

func randomHash() []byte {
	var b [32]byte
	rand.Read(b[:])
	h := sha256.Sum256(b[:])
	return h[:]
}

// mustUser creates a user with the given email and returns it as stored.
func mustUser(t *testing.T, s store.Store, email string) store.User {
	t.Helper()
	u := store.User{
		ID:          store.NewID("usr"),
		Email:       email,
		DisplayName: "User " + email,
		Roles:       []string{"user"},
		CreatedAt:   at(0),
		UpdatedAt:   at(0),
	}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return userMS(u)
}

// mustKey creates an API key for userID created at created.
func mustKey(t *testing.T, s store.Store, userID, name string, created time.Time) store.APIKey {
	t.Helper()
	k := store.APIKey{
		ID:        store.NewID("key"),
		UserID:    userID,
		Name:      name,
		Prefix:    "mcpg_" + name,
		Hash:      randomHash(),
		Kind:      store.KeyKindManual,
		Scopes:    []string{"mcp:tools"},
		CreatedAt: created,
	}
	if err := s.CreateAPIKey(t.Context(), k); err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", name, err)
	}
	return keyMS(k)
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
