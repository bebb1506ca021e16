package loginflow

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/mcpgate/mcpgate/internal/store"
)

// The callback code of a custom login flow.
//
// A custom login comes back through the operator's application, and the
// identity travels server to server (POST /api/login-requests/{id}/user).
// The binding cookie proves only that a callback comes from the browser
// that *started* the flow. Without more, whoever starts a flow can forward
// the application's (genuine) login link to a victim, let the victim sign
// in there, and finish the callback with the starter's cookie — a session
// as the victim: the "cross-device consent phishing" of RFC 10027 (BCP
// 247) §3, possible because nothing from the browser that authenticated is
// needed to finish.
//
// So the application's answer carries a fresh one-time callback code that
// only the browser it redirects ever sees, and /login/callback needs both:
// the code (this browser signed in at the application) and the binding
// cookie (this browser started the sign-in). The code plays the part of
// the OAuth authorization code, which reaches the authenticating browser
// only (RFC 6749 §4.1.2). Only its SHA-256 is stored
// (store.LoginFlow.CallbackHash), set in the same conditional update as
// the user, so it is handed out once.

// NewCallbackCode returns a fresh callback code (256 random bits,
// base64url) and the SHA-256 to store for it.
func NewCallbackCode() (code string, hash []byte) {
	code = Token()
	return code, Hash(code)
}

// CallbackCodeMatches reports whether code is the callback code of f,
// comparing SHA-256 digests in constant time. A flow without a code (no
// user posted yet, or an upstream flow) matches none.
func CallbackCodeMatches(f store.LoginFlow, code string) bool {
	return code != "" && len(f.CallbackHash) == sha256.Size && subtle.ConstantTimeCompare(Hash(code), f.CallbackHash) == 1
}
