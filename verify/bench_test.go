package verify_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// Run with
//
//	go test -run '^$' -bench . -benchmem ./verify/
//
// Targets (issue 4): VerifyCached ≤ 0.5 µs/op and 0 allocs/op;
// VerifyCold within 1.3× of RawSignatureCheck (ES256 verification alone:
// SHA-256 of the signing input and the ECDSA check), same run.

// benchTokens mints n ES256 access tokens shaped like mcpgate's (the real
// issuer, a CIMD URL as client id) and returns them with a verifier.
func benchTokens(b *testing.B, n int, cacheSize int) (*verify.Verifier, []string, *tokens.Issuer) {
	b.Helper()
	ctx := b.Context()
	iss, err := tokens.NewIssuer(ctx, storetest.SQLite(b), make32("bench"), tokens.Options{
		Issuer: "https://mcpgate.example.com", Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]string, n)
	for i := range toks {
		toks[i], _, err = iss.MintAccessToken(ctx, tokens.AccessClaims{
			Subject:  "usr_" + strings.Repeat("a", 26),
			ClientID: "https://app.example.com/oauth/client-metadata.json",
			Audience: "https://mcpgate.example.com/mcp",
			Scopes:   []string{"payments:read", "payments:write", "openid", "offline_access"},
			GrantID:  fmt.Sprintf("grt_%026d", i),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	v, err := verify.New(verify.Options{
		Issuer: "https://mcpgate.example.com", Audience: "https://mcpgate.example.com/mcp",
		Keys: iss.KeySet(), CacheSize: cacheSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	return v, toks, iss
}

func BenchmarkVerifyCached(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			v, toks, _ := benchTokens(b, n, 0)
			ctx := b.Context()
			for _, tok := range toks {
				if _, err := v.VerifyCompact(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(toks[0])))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c, err := v.VerifyCompact(ctx, toks[i])
				if err != nil || c.Subject == "" {
					b.Fatal(err)
				}
				if i++; i == len(toks) {
					i = 0
				}
			}
		})
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	v, toks, _ := benchTokens(b, 64, 0)
	ctx := b.Context()
	for _, tok := range toks {
		if _, err := v.VerifyCompact(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.VerifyCompact(ctx, toks[i%len(toks)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkVerifyCold is the full verification without the cache: parse,
// header checks, key lookup, signature, claims.
func BenchmarkVerifyCold(b *testing.B) {
	v, toks, _ := benchTokens(b, 1, -1)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyCompact(ctx, toks[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSignatureCheck is the ES256 check alone on the same token:
// SHA-256 of the signing input, then ECDSA P-256 verification.
func BenchmarkRawSignatureCheck(b *testing.B) {
	_, toks, iss := benchTokens(b, 1, -1)
	tok := toks[0]
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	pk, err := iss.KeySet().LookupKey(b.Context(), headerKidB(b, tok), "ES256")
	if err != nil {
		b.Fatal(err)
	}
	pub := pk.Key.(*ecdsa.PublicKey)
	input := []byte(tok[:dot])
	b.ReportAllocs()
	for b.Loop() {
		d := sha256.Sum256(input)
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, d[:], r, s) {
			b.Fatal("signature does not verify")
		}
	}
}

func headerKidB(b *testing.B, tok string) string {
	h, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		b.Fatal(err)
	}
	_, after, _ := strings.Cut(string(raw), `"kid":"`)
	kid, _, _ := strings.Cut(after, `"`)
	return kid
}
