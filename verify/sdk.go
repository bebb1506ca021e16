package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/auth"
)

// TokenVerifier adapts v to the MCP Go SDK, so that any Go MCP server can
// accept mcpgate's access tokens:
//
//	handler := auth.RequireBearerToken(v.TokenVerifier(), &auth.RequireBearerTokenOptions{
//		ResourceMetadataURL: "https://tools.example.com/.well-known/oauth-protected-resource/mcp",
//	})(mcpHandler)
//
// The TokenInfo carries the subject as UserID (the SDK binds sessions to
// it), the scopes and the expiry; Extra holds "client_id", "gid" and "jti".
// Refused tokens yield errors wrapping auth.ErrInvalidToken (401 with a
// challenge); an unreachable key source yields a plain error (500), since
// the token itself may be fine.
func (v *Verifier) TokenVerifier() auth.TokenVerifier {
	return func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		c, err := v.VerifyCompact(ctx, token)
		if err != nil {
			if errors.Is(err, ErrKeysUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", auth.ErrInvalidToken, err)
		}
		return &auth.TokenInfo{
			Scopes:     c.Scopes(),
			Expiration: c.ExpiresAt,
			UserID:     c.Subject,
			Extra: map[string]any{
				"client_id": c.ClientID,
				"gid":       c.GrantID,
				"jti":       c.JTI,
			},
		}, nil
	}
}
