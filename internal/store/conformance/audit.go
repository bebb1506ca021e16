package conformance

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// appendAudit appends events in one batch.
func appendAudit(t *testing.T, s store.Store, events ...store.AuditEvent) {
	t.Helper()
	if err := s.AppendAudit(t.Context(), events); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
}

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) []store.AuditEvent {
	t.Helper()
	got, err := s.ListAudit(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return got
}

// auditKey identifies an event by its content, for comparing lists.
func auditKey(e store.AuditEvent) string {
	return fmt.Sprintf("%s|%s|%s|%s|%d", e.Type, e.Outcome, e.UserID, e.Reason, e.Time.UnixMilli())
}

func auditKeys(es []store.AuditEvent) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = auditKey(e)
	}
	return out
}

func testAuditAppendList(t *testing.T, s store.Store) {
	if got := listAudit(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Fatalf("empty log lists %d events", len(got))
	}
	if err := s.AppendAudit(t.Context(), nil); err != nil {
		t.Fatalf("AppendAudit(nil): %v", err)
	}
	e1 := store.AuditEvent{
		Time: at(0), Type: "login", Outcome: store.OutcomeAllow, Reason: "password",
		UserID: "usr_1", CredentialID: "ses_1", ClientIP: "2001:db8::1", UserAgent: "Mozilla/5.0",
		Resource: "https://mcp.example.com/mcp", Tool: "", Details: map[string]any{"method": "password"},
	}
	e2 := store.AuditEvent{Time: at(time.Second), Type: "tool.call", Outcome: store.OutcomeDeny, Reason: "insufficient_scope",
		UserID: "usr_1", Tool: "transfer"}
	e3 := store.AuditEvent{Time: at(2 * time.Second), Type: "key.create", Outcome: store.OutcomeAllow, UserID: "usr_2"}
	appendAudit(t, s, e1, e2)
	appendAudit(t, s, e3)

	got := listAudit(t, s, store.AuditFilter{})
	if len(got) != 3 {
		t.Fatalf("ListAudit = %d events, want 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID >= got[i-1].ID {
			t.Errorf("ListAudit not newest first by ID: %d then %d", got[i-1].ID, got[i].ID)
		}
	}
	for i, want := range []store.AuditEvent{e3, e2, e1} {
		want.ID = got[i].ID
		want.Time = ms(want.Time)
		if d := diff(want, got[i]); d != "" {
			t.Errorf("event %d mismatch (-want +got):\n%s", i, d)
		}
	}

	// A zero Time is recorded as the time of the append.
	before := time.Now().Add(-time.Second)
	appendAudit(t, s, store.AuditEvent{Type: "no.time", Outcome: store.OutcomeAllow})
	got = listAudit(t, s, store.AuditFilter{Type: "no.time"})
	if len(got) != 1 || got[0].Time.Before(before) || got[0].Time.After(time.Now().Add(time.Second)) {
		t.Errorf("event appended without a time: %+v", got)
	}
}

func testAuditFilters(t *testing.T, s store.Store) {
	var all []store.AuditEvent
	for i := range 12 {
		e := store.AuditEvent{
			Time:    at(time.Duration(i) * time.Minute),
			Type:    []string{"login", "tool.call", "key.create"}[i%3],
			Outcome: []string{store.OutcomeAllow, store.OutcomeDeny}[i%2],
			UserID:  []string{"usr_a", "usr_b", "usr_%", "usr__"}[i%4],
			Reason:  fmt.Sprintf("r%d", i),
		}
		all = append(all, e)
	}
	appendAudit(t, s, all...)
	reversed := func(es []store.AuditEvent) []store.AuditEvent {
		out := make([]store.AuditEvent, 0, len(es))
		for i := len(es) - 1; i >= 0; i-- {
			out = append(out, es[i])
		}
		return out
	}
	where := func(keep func(i int, e store.AuditEvent) bool) []store.AuditEvent {
		var out []store.AuditEvent
		for i, e := range all {
			if keep(i, e) {
				out = append(out, e)
			}
		}
		return reversed(out)
	}
	tests := []struct {
		name   string
		filter store.AuditFilter
		want   []store.AuditEvent
	}{
		{"none", store.AuditFilter{}, reversed(all)},
		{"type", store.AuditFilter{Type: "tool.call"}, where(func(i int, e store.AuditEvent) bool { return i%3 == 1 })},
		{"outcome", store.AuditFilter{Outcome: store.OutcomeDeny}, where(func(i int, e store.AuditEvent) bool { return i%2 == 1 })},
		{"user", store.AuditFilter{UserID: "usr_b"}, where(func(i int, e store.AuditEvent) bool { return i%4 == 1 })},
		{"user is not a pattern", store.AuditFilter{UserID: "usr_%"}, where(func(i int, e store.AuditEvent) bool { return i%4 == 2 })},
		{"user underscore literal", store.AuditFilter{UserID: "usr__"}, where(func(i int, e store.AuditEvent) bool { return i%4 == 3 })},
		{"since inclusive", store.AuditFilter{Since: at(9 * time.Minute)}, where(func(i int, e store.AuditEvent) bool { return i >= 9 })},
		{"until exclusive", store.AuditFilter{Until: at(2 * time.Minute)}, where(func(i int, e store.AuditEvent) bool { return i < 2 })},
		{"window", store.AuditFilter{Since: at(3 * time.Minute), Until: at(6 * time.Minute)},
			where(func(i int, e store.AuditEvent) bool { return i >= 3 && i < 6 })},
		{"combined", store.AuditFilter{Type: "login", Outcome: store.OutcomeAllow, UserID: "usr_a"},
			where(func(i int, e store.AuditEvent) bool { return i%3 == 0 && i%2 == 0 && i%4 == 0 })},
		{"limit", store.AuditFilter{Limit: 3}, reversed(all)[:3]},
		{"no match", store.AuditFilter{Type: "nope"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := listAudit(t, s, tc.filter)
			if d := diff(auditKeys(tc.want), auditKeys(got)); d != "" {
				t.Errorf("ListAudit(%+v) (-want +got):\n%s", tc.filter, d)
			}
		})
	}
}

func testAuditPagination(t *testing.T, s store.Store) {
	var all []store.AuditEvent
	for i := range 7 {
		all = append(all, store.AuditEvent{Time: at(time.Duration(i) * time.Second), Type: "t", Outcome: store.OutcomeAllow, Reason: fmt.Sprint(i)})
	}
	appendAudit(t, s, all...)
	// Events from another type interleave and must not disturb paging.
	appendAudit(t, s, store.AuditEvent{Time: at(time.Hour), Type: "other", Outcome: store.OutcomeAllow})

	var pages [][]string
	f := store.AuditFilter{Type: "t", Limit: 3}
	for range 10 {
		page := listAudit(t, s, f)
		if len(page) == 0 {
			break
		}
		var reasons []string
		for _, e := range page {
			reasons = append(reasons, e.Reason)
		}
		pages = append(pages, reasons)
		f.BeforeID = page[len(page)-1].ID
	}
	want := [][]string{{"6", "5", "4"}, {"3", "2", "1"}, {"0"}}
	if d := diff(want, pages); d != "" {
		t.Errorf("pages (-want +got):\n%s", d)
	}
}

func testAuditLimits(t *testing.T, s store.Store) {
	const n = 1005
	events := make([]store.AuditEvent, n)
	for i := range events {
		events[i] = store.AuditEvent{Time: at(time.Duration(i) * time.Millisecond), Type: "bulk", Outcome: store.OutcomeAllow}
	}
	appendAudit(t, s, events...)
	for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {1, 1}, {1000, 1000}, {5000, 1000}} {
		if got := listAudit(t, s, store.AuditFilter{Limit: tc.limit}); len(got) != tc.want {
			t.Errorf("ListAudit(Limit %d) = %d events, want %d", tc.limit, len(got), tc.want)
		}
	}
}

func testAuditDetails(t *testing.T, s store.Store) {
	details := map[string]any{
		"string":  "value",
		"number":  42.5,
		"integer": float64(1 << 40),
		"bool":    true,
		"null":    nil,
		"list":    []any{"a", 1.0, false},
		"nested":  map[string]any{"scopes": []any{"mcp:tools", "payments:write"}, "n": 0.0},
		"ключ 🔑":  "значение",
		"quote":   `"'; DROP TABLE audit_events; --`,
	}
	appendAudit(t, s,
		store.AuditEvent{Time: at(0), Type: "with", Outcome: store.OutcomeAllow, Details: details},
		store.AuditEvent{Time: at(0), Type: "without", Outcome: store.OutcomeAllow},
		store.AuditEvent{Time: at(0), Type: "empty", Outcome: store.OutcomeAllow, Details: map[string]any{}},
	)
	for typ, want := range map[string]map[string]any{"with": details, "without": nil, "empty": {}} {
		got := listAudit(t, s, store.AuditFilter{Type: typ})
		if len(got) != 1 {
			t.Fatalf("ListAudit(%s) = %d events, want 1", typ, len(got))
		}
		if d := diff(want, got[0].Details); d != "" {
			t.Errorf("details of %q did not round-trip (-want +got):\n%s", typ, d)
		}
	}

	// A value JSON cannot encode fails the whole batch, writing nothing.
	err := s.AppendAudit(t.Context(), []store.AuditEvent{
		{Time: at(0), Type: "batch", Outcome: store.OutcomeAllow},
		{Time: at(0), Type: "batch", Outcome: store.OutcomeAllow, Details: map[string]any{"bad": make(chan int)}},
	})
	if err == nil {
		t.Error("AppendAudit with unencodable details succeeded")
	}
	if got := listAudit(t, s, store.AuditFilter{Type: "batch"}); len(got) != 0 {
		t.Errorf("failed batch left %d events behind", len(got))
	}
}

func testAuditHostileStrings(t *testing.T, s store.Store) {
	hostile := []string{
		`'; DROP TABLE audit_events; --`,
		`" OR 1=1 --`,
		`\'\\%_$1?`,
		"日本語 — émoji 🔐 and RTL \u202e",
		"line\nbreak\ttab",
		"",
	}
	var events []store.AuditEvent
	for i, h := range hostile {
		events = append(events, store.AuditEvent{
			Time: at(time.Duration(i) * time.Second), Type: "hostile" + h, Outcome: store.OutcomeDeny, Reason: h,
			UserID: "usr" + h, CredentialID: h, ClientIP: h, UserAgent: h, Resource: h, Tool: h,
			Details: map[string]any{h: h},
		})
	}
	appendAudit(t, s, events...)
	for _, want := range events {
		got := listAudit(t, s, store.AuditFilter{Type: want.Type, UserID: want.UserID})
		if len(got) != 1 {
			t.Errorf("ListAudit(type %q) = %d events, want exactly 1", want.Type, len(got))
			continue
		}
		want.ID = got[0].ID
		want.Time = ms(want.Time)
		if d := diff(want, got[0]); d != "" {
			t.Errorf("hostile event mismatch (-want +got):\n%s", d)
		}
	}
	if got := listAudit(t, s, store.AuditFilter{}); len(got) != len(hostile) {
		t.Errorf("log holds %d events, want %d", len(got), len(hostile))
	}
}
