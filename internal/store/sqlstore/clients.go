package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.ClientStore = (*DB)(nil)

const oauthClientColumns = `id, client_id, kind, name, secret_hash, redirect_uris, grant_types, response_types,
	token_endpoint_auth_method, application_type, scopes, client_uri, logo_uri, metadata_url, metadata_json,
	software_id, software_version, dedup_key, created_at, last_used_at, fetched_at, cache_until`

// oauthClientScan holds the columns of a client row that need converting.
type oauthClientScan struct {
	redirectURIs, grantTypes, responseTypes, scopes string
	dedupKey                                        sql.NullString
	t                                               [4]sql.NullInt64
}

func scanOAuthClient(r rowScanner) (store.OAuthClient, error) {
	var (
		c store.OAuthClient
		x oauthClientScan
	)
	err := r.Scan(&c.ID, &c.ClientID, &c.Kind, &c.Name, &c.SecretHash, &x.redirectURIs, &x.grantTypes, &x.responseTypes,
		&c.TokenEndpointAuthMethod, &c.ApplicationType, &x.scopes, &c.ClientURI, &c.LogoURI, &c.MetadataURL, &c.MetadataJSON,
		&c.SoftwareID, &c.SoftwareVersion, &x.dedupKey, &x.t[0], &x.t[1], &x.t[2], &x.t[3])
	if err != nil {
		return store.OAuthClient{}, err
	}
	if len(c.SecretHash) == 0 {
		c.SecretHash = nil
	}
	c.RedirectURIs = splitTokens(x.redirectURIs)
	c.GrantTypes = splitTokens(x.grantTypes)
	c.ResponseTypes = splitTokens(x.responseTypes)
	c.Scopes = splitTokens(x.scopes)
	c.DedupKey = x.dedupKey.String
	c.CreatedAt, c.LastUsedAt, c.FetchedAt, c.CacheUntil = fromMillis(x.t[0]), fromMillis(x.t[1]), fromMillis(x.t[2]), fromMillis(x.t[3])
	return c, nil
}

func scanOAuthClients(rows *sql.Rows) ([]store.OAuthClient, error) {
	defer rows.Close()
	var out []store.OAuthClient
	for rows.Next() {
		c, err := scanOAuthClient(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// oauthClientArgs validates c and returns its column values in
// oauthClientColumns order (created_at defaulting to now).
func oauthClientArgs(c store.OAuthClient) ([]any, error) {
	if c.ID == "" || c.ClientID == "" {
		return nil, errors.New("store: oauth client id or client_id is empty")
	}
	switch c.Kind {
	case store.ClientKindCIMD, store.ClientKindDCR, store.ClientKindStatic:
	default:
		return nil, fmt.Errorf("store: invalid oauth client kind %q", c.Kind)
	}
	if c.SecretHash != nil && len(c.SecretHash) != sha256.Size {
		// Catches a caller handing over the plaintext instead of its digest.
		return nil, fmt.Errorf("store: oauth client secret hash must be a %d-byte SHA-256 digest, got %d bytes", sha256.Size, len(c.SecretHash))
	}
	if c.TokenEndpointAuthMethod == "" {
		return nil, errors.New("store: oauth client has no token endpoint auth method")
	}
	if err := checkText("oauth client", "id", c.ID, "client_id", c.ClientID, "name", c.Name,
		"token_endpoint_auth_method", c.TokenEndpointAuthMethod, "application_type", c.ApplicationType,
		"client_uri", c.ClientURI, "logo_uri", c.LogoURI, "metadata_url", c.MetadataURL, "metadata_json", c.MetadataJSON,
		"software_id", c.SoftwareID, "software_version", c.SoftwareVersion, "dedup_key", c.DedupKey); err != nil {
		return nil, err
	}
	lists := make([]string, 4)
	for i, l := range []struct {
		what   string
		tokens []string
	}{{"redirect URI", c.RedirectURIs}, {"grant type", c.GrantTypes}, {"response type", c.ResponseTypes}, {"scope", c.Scopes}} {
		for _, tok := range l.tokens {
			if err := checkText("oauth client", l.what, tok); err != nil {
				return nil, err
			}
		}
		s, err := joinTokens(l.what, l.tokens)
		if err != nil {
			return nil, err
		}
		lists[i] = s
	}
	appType := c.ApplicationType
	if appType == "" {
		appType = "web"
	}
	created := truncMS(c.CreatedAt)
	if created.IsZero() {
		created = nowMS()
	}
	var secret any
	if c.SecretHash != nil {
		secret = c.SecretHash
	}
	return []any{c.ID, c.ClientID, c.Kind, c.Name, secret, lists[0], lists[1], lists[2],
		c.TokenEndpointAuthMethod, appType, lists[3], c.ClientURI, c.LogoURI, c.MetadataURL, c.MetadataJSON,
		c.SoftwareID, c.SoftwareVersion, nullString(c.DedupKey),
		millis(created), millis(c.LastUsedAt), millis(c.FetchedAt), millis(c.CacheUntil)}, nil
}

const oauthClientPlaceholders = `$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22`

// CreateOAuthClient inserts c. ErrConflict when the id, client_id or dedup
// key is taken.
func (d *DB) CreateOAuthClient(ctx context.Context, c store.OAuthClient) error {
	args, err := oauthClientArgs(c)
	if err != nil {
		return err
	}
	if _, err := d.db.ExecContext(ctx,
		`INSERT INTO oauth_clients (`+oauthClientColumns+`) VALUES (`+oauthClientPlaceholders+`)`, args...); err != nil {
		return fmt.Errorf("create oauth client %q: %w", c.ID, mapErr(err))
	}
	return nil
}

// GetOAuthClient returns the client with this client_id, or ErrNotFound.
func (d *DB) GetOAuthClient(ctx context.Context, clientID string) (store.OAuthClient, error) {
	if clientID == "" || !validText(clientID) {
		return store.OAuthClient{}, fmt.Errorf("get oauth client: %w", store.ErrNotFound)
	}
	c, err := scanOAuthClient(d.db.QueryRowContext(ctx,
		`SELECT `+oauthClientColumns+` FROM oauth_clients WHERE client_id = $1`, clientID))
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("get oauth client: %w", mapErr(err))
	}
	return c, nil
}

// FindOAuthClientByDedupKey returns the client with this dedup key, or
// ErrNotFound.
func (d *DB) FindOAuthClientByDedupKey(ctx context.Context, key string) (store.OAuthClient, error) {
	if key == "" || !validText(key) {
		return store.OAuthClient{}, fmt.Errorf("find oauth client: %w", store.ErrNotFound)
	}
	c, err := scanOAuthClient(d.db.QueryRowContext(ctx,
		`SELECT `+oauthClientColumns+` FROM oauth_clients WHERE dedup_key = $1`, key))
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("find oauth client: %w", mapErr(err))
	}
	return c, nil
}

// ListOAuthClients returns the clients of kind ("" = all), newest first.
func (d *DB) ListOAuthClients(ctx context.Context, kind string) ([]store.OAuthClient, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if kind == "" {
		rows, err = d.db.QueryContext(ctx,
			`SELECT `+oauthClientColumns+` FROM oauth_clients ORDER BY created_at DESC, id DESC`)
	} else {
		if !validText(kind) {
			return nil, nil
		}
		rows, err = d.db.QueryContext(ctx,
			`SELECT `+oauthClientColumns+` FROM oauth_clients WHERE kind = $1 ORDER BY created_at DESC, id DESC`, kind)
	}
	if err != nil {
		return nil, fmt.Errorf("list oauth clients: %w", err)
	}
	out, err := scanOAuthClients(rows)
	if err != nil {
		return nil, fmt.Errorf("list oauth clients: %w", err)
	}
	return out, nil
}

// DeleteOAuthClient deletes the client with this client_id and returns it.
func (d *DB) DeleteOAuthClient(ctx context.Context, clientID string) (store.OAuthClient, error) {
	if clientID == "" || !validText(clientID) {
		return store.OAuthClient{}, fmt.Errorf("delete oauth client: %w", store.ErrNotFound)
	}
	c, err := scanOAuthClient(d.db.QueryRowContext(ctx,
		`DELETE FROM oauth_clients WHERE client_id = $1 RETURNING `+oauthClientColumns, clientID))
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("delete oauth client: %w", mapErr(err))
	}
	return c, nil
}

// TouchOAuthClient moves last_used_at forward to at; unknown ids are
// ignored.
func (d *DB) TouchOAuthClient(ctx context.Context, clientID string, at time.Time) error {
	if clientID == "" || !validText(clientID) || at.IsZero() {
		return nil
	}
	_, err := d.db.ExecContext(ctx,
		`UPDATE oauth_clients SET last_used_at = $2 WHERE client_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)`,
		clientID, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("touch oauth client: %w", err)
	}
	return nil
}

// UpsertCIMDClient inserts or refreshes a cimd row. The conflict target is
// client_id; a row of another kind is left alone (ErrConflict).
func (d *DB) UpsertCIMDClient(ctx context.Context, c store.OAuthClient) (store.OAuthClient, error) {
	if c.Kind == "" {
		c.Kind = store.ClientKindCIMD
	}
	if c.Kind != store.ClientKindCIMD {
		return store.OAuthClient{}, fmt.Errorf("store: UpsertCIMDClient needs kind %q, got %q", store.ClientKindCIMD, c.Kind)
	}
	if c.SecretHash != nil || c.DedupKey != "" {
		return store.OAuthClient{}, errors.New("store: a cimd client has no secret and no dedup key")
	}
	args, err := oauthClientArgs(c)
	if err != nil {
		return store.OAuthClient{}, err
	}
	// Both SQLite (3.35+) and PostgreSQL support ON CONFLICT … DO UPDATE …
	// WHERE with RETURNING. When the WHERE fails (the row is not a cimd
	// row) nothing is returned.
	got, err := scanOAuthClient(d.db.QueryRowContext(ctx,
		`INSERT INTO oauth_clients (`+oauthClientColumns+`) VALUES (`+oauthClientPlaceholders+`)
		ON CONFLICT (client_id) DO UPDATE SET
			name = excluded.name, redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types,
			response_types = excluded.response_types, token_endpoint_auth_method = excluded.token_endpoint_auth_method,
			application_type = excluded.application_type, scopes = excluded.scopes, client_uri = excluded.client_uri,
			logo_uri = excluded.logo_uri, metadata_url = excluded.metadata_url, metadata_json = excluded.metadata_json,
			software_id = excluded.software_id, software_version = excluded.software_version,
			fetched_at = excluded.fetched_at, cache_until = excluded.cache_until
		WHERE oauth_clients.kind = 'cimd'
		RETURNING `+oauthClientColumns, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return store.OAuthClient{}, fmt.Errorf("upsert cimd client: %w: client_id belongs to a client of another kind", store.ErrConflict)
	}
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("upsert cimd client: %w", mapErr(err))
	}
	return got, nil
}

// ReapOAuthClients deletes up to limit dcr and cimd clients that were never
// used and created before unusedBefore, or last used before idleBefore.
// On PostgreSQL, rows another node is deleting are skipped (SKIP LOCKED)
// and the conditions are re-checked on the locked rows, so a client touched
// meanwhile survives; SQLite serialises writers.
func (d *DB) ReapOAuthClients(ctx context.Context, unusedBefore, idleBefore time.Time, limit int) ([]store.OAuthClient, error) {
	if limit <= 0 || (unusedBefore.IsZero() && idleBefore.IsZero()) {
		return nil, nil
	}
	var unused, idle any // NULL disables a rule: "x < NULL" is never true
	if !unusedBefore.IsZero() {
		unused = unusedBefore.UnixMilli()
	}
	if !idleBefore.IsZero() {
		idle = idleBefore.UnixMilli()
	}
	const cond = `kind <> 'static' AND ((last_used_at IS NULL AND created_at < $1) OR last_used_at < $2)`
	rows, err := d.db.QueryContext(ctx,
		`DELETE FROM oauth_clients WHERE `+cond+` AND id IN (
			SELECT id FROM oauth_clients WHERE `+cond+`
			ORDER BY id LIMIT $3`+d.lockClause("FOR UPDATE SKIP LOCKED")+`)
		RETURNING `+oauthClientColumns,
		unused, idle, limit)
	if err != nil {
		return nil, fmt.Errorf("reap oauth clients: %w", err)
	}
	out, err := scanOAuthClients(rows)
	if err != nil {
		return nil, fmt.Errorf("reap oauth clients: %w", err)
	}
	return out, nil
}
