package verify_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// An MCP server (or any Go service) accepts mcpgate's access tokens by
// reading mcpgate's JWKS. Here an mcpgate token issuer runs in process,
// serving /jwks on a local test server.
func Example() {
	ctx := context.Background()
	jwksURL, mintFor, stop := startIssuer(ctx)
	defer stop()

	keys, err := verify.RemoteJWKS(jwksURL, verify.RemoteOptions{})
	if err != nil {
		panic(err)
	}
	v, err := verify.New(verify.Options{
		Issuer:   "https://auth.example.com",      // mcpgate's issuer, exactly
		Audience: "https://tools.example.com/mcp", // this server: tokens for others are refused
		Keys:     keys,
	})
	if err != nil {
		panic(err)
	}

	claims, err := v.Verify(ctx, mintFor("https://tools.example.com/mcp"))
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.ClientID, claims.Scopes)

	_, err = v.Verify(ctx, mintFor("https://other.example.com/mcp"))
	fmt.Println(verify.Reason(err))

	// With the MCP Go SDK: wrap the MCP handler.
	_ = auth.RequireBearerToken(v.TokenVerifier(), &auth.RequireBearerTokenOptions{
		ResourceMetadataURL: "https://tools.example.com/.well-known/oauth-protected-resource/mcp",
	})

	// Output:
	// usr_alice client-1 [payments:read]
	// wrong_audience
}

// startIssuer runs an mcpgate token issuer on a temporary SQLite database
// and returns its JWKS URL and a function minting a token for a resource.
func startIssuer(ctx context.Context) (jwksURL string, mintFor func(aud string) string, stop func()) {
	dir, err := os.MkdirTemp("", "verify-example")
	if err != nil {
		panic(err)
	}
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "mcpgate.db"))
	if err != nil {
		panic(err)
	}
	if err := db.Migrate(ctx); err != nil {
		panic(err)
	}
	iss, err := tokens.NewIssuer(ctx, db, []byte("an example server key of 32 byte"), tokens.Options{
		Issuer: "https://auth.example.com",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(iss.JWKSHandler())
	mintFor = func(aud string) string {
		tok, _, err := iss.MintAccessToken(ctx, tokens.AccessClaims{
			Subject: "usr_alice", ClientID: "client-1", Audience: aud, Scopes: []string{"payments:read"},
		})
		if err != nil {
			panic(err)
		}
		return tok
	}
	return srv.URL + "/jwks", mintFor, func() { srv.Close(); db.Close(); os.RemoveAll(dir) }
}
