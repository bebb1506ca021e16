package api

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Keys never accumulate: 100 logins with credential requests leave at most
// one live session key per live session, and once the sessions are over the
// cleaner removes every session and session key.
func TestSessionKeysDoNotAccumulate(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()

	// Half the logins come from one browser (each login ends its previous
	// session), half from fresh browsers (a session each).
	same := s.browser()
	var browsers []*browser
	for i := range 100 {
		b := same
		if i%2 == 1 {
			b = s.browser()
			browsers = append(browsers, b)
		}
		b.login("bob@example.com")
		k1 := b.credential()
		if k2 := b.credential(); k1 != k2 {
			t.Fatalf("login %d: two credential calls gave two keys", i)
		}
	}
	browsers = append(browsers, same)

	live, err := s.sessions.List(ctx, s.bob.ID)
	must(t, err)
	if len(live) != 51 {
		t.Errorf("live sessions = %d, want 51 (50 fresh browsers + 1 reused)", len(live))
	}
	liveIDs := map[string]bool{}
	for _, ls := range live {
		liveIDs[ls.ID] = true
		keys, err := s.db.ListSessionKeys(ctx, ls.ID)
		must(t, err)
		active := 0
		for _, k := range keys {
			if k.Active(s.clock.Now()) {
				active++
			}
		}
		if active > 1 {
			t.Errorf("session %s has %d live keys", ls.ID, active)
		}
	}
	activeSessionKeys := 0
	var everySession []string
	for _, k := range mustList(t, s, s.bob.ID) {
		if k.Kind == store.KeyKindSession {
			everySession = append(everySession, k.SessionID)
		}
		if k.Kind != store.KeyKindSession || !k.Active(s.clock.Now()) {
			continue
		}
		activeSessionKeys++
		if !liveIDs[k.SessionID] {
			t.Errorf("live session key %s belongs to ended session %s", k.ID, k.SessionID)
		}
	}
	if len(everySession) != 100 {
		t.Errorf("%d session keys made for 100 sessions", len(everySession))
	}
	if activeSessionKeys != len(live) {
		t.Errorf("live session keys = %d, want one per live session (%d)", activeSessionKeys, len(live))
	}

	// The user sees them all in the key list, marked as session keys.
	r := same.do("GET", "/api/api-keys", nil)
	var listed int
	for _, k := range r.json(t)["api_keys"].([]any) {
		km := k.(map[string]any)
		if km["kind"] == "session" && km["status"] == "active" {
			listed++
			if km["name"] != "MCP session key" || km["session_id"] == "" {
				t.Errorf("session key listed as %v", km)
			}
		}
	}
	if listed != activeSessionKeys {
		t.Errorf("GET /api/api-keys lists %d live session keys, want %d", listed, activeSessionKeys)
	}

	// Everyone logs out (concurrently); past the retention period the
	// cleaner leaves nothing behind.
	done := make(chan int)
	for _, b := range browsers {
		go func() { done <- b.do("POST", "/api/auth/logout", nil).status }()
	}
	for range browsers {
		if st := <-done; st != http.StatusNoContent {
			t.Errorf("logout: %d", st)
		}
	}
	if live, _ := s.sessions.List(ctx, s.bob.ID); len(live) != 0 {
		t.Errorf("%d sessions live after every logout", len(live))
	}
	const retention = 30 * 24 * time.Hour
	s.clock.Advance(retention + time.Hour)
	if _, _, err := s.sessions.Clean(ctx, retention); err != nil {
		t.Fatal(err)
	}
	for _, k := range mustList(t, s, s.bob.ID) {
		if k.Kind == store.KeyKindSession {
			t.Errorf("session key %s (session %s) survived the cleaner", k.ID, k.SessionID)
		}
	}
	for _, id := range everySession {
		if _, err := s.db.GetSession(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s survived the cleaner (%v)", id, err)
		}
	}
}
