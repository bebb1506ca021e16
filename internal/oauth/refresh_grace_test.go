package oauth_test

// Regression tests for the refresh-token grace window (security review
// M2, RFC 9700 §4.14.2): a rotated token retried within the window must
// get the one successor its rotation produced, never a new sibling, so a
// stolen refresh token cannot fork the family into chains that are never
// detected.

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// TestRefreshStolenTokenCannotFork reproduces the review's attack: the
// legitimate client refreshes, then an attacker presents the stolen parent
// five times within the grace window. Every answer carries the same
// successor the legitimate client got; when both parties then use that
// one chain, the second use is a replay and the family is revoked.
func TestRefreshStolenTokenCannotFork(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{})
		id := s.publicClient("App")
		t0 := s.issue(id)
		stolen := t0.str("refresh_token")

		legit := s.refresh(id, stolen)
		if legit.status != http.StatusOK {
			t.Fatalf("legitimate refresh: %d %v", legit.status, legit.body)
		}
		successor := legit.str("refresh_token")
		accessTokens := []string{t0.str("access_token"), legit.str("access_token")}
		for i := range 5 {
			s.clock.Advance(time.Second)
			r := s.refresh(id, stolen)
			if r.status != http.StatusOK {
				t.Fatalf("stolen retry %d within grace: %d %v", i, r.status, r.body)
			}
			if got := r.str("refresh_token"); got != successor {
				t.Fatalf("stolen retry %d got another refresh token: the family forked", i)
			}
			if r.str("access_token") == "" || r.str("access_token") == legit.str("access_token") {
				t.Errorf("stolen retry %d: want a fresh access token", i)
			}
			accessTokens = append(accessTokens, r.str("access_token"))
		}
		if e := s.rec.of(audit.TypeOAuthRefreshReplayed); len(e) != 0 {
			t.Fatalf("a grace retry was taken for a replay: %v", e)
		}
		if n := len(s.rec.of(audit.TypeOAuthTokenRefreshed)); n != 6 {
			t.Errorf("%d refreshes audited, want 6", n)
		}

		// Both parties now hold the one successor. The legitimate client
		// refreshes it; the attacker's use of it after the window is a
		// replay that kills the family.
		next := s.refresh(id, successor)
		if next.status != http.StatusOK {
			t.Fatalf("legitimate refresh of the successor: %d %v", next.status, next.body)
		}
		accessTokens = append(accessTokens, next.str("access_token"))
		s.clock.Advance(time.Minute)
		wantTokenError(t, s.refresh(id, successor), http.StatusBadRequest, "invalid_grant")
		s.rec.mustHave(t, audit.TypeOAuthRefreshReplayed, audit.ReasonRefreshReplayed)
		wantTokenError(t, s.refresh(id, next.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
		for i, at := range accessTokens {
			if st := s.mcpStatus(at); st != http.StatusUnauthorized {
				t.Errorf("access token %d of the revoked family: /mcp %d, want 401", i, st)
			}
		}
	})
}

// TestRefreshStolenParentAfterSuccessorUsed: once the successor has been
// used, the parent is a replay even within its own grace window (whoever
// retries it did not lose the answer: someone used it).
func TestRefreshStolenParentAfterSuccessorUsed(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	t0 := s.issue(id)
	a := s.refresh(id, t0.str("refresh_token"))
	b := s.refresh(id, a.str("refresh_token"))
	if a.status != http.StatusOK || b.status != http.StatusOK {
		t.Fatalf("refreshes: %d %d", a.status, b.status)
	}
	s.clock.Advance(5 * time.Second)
	wantTokenError(t, s.refresh(id, t0.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthRefreshReplayed, audit.ReasonRefreshReplayed)
	wantTokenError(t, s.refresh(id, b.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
}

// TestRefreshConcurrentSingleSuccessor: 20 concurrent refreshes of one
// token all succeed with the same refresh token (one rotation; the rest
// are grace retries), each with its own access token, and the family
// lives on.
func TestRefreshConcurrentSingleSuccessor(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{})
		id := s.publicClient("App")
		rt := s.issue(id).str("refresh_token")
		const n = 20
		type answer struct {
			status        int
			refresh, auth string
			err           error
		}
		var (
			wg      sync.WaitGroup
			answers = make([]answer, n)
			gun     = make(chan struct{})
		)
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}}.Encode()
		for i := range n {
			wg.Go(func() {
				<-gun
				resp, err := http.Post(s.base+"/token", "application/x-www-form-urlencoded", strings.NewReader(form))
				if err != nil {
					answers[i].err = err
					return
				}
				defer resp.Body.Close()
				var body struct {
					RefreshToken string `json:"refresh_token"`
					AccessToken  string `json:"access_token"`
				}
				raw, _ := io.ReadAll(resp.Body)
				_ = json.Unmarshal(raw, &body)
				answers[i] = answer{status: resp.StatusCode, refresh: body.RefreshToken, auth: body.AccessToken}
			})
		}
		close(gun)
		wg.Wait()
		refreshTokens, accessTokens := map[string]bool{}, map[string]bool{}
		for i, a := range answers {
			if a.err != nil || a.status != http.StatusOK {
				t.Fatalf("refresh %d: %d %v", i, a.status, a.err)
			}
			refreshTokens[a.refresh] = true
			accessTokens[a.auth] = true
		}
		if len(refreshTokens) != 1 {
			t.Fatalf("%d concurrent refreshes produced %d distinct refresh tokens, want 1", n, len(refreshTokens))
		}
		if len(accessTokens) != n {
			t.Errorf("%d distinct access tokens, want %d", len(accessTokens), n)
		}
		if e := s.rec.of(audit.TypeOAuthRefreshReplayed); len(e) != 0 {
			t.Fatalf("concurrent refreshes taken for a replay: %v", e)
		}
		for successor := range refreshTokens {
			if r := s.refresh(id, successor); r.status != http.StatusOK {
				t.Errorf("refreshing the single successor: %d %v", r.status, r.body)
			}
		}
	})
}

// TestRefreshGraceRetryWrongServerKey: a grace retry on a node whose
// server key cannot open the sealed successor is refused, and the family
// is not revoked (the client that got the rotation's answer goes on).
func TestRefreshGraceRetryWrongServerKey(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	other := oauth.NewServer(oauth.ServerOptions{
		Store: s.db, Clients: s.clients, Tokens: s.tokens, Audit: s.rec, Sessions: s.sessions, Users: s.users,
		Issuer: s.base, Resources: s.as.Resources(), Now: s.clock.Now,
		ServerKey: []byte(strings.Repeat("x", 32)), Logger: slog.New(slog.DiscardHandler),
	})
	mux := http.NewServeMux()
	other.Routes(mux)
	node2 := httptest.NewServer(mux)
	t.Cleanup(node2.Close)

	id := s.publicClient("App")
	t0 := s.issue(id)
	a := s.refresh(id, t0.str("refresh_token"))
	if a.status != http.StatusOK {
		t.Fatalf("refresh: %d %v", a.status, a.body)
	}
	resp, err := http.PostForm(node2.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t0.str("refresh_token")}, "client_id": {id}})
	must(t, err)
	var body map[string]any
	must(t, json.NewDecoder(resp.Body).Decode(&body))
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("grace retry on a node with another key: %d %v; want invalid_grant", resp.StatusCode, body)
	}
	if e := s.rec.of(audit.TypeOAuthRefreshReplayed); len(e) != 0 {
		t.Errorf("an unopenable grace retry revoked the family: %v", e)
	}
	if r := s.refresh(id, a.str("refresh_token")); r.status != http.StatusOK {
		t.Errorf("the successor after a refused retry: %d %v", r.status, r.body)
	}
}
