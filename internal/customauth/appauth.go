package customauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// appAuth checks that POST /api/login-requests/{id}/user comes from the
// operator's application: by a shared secret (sharedSecret) or by an
// assertion signed with the application's private key (assertionVerifier,
// assertion.go).
type appAuth interface {
	// authenticate returns nil when r carries the application's credential
	// for login request id, or else the refusal to record and answer.
	authenticate(r *http.Request, id string) *authFailure
}

// authFailure is a refused credential: 401 with {"error": reason,
// "error_description": message}, audited as login_request.refused.
type authFailure struct {
	reason  string         // audit reason and "error" of the answer
	message string         // for the caller: the same for every failure of one mode
	details map[string]any // for the audit record only
}

// newAppAuth picks the mode: exactly one of opts.Secret and opts.PublicKeys.
func newAppAuth(opts Options) (appAuth, error) {
	switch {
	case len(opts.Secret) > 0 && len(opts.PublicKeys) > 0:
		return nil, errors.New("customauth.New: set Secret or PublicKeys, not both")
	case len(opts.PublicKeys) > 0:
		return newAssertionVerifier(opts.PublicKeys, opts.BaseURL, opts.Now)
	case len(opts.Secret) < MinSecretBytes:
		return nil, fmt.Errorf("customauth.New: the shared secret must be at least %d bytes (or give PublicKeys)", MinSecretBytes)
	}
	return sharedSecret(opts.Secret), nil
}

// sharedSecret: the application sends Authorization: Bearer <secret>.
type sharedSecret []byte

func (s sharedSecret) authenticate(r *http.Request, _ string) *authFailure {
	tok, ok := bearerToken(r)
	a := sha256.Sum256([]byte(tok))
	b := sha256.Sum256(s)
	if !ok || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return &authFailure{reason: ReasonBadSecret, message: "send the shared secret as Authorization: Bearer <secret>"}
	}
	return nil
}

// bearerToken returns the token of the request's one Authorization: Bearer
// header (RFC 6750 §2.1).
func bearerToken(r *http.Request) (string, bool) {
	auths := r.Header.Values("Authorization")
	if len(auths) != 1 {
		return "", false
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(auths[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
