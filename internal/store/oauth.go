package store

import (
	"context"
	"errors"
	"time"
)

// ErrReplayed: a single-use secret (an authorization code) was presented
// again after its first use. The store returns it together with the row,
// so the caller can revoke what the first use produced.
var ErrReplayed = errors.New("store: already used")

// OAuthRequest is a pending authorization request (RFC 6749 §4.1.1): what
// a client asked for at the authorization endpoint, kept server-side while
// the user logs in and consents. It is single use and short-lived. Its ID
// travels in URLs (the login page's return_to, the consent page): it is a
// handle, not a credential — approving it still needs the user's session.
type OAuthRequest struct {
	ID                  string // "areq_…"
	ClientID            string
	RedirectURI         string // the effective redirect URI (the registered one when the request named none)
	RedirectURIProvided bool   // the request carried redirect_uri (RFC 6749 §4.1.3: the token request must repeat it)
	Scopes              []string
	Resource            string // RFC 8707 resource indicator
	State               string // returned unchanged
	CodeChallenge       string // RFC 7636, method S256 (the only one accepted)
	Nonce               string // OIDC
	Prompt              string // OIDC prompt ("", "consent", "login")
	CreatedAt           time.Time
	ExpiresAt           time.Time
}

// OAuthConsent is what a user allowed a client to do at a resource: one
// row per user, client and resource (a "connected app"). Scopes only grow
// by consent; the row goes away when the user revokes the app.
type OAuthConsent struct {
	ID         string // "ocn_…"
	UserID     string
	ClientID   string
	Resource   string
	Scopes     []string
	CreatedAt  time.Time // first authorization
	UpdatedAt  time.Time // last change of Scopes
	LastUsedAt time.Time // last token issued under it (code exchange or refresh); zero: never
}

// OAuthGrant is one authorization: the authorization code the user's
// approval produced, and everything issued from it — the refresh-token
// family and every access token (access tokens carry the grant id as their
// "gid" claim). Revoking the grant revokes all of them. A client
// credentials grant (RFC 6749 §4.4) has no user, no consent and no code: it
// stands for one access token.
type OAuthGrant struct {
	ID        string // "grt_…"
	ConsentID string // "" for client credentials (and after the consent was revoked)
	UserID    string // "" for client credentials
	ClientID  string
	Resource  string
	Scopes    []string
	Nonce     string    // OIDC nonce of the authorization request
	AuthTime  time.Time // when the user authenticated (OIDC auth_time)
	// Claims is a JSON object of the custom claims the grant's access
	// tokens carry (taken from the user's browser session when the user
	// approved); "" when none. At most MaxOAuthGrantClaimsBytes. A grant
	// with claims names the session they came from (SessionID).
	Claims string
	// SessionID is the browser session ("ses_…") the user approved from:
	// the sign-in that vouched for Claims, which the grant's tokens carry
	// only while that session lives. "" when no browser session approved
	// (client credentials, direct login) and for grants stored before the
	// column existed. Not a reference the store enforces: sessions are
	// deleted after their retention, grants may outlive them.
	SessionID string

	// The authorization code (RFC 6749 §4.1.2): only its SHA-256 is kept.
	CodeHash            []byte // nil for client credentials
	CodeChallenge       string // RFC 7636 S256 challenge
	RedirectURI         string
	RedirectURIProvided bool
	CodeExpiresAt       time.Time
	CodeRedeemedAt      time.Time // zero: not redeemed yet

	CreatedAt    time.Time
	ExpiresAt    time.Time // absolute end of the grant (refresh absolute lifetime, or the access token's expiry)
	LastUsedAt   time.Time
	RevokedAt    time.Time // zero: live
	RevokeReason string
}

// Active reports whether the grant is neither revoked nor past its
// absolute lifetime at now.
func (g OAuthGrant) Active(now time.Time) bool {
	return g.RevokedAt.IsZero() && now.Before(g.ExpiresAt)
}

// OAuthRefreshToken is one refresh token of a grant's family. Only its
// SHA-256 is kept. A token is used once: rotation marks it (RotatedAt) and
// adds its one successor (SuccessorID).
type OAuthRefreshToken struct {
	ID          string // "ort_…"
	GrantID     string
	Hash        []byte // SHA-256 of the token, 32 bytes, unique
	CreatedAt   time.Time
	ExpiresAt   time.Time // idle expiry, never after the grant's ExpiresAt
	RotatedAt   time.Time // zero: not used yet
	SuccessorID string    // the token its rotation created; "" while unused

	// Sealed is the token's own secret encrypted by the caller (the
	// store never sees a refresh token in clear, and cannot open this).
	// It is only set on the next argument of RotateRefreshToken and on
	// OAuthRefreshResult.Next of a RefreshGraceRetry: the store keeps it
	// on the rotated parent's row for the grace window, so that a retry
	// gets the same successor back, and wipes it after. Elsewhere nil.
	Sealed []byte
}

// MaxSealedRefreshBytes bounds OAuthRefreshToken.Sealed.
const MaxSealedRefreshBytes = 1024

// MaxOAuthGrantClaimsBytes bounds OAuthGrant.Claims. (A session keeps at
// most 32 claims of at most 1 KiB; an access token holds far less.)
const MaxOAuthGrantClaimsBytes = 64 << 10

// Outcomes of RotateRefreshToken.
const (
	// RefreshRotated: the token was live; it is now used and Next is its successor.
	RefreshRotated = "rotated"
	// RefreshGraceRetry: the token had been rotated at most the grace
	// window ago and its successor is still unused (a client retrying a
	// refresh whose answer it lost, or concurrent refreshes): nothing is
	// stored, Next is the successor the rotation created — the same one
	// for every retry, with the Sealed secret that rotation was given.
	// A rotated token never has more than one successor.
	RefreshGraceRetry = "grace_retry"
	// RefreshReplayed: the token had been rotated longer ago than the
	// grace window, or its successor has been used since, or the rotation
	// kept no sealed successor (grace 0): someone replays an old token.
	// The whole grant was revoked in the same transaction (RFC 9700
	// §4.14.2).
	RefreshReplayed = "replayed"
	// RefreshExpired: the token passed its idle expiry.
	RefreshExpired = "expired"
	// RefreshGrantRevoked: the grant was revoked earlier.
	RefreshGrantRevoked = "grant_revoked"
	// RefreshGrantExpired: the grant passed its absolute lifetime.
	RefreshGrantExpired = "grant_expired"
)

// OAuthRefreshResult is what RotateRefreshToken found and did.
type OAuthRefreshResult struct {
	Outcome string            // Refresh*
	Token   OAuthRefreshToken // the presented token, as it was before the call
	Grant   OAuthGrant        // its grant, as stored after the call
	Next    OAuthRefreshToken // the successor (RefreshRotated, RefreshGraceRetry only), as stored; with Sealed on RefreshGraceRetry
	Consent OAuthConsent      // the grant's consent when it has one (for last-use bookkeeping)
}

// OAuthStore persists the authorization server's state: pending
// authorization requests, consents, grants (with their authorization
// code) and refresh tokens. Secrets (codes, refresh tokens) are stored as
// SHA-256 only (plus, for the refresh grace window, a rotated token's
// successor encrypted by the caller, see RotateRefreshToken). Grants, consents and pending requests belong to a client
// (oauth_clients) and, except for client credentials grants, a user:
// deleting either deletes them.
type OAuthStore interface {
	// CreateOAuthRequest stores a pending authorization request.
	// ErrNotFound when its client does not exist; ErrConflict on a taken id.
	CreateOAuthRequest(ctx context.Context, r OAuthRequest) error
	// GetOAuthRequest returns a pending request (expired ones too: the
	// caller decides); ErrNotFound.
	GetOAuthRequest(ctx context.Context, id string) (OAuthRequest, error)
	// TakeOAuthRequest deletes a pending request and returns it: of
	// concurrent callers exactly one gets it, the others ErrNotFound.
	TakeOAuthRequest(ctx context.Context, id string) (OAuthRequest, error)

	// GetOAuthConsent returns the consent of a user for a client and
	// resource; ErrNotFound.
	GetOAuthConsent(ctx context.Context, userID, clientID, resource string) (OAuthConsent, error)
	// GetOAuthConsentByID returns a consent by id; ErrNotFound.
	GetOAuthConsentByID(ctx context.Context, id string) (OAuthConsent, error)
	// ListOAuthConsents returns a user's consents, most recently used first.
	ListOAuthConsents(ctx context.Context, userID string) ([]OAuthConsent, error)

	// ApproveOAuthRequest records a user's approval in one transaction:
	// it takes the pending request requestID (ErrNotFound when it is gone:
	// single use; requestID "" when there is none, as when consent was
	// given before), creates or extends the consent of g.UserID for
	// g.ClientID and g.Resource with consentScopes (union with what was
	// there; the consent's id is kept, its ID is ignored) and stores g
	// (its authorization code) with g.ConsentID set to that consent.
	// It returns the consent and the grant as stored. ErrConflict when the
	// code hash or grant id is taken; ErrNotFound when the user or client
	// does not exist.
	ApproveOAuthRequest(ctx context.Context, requestID string, consentScopes []string, g OAuthGrant) (OAuthConsent, OAuthGrant, error)
	// CreateOAuthGrant stores a grant without a consent (client
	// credentials). ErrConflict / ErrNotFound as above.
	CreateOAuthGrant(ctx context.Context, g OAuthGrant) error
	// GetOAuthGrant returns a grant; ErrNotFound.
	GetOAuthGrant(ctx context.Context, id string) (OAuthGrant, error)
	// RedeemOAuthCode marks the authorization code with this hash redeemed
	// at `at` and returns its grant. Of concurrent callers exactly one
	// succeeds. When the code was redeemed before, it returns the grant
	// and ErrReplayed (RFC 6749 §4.1.2: the caller revokes the grant).
	// ErrNotFound for an unknown code. Expiry is the caller's to check.
	RedeemOAuthCode(ctx context.Context, codeHash []byte, at time.Time) (OAuthGrant, error)
	// RevokeOAuthGrant revokes a grant and with it its refresh tokens (and,
	// through the "gid" check, its access tokens). It returns the grant as
	// stored and whether this call revoked it (false: it was revoked
	// before; the first time and reason are kept). ErrNotFound.
	RevokeOAuthGrant(ctx context.Context, id string, at time.Time, reason string) (OAuthGrant, bool, error)
	// RevokeOAuthConsent deletes a user's consent and revokes every grant
	// made under it, in one transaction, and returns the consent and the
	// grants this call revoked. ErrNotFound when the user has no such
	// consent.
	RevokeOAuthConsent(ctx context.Context, userID, consentID string, at time.Time, reason string) (OAuthConsent, []OAuthGrant, error)
	// RevokeUserOAuthGrants revokes every live grant of a user (consents
	// stay) and returns them.
	RevokeUserOAuthGrants(ctx context.Context, userID string, at time.Time, reason string) ([]OAuthGrant, error)

	// CreateOAuthRefreshToken stores the first refresh token of a grant.
	// ErrNotFound when the grant does not exist or is revoked; ErrConflict
	// on a taken hash or id. ExpiresAt is capped at the grant's ExpiresAt.
	CreateOAuthRefreshToken(ctx context.Context, t OAuthRefreshToken) (OAuthRefreshToken, error)
	// GetOAuthRefreshToken finds a refresh token by hash, with its grant;
	// ErrNotFound.
	GetOAuthRefreshToken(ctx context.Context, hash []byte) (OAuthRefreshToken, OAuthGrant, error)
	// RotateRefreshToken uses the refresh token with this hash at `at`, in
	// one transaction (concurrent rotations of one token are serialised:
	// exactly one of them rotates): see the Refresh* outcomes. On
	// RefreshRotated, next (GrantID ignored, ExpiresAt capped at the
	// grant's) is stored as the token's only successor and, when grace >
	// 0, next.Sealed is kept on the rotated token until at+grace (wiped
	// earlier when the successor rotates; DeleteExpiredOAuth wipes it
	// after); the sealed secrets of the family's older tokens are wiped.
	// On RefreshGraceRetry next is ignored and Next is that successor. On
	// both, the grant's and consent's last use move to `at`. On
	// RefreshReplayed the grant is revoked (reason "refresh_replayed")
	// and the family's sealed secrets are wiped. ErrNotFound for an
	// unknown token.
	RotateRefreshToken(ctx context.Context, hash []byte, next OAuthRefreshToken, at time.Time, grace time.Duration) (OAuthRefreshResult, error)
	// TouchOAuthGrant moves the last use of a grant and its consent
	// forward to at (never backwards). Unknown ids are ignored.
	TouchOAuthGrant(ctx context.Context, id string, at time.Time) error
	// DropOAuthGrantClaims removes the custom claims of a grant for good
	// (Claims becomes ""), when the sign-in they came from has ended. It
	// reports whether this call removed them: of concurrent callers one
	// gets true; false when the grant had none left or does not exist.
	DropOAuthGrantClaims(ctx context.Context, id string) (bool, error)

	// DeleteExpiredOAuth deletes, at most limit rows per kind: pending
	// requests that expired before now; grants whose code expired before
	// now without being redeemed; grants that ended (absolute expiry or
	// revocation) before cutoff, with their refresh tokens; and refresh
	// tokens whose idle expiry is before cutoff. It also wipes (at most
	// limit) sealed successor secrets whose grace window ended before now.
	// It returns how many rows it deleted or wiped. Safe on several nodes
	// at once.
	DeleteExpiredOAuth(ctx context.Context, now, cutoff time.Time, limit int) (int, error)
}
