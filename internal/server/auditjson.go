package server

import (
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// AuditJSON is the exported JSON shape of an audit event (CLI, API, export).
func AuditJSON(e store.AuditEvent) map[string]any {
	m := map[string]any{
		"id": e.ID, "time": e.Time.UTC().Format(time.RFC3339Nano), "type": e.Type, "outcome": e.Outcome,
	}
	for k, v := range map[string]string{"reason": e.Reason, "user_id": e.UserID, "credential_id": e.CredentialID,
		"client_ip": e.ClientIP, "user_agent": e.UserAgent, "resource": e.Resource, "tool": e.Tool} {
		if v != "" {
			m[k] = v
		}
	}
	if len(e.Details) > 0 {
		m["details"] = e.Details
	}
	return m
}
