package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.OAuthStore = (*DB)(nil)

// ---- pending authorization requests ----

const oauthRequestColumns = `id, client_id, redirect_uri, redirect_uri_provided, scopes, resource, state,
	code_challenge, nonce, prompt, created_at, expires_at`

func scanOAuthRequest(r rowScanner) (store.OAuthRequest, error) {
	var (
		q      store.OAuthRequest
		scopes string
		t      [2]sql.NullInt64
	)
	if err := r.Scan(&q.ID, &q.ClientID, &q.RedirectURI, &q.RedirectURIProvided, &scopes, &q.Resource, &q.State,
		&q.CodeChallenge, &q.Nonce, &q.Prompt, &t[0], &t[1]); err != nil {
		return store.OAuthRequest{}, err
	}
	q.Scopes = splitTokens(scopes)
	q.CreatedAt, q.ExpiresAt = fromMillis(t[0]), fromMillis(t[1])
	return q, nil
}

// CreateOAuthRequest stores a pending authorization request.
func (d *DB) CreateOAuthRequest(ctx context.Context, q store.OAuthRequest) error {
	if q.ID == "" || q.ClientID == "" || q.RedirectURI == "" || q.Resource == "" || q.CodeChallenge == "" {
		return errors.New("store: oauth request needs an id, client_id, redirect_uri, resource and code_challenge")
	}
	if q.ExpiresAt.IsZero() {
		return errors.New("store: oauth request has no expiry")
	}
	if err := checkText("oauth request", "id", q.ID, "client_id", q.ClientID, "redirect_uri", q.RedirectURI,
		"resource", q.Resource, "state", q.State, "code_challenge", q.CodeChallenge, "nonce", q.Nonce, "prompt", q.Prompt); err != nil {
		return err
	}
	scopes, err := scopeList("oauth request", q.Scopes)
	if err != nil {
		return err
	}
	created := truncMS(q.CreatedAt)
	if created.IsZero() {
		created = nowMS()
	}
	_, err = d.db.ExecContext(ctx, `INSERT INTO oauth_requests (`+oauthRequestColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		q.ID, q.ClientID, q.RedirectURI, q.RedirectURIProvided, scopes, q.Resource, q.State,
		q.CodeChallenge, q.Nonce, q.Prompt, millis(created), millis(q.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create oauth request: %w", mapErr(err))
	}
	return nil
}

// GetOAuthRequest returns a pending request; ErrNotFound.
func (d *DB) GetOAuthRequest(ctx context.Context, id string) (store.OAuthRequest, error) {
	if !validText(id) {
		return store.OAuthRequest{}, fmt.Errorf("get oauth request: %w", store.ErrNotFound)
	}
	q, err := scanOAuthRequest(d.db.QueryRowContext(ctx, `SELECT `+oauthRequestColumns+` FROM oauth_requests WHERE id = $1`, id))
	if err != nil {
		return store.OAuthRequest{}, fmt.Errorf("get oauth request: %w", mapErr(err))
	}
	return q, nil
}

// TakeOAuthRequest deletes a pending request and returns it (single use).
func (d *DB) TakeOAuthRequest(ctx context.Context, id string) (store.OAuthRequest, error) {
	if !validText(id) {
		return store.OAuthRequest{}, fmt.Errorf("take oauth request: %w", store.ErrNotFound)
	}
	q, err := scanOAuthRequest(d.db.QueryRowContext(ctx, `DELETE FROM oauth_requests WHERE id = $1 RETURNING `+oauthRequestColumns, id))
	if err != nil {
		return store.OAuthRequest{}, fmt.Errorf("take oauth request: %w", mapErr(err))
	}
	return q, nil
}

// ---- consents ----

const oauthConsentColumns = `id, user_id, client_id, resource, scopes, created_at, updated_at, last_used_at`

func scanOAuthConsent(r rowScanner) (store.OAuthConsent, error) {
	var (
		c      store.OAuthConsent
		scopes string
		t      [3]sql.NullInt64
	)
	if err := r.Scan(&c.ID, &c.UserID, &c.ClientID, &c.Resource, &scopes, &t[0], &t[1], &t[2]); err != nil {
		return store.OAuthConsent{}, err
	}
	c.Scopes = splitTokens(scopes)
	c.CreatedAt, c.UpdatedAt, c.LastUsedAt = fromMillis(t[0]), fromMillis(t[1]), fromMillis(t[2])
	return c, nil
}

// GetOAuthConsent returns a user's consent for a client and resource.
func (d *DB) GetOAuthConsent(ctx context.Context, userID, clientID, resource string) (store.OAuthConsent, error) {
	if !validText(userID) || !validText(clientID) || !validText(resource) {
		return store.OAuthConsent{}, fmt.Errorf("get oauth consent: %w", store.ErrNotFound)
	}
	c, err := scanOAuthConsent(d.db.QueryRowContext(ctx, `SELECT `+oauthConsentColumns+` FROM oauth_consents
		WHERE user_id = $1 AND client_id = $2 AND resource = $3`, userID, clientID, resource))
	if err != nil {
		return store.OAuthConsent{}, fmt.Errorf("get oauth consent: %w", mapErr(err))
	}
	return c, nil
}

// GetOAuthConsentByID returns a consent by id.
func (d *DB) GetOAuthConsentByID(ctx context.Context, id string) (store.OAuthConsent, error) {
	if !validText(id) {
		return store.OAuthConsent{}, fmt.Errorf("get oauth consent: %w", store.ErrNotFound)
	}
	c, err := scanOAuthConsent(d.db.QueryRowContext(ctx, `SELECT `+oauthConsentColumns+` FROM oauth_consents WHERE id = $1`, id))
	if err != nil {
		return store.OAuthConsent{}, fmt.Errorf("get oauth consent: %w", mapErr(err))
	}
	return c, nil
}

// ListOAuthConsents returns a user's consents, most recently used first.
func (d *DB) ListOAuthConsents(ctx context.Context, userID string) ([]store.OAuthConsent, error) {
	if !validText(userID) {
		return nil, nil
	}
	rows, err := d.db.QueryContext(ctx, `SELECT `+oauthConsentColumns+` FROM oauth_consents WHERE user_id = $1
		ORDER BY COALESCE(last_used_at, created_at) DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list oauth consents: %w", err)
	}
	defer rows.Close()
	var out []store.OAuthConsent
	for rows.Next() {
		c, err := scanOAuthConsent(rows)
		if err != nil {
			return nil, fmt.Errorf("list oauth consents: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list oauth consents: %w", err)
	}
	return out, nil
}

// ---- grants ----

const oauthGrantColumns = `id, consent_id, user_id, client_id, resource, scopes, nonce, auth_time, code_hash,
	code_challenge, redirect_uri, redirect_uri_provided, code_expires_at, code_redeemed_at, created_at, expires_at,
	last_used_at, revoked_at, revoke_reason, claims, session_id`

func scanOAuthGrant(r rowScanner) (store.OAuthGrant, error) {
	var (
		g             store.OAuthGrant
		consent, user sql.NullString
		scopes        string
		t             [7]sql.NullInt64
	)
	if err := r.Scan(&g.ID, &consent, &user, &g.ClientID, &g.Resource, &scopes, &g.Nonce, &t[0], &g.CodeHash,
		&g.CodeChallenge, &g.RedirectURI, &g.RedirectURIProvided, &t[1], &t[2], &t[3], &t[4],
		&t[5], &t[6], &g.RevokeReason, &g.Claims, &g.SessionID); err != nil {
		return store.OAuthGrant{}, err
	}
	g.ConsentID, g.UserID = consent.String, user.String
	if len(g.CodeHash) == 0 {
		g.CodeHash = nil
	}
	g.Scopes = splitTokens(scopes)
	g.AuthTime, g.CodeExpiresAt, g.CodeRedeemedAt = fromMillis(t[0]), fromMillis(t[1]), fromMillis(t[2])
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = fromMillis(t[3]), fromMillis(t[4]), fromMillis(t[5]), fromMillis(t[6])
	return g, nil
}

func scanOAuthGrants(rows *sql.Rows) ([]store.OAuthGrant, error) {
	defer rows.Close()
	var out []store.OAuthGrant
	for rows.Next() {
		g, err := scanOAuthGrant(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.OAuthGrant) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// insertOAuthGrant validates and inserts g (created_at defaults to now).
func insertOAuthGrant(ctx context.Context, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, g store.OAuthGrant) (store.OAuthGrant, error) {
	if g.ID == "" || g.ClientID == "" || g.Resource == "" {
		return store.OAuthGrant{}, errors.New("store: oauth grant needs an id, client_id and resource")
	}
	if g.ExpiresAt.IsZero() {
		return store.OAuthGrant{}, errors.New("store: oauth grant has no expiry")
	}
	if g.CodeHash != nil && len(g.CodeHash) != sha256.Size {
		return store.OAuthGrant{}, fmt.Errorf("store: authorization code hash must be a %d-byte SHA-256 digest, got %d bytes", sha256.Size, len(g.CodeHash))
	}
	if g.CodeHash != nil && (g.CodeChallenge == "" || g.CodeExpiresAt.IsZero() || g.RedirectURI == "") {
		return store.OAuthGrant{}, errors.New("store: an oauth grant with a code needs its challenge, redirect URI and expiry")
	}
	if err := checkText("oauth grant", "id", g.ID, "consent_id", g.ConsentID, "user_id", g.UserID, "client_id", g.ClientID,
		"resource", g.Resource, "nonce", g.Nonce, "code_challenge", g.CodeChallenge, "redirect_uri", g.RedirectURI,
		"revoke_reason", g.RevokeReason, "session_id", g.SessionID); err != nil {
		return store.OAuthGrant{}, err
	}
	scopes, err := scopeList("oauth grant", g.Scopes)
	if err != nil {
		return store.OAuthGrant{}, err
	}
	if err := checkGrantClaims(g.Claims); err != nil {
		return store.OAuthGrant{}, err
	}
	if g.Claims != "" && g.SessionID == "" {
		// Claims live as long as the sign-in that vouched for them: a
		// grant cannot hold claims it cannot tie to one.
		return store.OAuthGrant{}, errors.New("store: an oauth grant with claims needs the session they came from")
	}
	g.CreatedAt = truncMS(g.CreatedAt)
	if g.CreatedAt.IsZero() {
		g.CreatedAt = nowMS()
	}
	var code any
	if g.CodeHash != nil {
		code = g.CodeHash
	}
	_, err = q.ExecContext(ctx, `INSERT INTO oauth_grants (`+oauthGrantColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
		g.ID, nullString(g.ConsentID), nullString(g.UserID), g.ClientID, g.Resource, scopes, g.Nonce, millis(g.AuthTime), code,
		g.CodeChallenge, g.RedirectURI, g.RedirectURIProvided, millis(g.CodeExpiresAt), millis(g.CodeRedeemedAt),
		millis(g.CreatedAt), millis(g.ExpiresAt), millis(g.LastUsedAt), millis(g.RevokedAt), g.RevokeReason, g.Claims, g.SessionID)
	if err != nil {
		return store.OAuthGrant{}, fmt.Errorf("create oauth grant: %w", mapErr(err))
	}
	g.AuthTime, g.CodeExpiresAt, g.CodeRedeemedAt = truncMS(g.AuthTime), truncMS(g.CodeExpiresAt), truncMS(g.CodeRedeemedAt)
	g.ExpiresAt, g.LastUsedAt, g.RevokedAt = truncMS(g.ExpiresAt), truncMS(g.LastUsedAt), truncMS(g.RevokedAt)
	if len(g.Scopes) == 0 {
		g.Scopes = nil
	}
	return g, nil
}

// checkGrantClaims: "" or a JSON object of at most
// store.MaxOAuthGrantClaimsBytes.
func checkGrantClaims(claims string) error {
	if claims == "" {
		return nil
	}
	if len(claims) > store.MaxOAuthGrantClaimsBytes {
		return fmt.Errorf("store: oauth grant claims are %d bytes, at most %d", len(claims), store.MaxOAuthGrantClaimsBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(claims), &obj); err != nil || obj == nil {
		return errors.New("store: oauth grant claims must be a JSON object")
	}
	return nil
}

// ApproveOAuthRequest takes the pending request, extends the consent and
// stores the grant, in one transaction.
func (d *DB) ApproveOAuthRequest(ctx context.Context, requestID string, consentScopes []string, g store.OAuthGrant) (store.OAuthConsent, store.OAuthGrant, error) {
	if g.UserID == "" {
		return store.OAuthConsent{}, store.OAuthGrant{}, errors.New("store: an approved oauth grant needs a user")
	}
	if !validText(requestID) {
		return store.OAuthConsent{}, store.OAuthGrant{}, fmt.Errorf("approve oauth request: %w", store.ErrNotFound)
	}
	if _, err := scopeList("oauth consent", consentScopes); err != nil {
		return store.OAuthConsent{}, store.OAuthGrant{}, err
	}
	at := truncMS(g.CreatedAt)
	if at.IsZero() {
		at = nowMS()
	}
	g.CreatedAt = at
	var (
		consent store.OAuthConsent
		grant   store.OAuthGrant
	)
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		if requestID != "" {
			var id string
			err := tx.QueryRowContext(ctx, `DELETE FROM oauth_requests WHERE id = $1 RETURNING id`, requestID).Scan(&id)
			if err != nil {
				return fmt.Errorf("approve oauth request: %w", mapErr(err))
			}
		}
		if err := checkText("oauth consent", "user_id", g.UserID, "client_id", g.ClientID, "resource", g.Resource); err != nil {
			return err
		}
		// Create the consent when missing (a concurrent approval may do
		// the same: ON CONFLICT keeps the first), then lock and extend it.
		_, err := tx.ExecContext(ctx, `INSERT INTO oauth_consents (`+oauthConsentColumns+`)
			VALUES ($1, $2, $3, $4, '', $5, $5, NULL)
			ON CONFLICT (user_id, client_id, resource) DO NOTHING`,
			store.NewID("ocn"), g.UserID, g.ClientID, g.Resource, at.UnixMilli())
		if err != nil {
			return fmt.Errorf("approve oauth request: consent: %w", mapErr(err))
		}
		consent, err = scanOAuthConsent(tx.QueryRowContext(ctx, `SELECT `+oauthConsentColumns+` FROM oauth_consents
			WHERE user_id = $1 AND client_id = $2 AND resource = $3`+d.lockClause("FOR UPDATE"), g.UserID, g.ClientID, g.Resource))
		if err != nil {
			return fmt.Errorf("approve oauth request: consent: %w", mapErr(err))
		}
		merged := slices.Clone(consent.Scopes)
		for _, s := range consentScopes {
			if !slices.Contains(merged, s) {
				merged = append(merged, s)
			}
		}
		if len(merged) != len(consent.Scopes) {
			list, _ := scopeList("oauth consent", merged)
			if _, err := tx.ExecContext(ctx, `UPDATE oauth_consents SET scopes = $2, updated_at = $3 WHERE id = $1`,
				consent.ID, list, at.UnixMilli()); err != nil {
				return fmt.Errorf("approve oauth request: consent: %w", mapErr(err))
			}
			consent.Scopes, consent.UpdatedAt = merged, at
		}
		g.ConsentID = consent.ID
		grant, err = insertOAuthGrant(ctx, tx, g)
		return err
	})
	if err != nil {
		return store.OAuthConsent{}, store.OAuthGrant{}, err
	}
	return consent, grant, nil
}

// CreateOAuthGrant stores a grant without consent (client credentials).
func (d *DB) CreateOAuthGrant(ctx context.Context, g store.OAuthGrant) error {
	_, err := insertOAuthGrant(ctx, d.db, g)
	return err
}

// GetOAuthGrant returns a grant by id.
func (d *DB) GetOAuthGrant(ctx context.Context, id string) (store.OAuthGrant, error) {
	if !validText(id) {
		return store.OAuthGrant{}, fmt.Errorf("get oauth grant: %w", store.ErrNotFound)
	}
	g, err := scanOAuthGrant(d.db.QueryRowContext(ctx, `SELECT `+oauthGrantColumns+` FROM oauth_grants WHERE id = $1`, id))
	if err != nil {
		return store.OAuthGrant{}, fmt.Errorf("get oauth grant: %w", mapErr(err))
	}
	return g, nil
}

// touchConsent moves a consent's last use forward.
func touchConsent(ctx context.Context, tx *sql.Tx, consentID string, atMS int64) error {
	if consentID == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE oauth_consents SET last_used_at = $2
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)`, consentID, atMS)
	return err
}

// RedeemOAuthCode marks a code redeemed (once) and returns its grant.
func (d *DB) RedeemOAuthCode(ctx context.Context, codeHash []byte, at time.Time) (store.OAuthGrant, error) {
	if len(codeHash) != sha256.Size {
		return store.OAuthGrant{}, fmt.Errorf("redeem oauth code: %w", store.ErrNotFound)
	}
	if at.IsZero() {
		at = time.Now()
	}
	atMS := at.UnixMilli()
	var (
		g        store.OAuthGrant
		replayed bool
	)
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		replayed = false
		var err error
		g, err = scanOAuthGrant(tx.QueryRowContext(ctx, `UPDATE oauth_grants SET code_redeemed_at = $2, last_used_at = $2
			WHERE code_hash = $1 AND code_redeemed_at IS NULL RETURNING `+oauthGrantColumns, codeHash, atMS))
		switch {
		case err == nil:
			return touchConsent(ctx, tx, g.ConsentID, atMS)
		case errors.Is(err, sql.ErrNoRows):
			// Unknown, or redeemed before (a replay).
			g, err = scanOAuthGrant(tx.QueryRowContext(ctx, `SELECT `+oauthGrantColumns+` FROM oauth_grants WHERE code_hash = $1`, codeHash))
			if err != nil {
				return fmt.Errorf("redeem oauth code: %w", mapErr(err))
			}
			replayed = true
			return nil
		default:
			return fmt.Errorf("redeem oauth code: %w", err)
		}
	})
	if err != nil {
		return store.OAuthGrant{}, err
	}
	if replayed {
		return g, fmt.Errorf("redeem oauth code: %w", store.ErrReplayed)
	}
	return g, nil
}

// RevokeOAuthGrant revokes one grant (keeping an earlier revocation).
func (d *DB) RevokeOAuthGrant(ctx context.Context, id string, at time.Time, reason string) (store.OAuthGrant, bool, error) {
	if !validText(id) {
		return store.OAuthGrant{}, false, fmt.Errorf("revoke oauth grant: %w", store.ErrNotFound)
	}
	if err := checkText("oauth grant", "revoke_reason", reason); err != nil {
		return store.OAuthGrant{}, false, err
	}
	if at.IsZero() {
		at = time.Now()
	}
	g, err := scanOAuthGrant(d.db.QueryRowContext(ctx, `UPDATE oauth_grants SET revoked_at = $2, revoke_reason = $3
		WHERE id = $1 AND revoked_at IS NULL RETURNING `+oauthGrantColumns, id, at.UnixMilli(), reason))
	switch {
	case err == nil:
		return g, true, nil
	case errors.Is(err, sql.ErrNoRows):
		g, err = d.GetOAuthGrant(ctx, id)
		if err != nil {
			return store.OAuthGrant{}, false, fmt.Errorf("revoke oauth grant: %w", err)
		}
		return g, false, nil
	}
	return store.OAuthGrant{}, false, fmt.Errorf("revoke oauth grant: %w", err)
}

// RevokeOAuthConsent deletes a consent and revokes its grants.
func (d *DB) RevokeOAuthConsent(ctx context.Context, userID, consentID string, at time.Time, reason string) (store.OAuthConsent, []store.OAuthGrant, error) {
	if !validText(userID) || !validText(consentID) || userID == "" {
		return store.OAuthConsent{}, nil, fmt.Errorf("revoke oauth consent: %w", store.ErrNotFound)
	}
	if err := checkText("oauth grant", "revoke_reason", reason); err != nil {
		return store.OAuthConsent{}, nil, err
	}
	if at.IsZero() {
		at = time.Now()
	}
	var (
		c      store.OAuthConsent
		grants []store.OAuthGrant
	)
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = scanOAuthConsent(tx.QueryRowContext(ctx, `SELECT `+oauthConsentColumns+` FROM oauth_consents
			WHERE id = $1 AND user_id = $2`+d.lockClause("FOR UPDATE"), consentID, userID))
		if err != nil {
			return fmt.Errorf("revoke oauth consent: %w", mapErr(err))
		}
		rows, err := tx.QueryContext(ctx, `UPDATE oauth_grants SET revoked_at = $2, revoke_reason = $3
			WHERE consent_id = $1 AND revoked_at IS NULL RETURNING `+oauthGrantColumns, consentID, at.UnixMilli(), reason)
		if err != nil {
			return fmt.Errorf("revoke oauth consent: %w", err)
		}
		if grants, err = scanOAuthGrants(rows); err != nil {
			return fmt.Errorf("revoke oauth consent: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_consents WHERE id = $1`, consentID); err != nil {
			return fmt.Errorf("revoke oauth consent: %w", err)
		}
		return nil
	})
	if err != nil {
		return store.OAuthConsent{}, nil, err
	}
	return c, grants, nil
}

// RevokeUserOAuthGrants revokes every live grant of a user.
func (d *DB) RevokeUserOAuthGrants(ctx context.Context, userID string, at time.Time, reason string) ([]store.OAuthGrant, error) {
	if !validText(userID) || userID == "" {
		return nil, nil
	}
	if err := checkText("oauth grant", "revoke_reason", reason); err != nil {
		return nil, err
	}
	if at.IsZero() {
		at = time.Now()
	}
	rows, err := d.db.QueryContext(ctx, `UPDATE oauth_grants SET revoked_at = $2, revoke_reason = $3
		WHERE user_id = $1 AND revoked_at IS NULL RETURNING `+oauthGrantColumns, userID, at.UnixMilli(), reason)
	if err != nil {
		return nil, fmt.Errorf("revoke user oauth grants: %w", err)
	}
	out, err := scanOAuthGrants(rows)
	if err != nil {
		return nil, fmt.Errorf("revoke user oauth grants: %w", err)
	}
	return out, nil
}

// TouchOAuthGrant moves the last use of a grant and its consent forward.
func (d *DB) TouchOAuthGrant(ctx context.Context, id string, at time.Time) error {
	if !validText(id) || at.IsZero() {
		return nil
	}
	atMS := at.UnixMilli()
	return d.inTx(ctx, func(tx *sql.Tx) error {
		var consent sql.NullString
		err := tx.QueryRowContext(ctx, `UPDATE oauth_grants SET last_used_at = $2
			WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2) RETURNING consent_id`, id, atMS).Scan(&consent)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("touch oauth grant: %w", err)
		}
		if err := touchConsent(ctx, tx, consent.String, atMS); err != nil {
			return fmt.Errorf("touch oauth grant: %w", err)
		}
		return nil
	})
}

// DropOAuthGrantClaims removes a grant's custom claims (see
// store.OAuthStore); the conditional UPDATE makes exactly one of
// concurrent callers see the row change.
func (d *DB) DropOAuthGrantClaims(ctx context.Context, id string) (bool, error) {
	if !validText(id) {
		return false, nil
	}
	res, err := d.db.ExecContext(ctx, `UPDATE oauth_grants SET claims = '' WHERE id = $1 AND claims <> ''`, id)
	if err != nil {
		return false, fmt.Errorf("drop oauth grant claims: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("drop oauth grant claims: %w", err)
	}
	return n == 1, nil
}

// ---- refresh tokens ----

const oauthRefreshColumns = `id, grant_id, hash, created_at, expires_at, rotated_at, successor_id`

func scanOAuthRefresh(r rowScanner, extra ...any) (store.OAuthRefreshToken, error) {
	var (
		t         store.OAuthRefreshToken
		ts        [3]sql.NullInt64
		successor sql.NullString
	)
	if err := r.Scan(append([]any{&t.ID, &t.GrantID, &t.Hash, &ts[0], &ts[1], &ts[2], &successor}, extra...)...); err != nil {
		return store.OAuthRefreshToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.RotatedAt = fromMillis(ts[0]), fromMillis(ts[1]), fromMillis(ts[2])
	t.SuccessorID = successor.String
	return t, nil
}

// insertRefresh validates and inserts t for grant g (expiry capped).
func insertRefresh(ctx context.Context, tx *sql.Tx, g store.OAuthGrant, t store.OAuthRefreshToken) (store.OAuthRefreshToken, error) {
	if t.ID == "" {
		return store.OAuthRefreshToken{}, errors.New("store: refresh token id is empty")
	}
	if len(t.Hash) != sha256.Size {
		return store.OAuthRefreshToken{}, fmt.Errorf("store: refresh token hash must be a %d-byte SHA-256 digest, got %d bytes", sha256.Size, len(t.Hash))
	}
	if t.ExpiresAt.IsZero() {
		return store.OAuthRefreshToken{}, errors.New("store: refresh token has no expiry")
	}
	if err := checkText("refresh token", "id", t.ID); err != nil {
		return store.OAuthRefreshToken{}, err
	}
	t.GrantID = g.ID
	t.CreatedAt = truncMS(t.CreatedAt)
	if t.CreatedAt.IsZero() {
		t.CreatedAt = nowMS()
	}
	t.ExpiresAt = truncMS(t.ExpiresAt)
	if t.ExpiresAt.After(g.ExpiresAt) {
		t.ExpiresAt = g.ExpiresAt
	}
	t.RotatedAt, t.SuccessorID, t.Sealed = time.Time{}, "", nil
	_, err := tx.ExecContext(ctx, `INSERT INTO oauth_refresh_tokens (`+oauthRefreshColumns+`) VALUES ($1, $2, $3, $4, $5, NULL, NULL)`,
		t.ID, t.GrantID, t.Hash, millis(t.CreatedAt), millis(t.ExpiresAt))
	if err != nil {
		return store.OAuthRefreshToken{}, fmt.Errorf("create refresh token: %w", mapErr(err))
	}
	return t, nil
}

// wipeSealedSuccessors forgets the sealed successor secrets of a grant's
// refresh tokens (except the token keep), so that their grace retries
// are replays from now on.
func wipeSealedSuccessors(ctx context.Context, tx *sql.Tx, grantID, keep string) error {
	_, err := tx.ExecContext(ctx, `UPDATE oauth_refresh_tokens SET successor_sealed = NULL, successor_sealed_until = NULL
		WHERE grant_id = $1 AND id <> $2 AND successor_sealed IS NOT NULL`, grantID, keep)
	return err
}

// lockGrant reads and locks a grant inside a transaction.
func (d *DB) lockGrant(ctx context.Context, tx *sql.Tx, id string) (store.OAuthGrant, error) {
	return scanOAuthGrant(tx.QueryRowContext(ctx, `SELECT `+oauthGrantColumns+` FROM oauth_grants WHERE id = $1`+d.lockClause("FOR UPDATE"), id))
}

// CreateOAuthRefreshToken stores the first refresh token of a live grant.
func (d *DB) CreateOAuthRefreshToken(ctx context.Context, t store.OAuthRefreshToken) (store.OAuthRefreshToken, error) {
	if !validText(t.GrantID) || t.GrantID == "" {
		return store.OAuthRefreshToken{}, fmt.Errorf("create refresh token: %w", store.ErrNotFound)
	}
	var out store.OAuthRefreshToken
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		g, err := d.lockGrant(ctx, tx, t.GrantID)
		if err != nil {
			return fmt.Errorf("create refresh token: %w", mapErr(err))
		}
		if !g.RevokedAt.IsZero() {
			return fmt.Errorf("create refresh token: grant revoked: %w", store.ErrNotFound)
		}
		out, err = insertRefresh(ctx, tx, g, t)
		return err
	})
	if err != nil {
		return store.OAuthRefreshToken{}, err
	}
	return out, nil
}

// GetOAuthRefreshToken finds a refresh token by hash with its grant.
func (d *DB) GetOAuthRefreshToken(ctx context.Context, hash []byte) (store.OAuthRefreshToken, store.OAuthGrant, error) {
	if len(hash) != sha256.Size {
		return store.OAuthRefreshToken{}, store.OAuthGrant{}, fmt.Errorf("get refresh token: %w", store.ErrNotFound)
	}
	t, err := scanOAuthRefresh(d.db.QueryRowContext(ctx, `SELECT `+oauthRefreshColumns+` FROM oauth_refresh_tokens WHERE hash = $1`, hash))
	if err != nil {
		// Never put the hash in the error: it identifies a credential.
		return store.OAuthRefreshToken{}, store.OAuthGrant{}, fmt.Errorf("get refresh token: %w", mapErr(err))
	}
	g, err := d.GetOAuthGrant(ctx, t.GrantID)
	if err != nil {
		return store.OAuthRefreshToken{}, store.OAuthGrant{}, fmt.Errorf("get refresh token: %w", err)
	}
	return t, g, nil
}

// RotateRefreshToken uses a refresh token once (see store.OAuthStore).
// Locks are taken grant first, then token, like every other writer of
// these tables, so concurrent callers cannot deadlock; on SQLite the
// transaction is BEGIN IMMEDIATE (Open forces _txlock=immediate), which
// serialises it with every other writer. Either way, of concurrent
// rotations of one token exactly one finds it unused.
func (d *DB) RotateRefreshToken(ctx context.Context, hash []byte, next store.OAuthRefreshToken, at time.Time, grace time.Duration) (store.OAuthRefreshResult, error) {
	if len(hash) != sha256.Size {
		return store.OAuthRefreshResult{}, fmt.Errorf("rotate refresh token: %w", store.ErrNotFound)
	}
	if len(next.Sealed) > store.MaxSealedRefreshBytes {
		return store.OAuthRefreshResult{}, fmt.Errorf("store: sealed refresh token is %d bytes, at most %d", len(next.Sealed), store.MaxSealedRefreshBytes)
	}
	if at.IsZero() {
		at = time.Now()
	}
	at = truncMS(at)
	atMS := at.UnixMilli()
	var res store.OAuthRefreshResult
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		res = store.OAuthRefreshResult{}
		var grantID string
		if err := tx.QueryRowContext(ctx, `SELECT grant_id FROM oauth_refresh_tokens WHERE hash = $1`, hash).Scan(&grantID); err != nil {
			return fmt.Errorf("rotate refresh token: %w", mapErr(err))
		}
		g, err := d.lockGrant(ctx, tx, grantID)
		if err != nil {
			return fmt.Errorf("rotate refresh token: %w", mapErr(err))
		}
		var sealed []byte
		tok, err := scanOAuthRefresh(tx.QueryRowContext(ctx, `SELECT `+oauthRefreshColumns+`, successor_sealed FROM oauth_refresh_tokens
			WHERE hash = $1`+d.lockClause("FOR UPDATE"), hash), &sealed)
		if err != nil {
			return fmt.Errorf("rotate refresh token: %w", mapErr(err))
		}
		res.Token, res.Grant = tok, g
		// A used token may be retried within the grace window, as long as
		// the rotation kept its successor's sealed secret (grace > 0) and
		// that successor is unused (using it wipes the secret).
		var successor store.OAuthRefreshToken
		retry := false
		if !tok.RotatedAt.IsZero() && grace > 0 && at.Sub(tok.RotatedAt) <= grace && len(sealed) > 0 && tok.SuccessorID != "" {
			successor, err = scanOAuthRefresh(tx.QueryRowContext(ctx, `SELECT `+oauthRefreshColumns+` FROM oauth_refresh_tokens
				WHERE id = $1 AND grant_id = $2`, tok.SuccessorID, g.ID))
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("rotate refresh token: successor: %w", err)
			default:
				retry = successor.RotatedAt.IsZero()
			}
		}
		switch {
		case !g.RevokedAt.IsZero():
			res.Outcome = store.RefreshGrantRevoked
			return nil
		case !tok.RotatedAt.IsZero() && !retry:
			// RFC 9700 §4.14.2: a rotated token used again means two
			// parties hold it; revoke the whole family.
			res.Outcome = store.RefreshReplayed
			res.Grant, err = scanOAuthGrant(tx.QueryRowContext(ctx, `UPDATE oauth_grants SET revoked_at = $2, revoke_reason = $3
				WHERE id = $1 RETURNING `+oauthGrantColumns, g.ID, atMS, "refresh_replayed"))
			if err != nil {
				return fmt.Errorf("rotate refresh token: revoke grant: %w", err)
			}
			if err := wipeSealedSuccessors(ctx, tx, g.ID, ""); err != nil {
				return fmt.Errorf("rotate refresh token: %w", err)
			}
			return nil
		case !at.Before(g.ExpiresAt):
			res.Outcome = store.RefreshGrantExpired
			return nil
		case tok.RotatedAt.IsZero() && !at.Before(tok.ExpiresAt):
			res.Outcome = store.RefreshExpired
			return nil
		}
		if retry {
			// The same successor again: a retry never adds a token.
			res.Outcome = store.RefreshGraceRetry
			successor.Sealed = sealed
			res.Next = successor
		} else {
			res.Outcome = store.RefreshRotated
			if next.CreatedAt.IsZero() {
				next.CreatedAt = at
			}
			if res.Next, err = insertRefresh(ctx, tx, g, next); err != nil {
				return err
			}
			var keep []byte
			var until sql.NullInt64
			if grace > 0 && len(next.Sealed) > 0 {
				keep, until = next.Sealed, sql.NullInt64{Int64: at.Add(grace).UnixMilli(), Valid: true}
			}
			if _, err := tx.ExecContext(ctx, `UPDATE oauth_refresh_tokens
				SET rotated_at = $2, successor_id = $3, successor_sealed = $4, successor_sealed_until = $5 WHERE id = $1`,
				tok.ID, atMS, res.Next.ID, keep, until); err != nil {
				return fmt.Errorf("rotate refresh token: %w", err)
			}
			// The older tokens of the family (this token's parent) may no
			// longer be retried: their successor has just been used.
			if err := wipeSealedSuccessors(ctx, tx, g.ID, tok.ID); err != nil {
				return fmt.Errorf("rotate refresh token: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE oauth_grants SET last_used_at = $2
			WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)`, g.ID, atMS); err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		if res.Grant.LastUsedAt.Before(at) {
			res.Grant.LastUsedAt = at
		}
		if err := touchConsent(ctx, tx, g.ConsentID, atMS); err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		return nil
	})
	if err != nil {
		return store.OAuthRefreshResult{}, err
	}
	if res.Grant.ConsentID != "" {
		if c, err := d.GetOAuthConsentByID(ctx, res.Grant.ConsentID); err == nil {
			res.Consent = c
		}
	}
	return res, nil
}

// DeleteExpiredOAuth deletes what has expired (see store.OAuthStore).
func (d *DB) DeleteExpiredOAuth(ctx context.Context, now, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 || now.IsZero() {
		return 0, nil
	}
	if cutoff.IsZero() || cutoff.After(now) {
		cutoff = now
	}
	skip := d.lockClause("FOR UPDATE SKIP LOCKED")
	stmts := []struct {
		what, sql string
		args      []any
	}{
		{"pending requests", `DELETE FROM oauth_requests WHERE id IN (
			SELECT id FROM oauth_requests WHERE expires_at < $1 ORDER BY id LIMIT $2` + skip + `)`,
			[]any{now.UnixMilli(), limit}},
		{"grants", `DELETE FROM oauth_grants WHERE id IN (
			SELECT id FROM oauth_grants
			WHERE (code_hash IS NOT NULL AND code_redeemed_at IS NULL AND code_expires_at < $1)
			   OR expires_at < $2 OR revoked_at < $2
			ORDER BY id LIMIT $3` + skip + `)`,
			[]any{now.UnixMilli(), cutoff.UnixMilli(), limit}},
		{"refresh tokens", `DELETE FROM oauth_refresh_tokens WHERE id IN (
			SELECT id FROM oauth_refresh_tokens WHERE expires_at < $1 ORDER BY id LIMIT $2` + skip + `)`,
			[]any{cutoff.UnixMilli(), limit}},
		// Sealed successors past their grace window: wiped, not deleted.
		{"sealed refresh successors", `UPDATE oauth_refresh_tokens SET successor_sealed = NULL, successor_sealed_until = NULL WHERE id IN (
			SELECT id FROM oauth_refresh_tokens WHERE successor_sealed IS NOT NULL AND successor_sealed_until < $1
			ORDER BY id LIMIT $2` + skip + `)`,
			[]any{now.UnixMilli(), limit}},
	}
	total := 0
	for _, s := range stmts {
		res, err := d.db.ExecContext(ctx, s.sql, s.args...)
		if err != nil {
			return total, fmt.Errorf("delete expired oauth %s: %w", s.what, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("delete expired oauth %s: %w", s.what, err)
		}
		total += int(n)
	}
	return total, nil
}

// scopeList validates and joins scope tokens.
func scopeList(what string, scopes []string) (string, error) {
	for _, s := range scopes {
		if err := checkText(what, "scope", s); err != nil {
			return "", err
		}
	}
	return joinTokens("scope", scopes)
}
