package oauth

// This file decides which redirect URIs a client may register and which
// redirect_uri values of an authorization request match a registration.
//
// Registration (RFC 8252 §7 and §8.4, OAuth 2.1 §2.3, OIDC Registration §2):
//
//   - https URIs (web clients, and native apps with claimed https URIs,
//     RFC 8252 §7.2);
//   - http URIs on a loopback host only: 127.0.0.1, [::1] or localhost
//     (RFC 8252 §7.3; MCP authorization "Communication Security": "All
//     redirect URIs MUST be either localhost or use HTTPS");
//   - private-use URI schemes for native apps (RFC 8252 §7.1), such as
//     com.example.app:/cb, cursor://… or vscode://….
//
// RFC 8252 §8.4: "For private-use URI scheme-based redirects, authorization
// servers SHOULD enforce the requirement in Section 7.1 that clients use
// schemes that are reverse domain name based. At a minimum, any
// private-use URI scheme that doesn't contain a period character (".")
// SHOULD be rejected." mcpgate follows it: a private-use scheme must
// contain a period (reverse-DNS, com.example.app:/cb), with one exception,
// the explicit allowlist wellKnownSchemes of the schemes that well-known
// MCP clients register without a period (cursor, vscode, vscode-insiders,
// windsurf, claude, zed). Any other period-less scheme (myapp://, or one
// that squats a browser's or an OS's meaning) is refused, so a client
// cannot register a short scheme that many apps could claim. Schemes that
// mean something to a browser (javascript:, data:, file:, …) are refused
// whatever they contain. A public client at a private-use scheme is also
// never approved without the user (authorize.go, RFC 8252 §8.6).
//
// Refused everywhere: fragments (RFC 6749 §3.1.2: "The endpoint URI MUST
// NOT include a fragment component"), userinfo (https://good@evil.example
// sends the user to evil.example), wildcards, backslashes (browsers read
// https://good\@evil as a different host than Go does), white space and
// control characters, and non-ASCII characters (internationalised hosts
// must be registered in their punycode form, so look-alike Unicode hosts
// cannot be registered).
//
// application_type (OIDC Registration §2, MCP "Application Type and
// Redirect URI Constraints"): "web" clients may register https URIs only
// (no http loopback, no private-use scheme); "native" clients may register
// all three kinds. When a client does not say, mcpgate infers "web" when
// every redirect URI is https and "native" otherwise, so clients of the
// 2025 MCP revisions, which do not send application_type, keep working.

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Application types (OIDC Registration §2).
const (
	AppTypeWeb    = "web"
	AppTypeNative = "native"
)

// maxRedirectURILen bounds one redirect URI.
const maxRedirectURILen = 2000

// maxRedirectURIs bounds how many redirect URIs a client registers.
const maxRedirectURIs = 20

// redirectKind classifies a valid redirect URI.
type redirectKind int

const (
	redirectHTTPS      redirectKind = iota + 1 // https://host/…
	redirectLoopback                           // http://127.0.0.1|[::1]|localhost[:port]/…
	redirectPrivateUse                         // com.example.app:/…, cursor://…
)

// deniedSchemes are schemes a browser or the OS gives a meaning that makes
// them useless or dangerous as a redirect target.
var deniedSchemes = map[string]bool{
	"javascript": true, "vbscript": true, "data": true, "file": true, "about": true, "blob": true,
	"filesystem": true, "view-source": true, "ftp": true, "sftp": true, "ws": true, "wss": true,
	"mailto": true, "tel": true, "sms": true, "smsto": true, "mms": true, "intent": true, "jar": true,
	"chrome": true, "chrome-extension": true, "moz-extension": true, "resource": true, "urn": true,
	"ldap": true, "gopher": true, "news": true, "nntp": true, "telnet": true,
}

// wellKnownSchemes are the private-use schemes without a period that
// registration accepts (RFC 8252 §8.4 asks for reverse-DNS schemes): those
// of the MCP clients people use. Add to it only for a widely used client.
var wellKnownSchemes = map[string]bool{
	"cursor": true, "vscode": true, "vscode-insiders": true, "windsurf": true, "claude": true, "zed": true,
}

// loopbackHosts are the hosts of RFC 8252 §7.3 loopback redirects, as they
// appear in a URI's authority.
var loopbackHosts = []string{"127.0.0.1", "[::1]", "localhost"}

// classifyRedirectURI validates one redirect URI for registration and says
// what kind it is. The message explains a refusal to the client developer.
func classifyRedirectURI(raw string) (redirectKind, string) {
	switch {
	case raw == "":
		return 0, "a redirect URI is empty"
	case len(raw) > maxRedirectURILen:
		return 0, "a redirect URI is longer than " + strconv.Itoa(maxRedirectURILen) + " characters"
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= 0x80:
			return 0, "redirect URI " + quoteURI(raw) + " contains non-ASCII characters (percent-encode them; register internationalised hosts in punycode)"
		case c <= 0x20 || c == 0x7f:
			return 0, "redirect URI " + quoteURI(raw) + " contains white space or control characters"
		case c == '#':
			return 0, "redirect URI " + quoteURI(raw) + " has a fragment, which RFC 6749 §3.1.2 forbids"
		case c == '*':
			return 0, "redirect URI " + quoteURI(raw) + " contains '*': wildcards are not supported, register each URI exactly"
		case c == '\\':
			return 0, "redirect URI " + quoteURI(raw) + " contains a backslash"
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return 0, "redirect URI " + quoteURI(raw) + " is not an absolute URI"
	}
	if !strings.HasPrefix(raw, u.Scheme+":") {
		// url.Parse lowercases the scheme; exact matching needs the
		// registered form to be the canonical one.
		return 0, "redirect URI " + quoteURI(raw) + " must have a lower-case scheme"
	}
	if u.User != nil {
		return 0, "redirect URI " + quoteURI(raw) + " has a userinfo part (user@), which is not allowed"
	}
	switch u.Scheme {
	case "https":
		if !strings.HasPrefix(raw, "https://") || u.Opaque != "" {
			return 0, "redirect URI " + quoteURI(raw) + " must be of the form https://host/path"
		}
		if msg := checkAuthority(u); msg != "" {
			return 0, "redirect URI " + quoteURI(raw) + ": " + msg
		}
		return redirectHTTPS, ""
	case "http":
		if _, ok := loopbackParts(raw); !ok {
			return 0, "redirect URI " + quoteURI(raw) + " uses http on a host that is not loopback: use https, or http://127.0.0.1, http://[::1] or http://localhost (any port) for a native app"
		}
		return redirectLoopback, ""
	}
	if len(u.Scheme) < 2 || deniedSchemes[u.Scheme] {
		return 0, "redirect URI " + quoteURI(raw) + " uses the scheme " + strconv.Quote(u.Scheme) + ", which cannot be a redirect target"
	}
	if !strings.Contains(u.Scheme, ".") && !wellKnownSchemes[u.Scheme] {
		// RFC 8252 §8.4: reverse-DNS private-use schemes only.
		return 0, "redirect URI " + quoteURI(raw) + " uses the private-use scheme " + strconv.Quote(u.Scheme) +
			", which is not reverse-DNS based: use a scheme with a period, such as com.example.app:/callback (RFC 8252 §7.1, §8.4)"
	}
	return redirectPrivateUse, ""
}

// checkAuthority checks the host and port of an https URI.
func checkAuthority(u *url.URL) string {
	host := u.Hostname()
	if host == "" {
		return "no host"
	}
	if strings.HasSuffix(u.Host, ":") {
		return "empty port"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "invalid port"
		}
	}
	if strings.HasPrefix(u.Host, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return "invalid IPv6 host"
		}
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !validDNSName(host) {
		return "invalid host name " + strconv.Quote(host)
	}
	return ""
}

// validDNSName reports whether host is a plain DNS name: dot-separated
// labels of letters, digits and hyphens (punycode included), no empty
// label, no trailing dot.
func validDNSName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// loopback is a loopback redirect URI split for port-insensitive matching.
type loopback struct {
	host string // "127.0.0.1", "[::1]" or "localhost"
	rest string // everything after the authority: path and query, as written
}

// loopbackParts splits an RFC 8252 §7.3 loopback redirect URI: the exact
// scheme "http://", a loopback host, an optional port 1-65535, then the
// rest. It works on the raw string, so what is compared is what the
// browser will be sent to.
func loopbackParts(raw string) (loopback, bool) {
	rest, ok := strings.CutPrefix(raw, "http://")
	if !ok {
		return loopback{}, false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.ContainsAny(tail, "#\\") || strings.ContainsFunc(tail, func(r rune) bool { return r <= 0x20 || r >= 0x7f }) {
		return loopback{}, false
	}
	for _, h := range loopbackHosts {
		port, ok := strings.CutPrefix(authority, h)
		if !ok {
			continue
		}
		if port == "" {
			return loopback{host: h, rest: tail}, true
		}
		p, ok := strings.CutPrefix(port, ":")
		if !ok || p == "" || len(p) > 5 {
			return loopback{}, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return loopback{}, false
		}
		return loopback{host: h, rest: tail}, true
	}
	return loopback{}, false
}

// MatchRedirectURI reports whether uri, the redirect_uri of an
// authorization request, is registered for client.
//
// OAuth 2.1 §2.3.1: "Authorization servers MUST reject authorization
// requests that specify a redirect URI that doesn't exactly match one that
// was registered, with an exception for loopback redirects, where an exact
// match is required except for the port URI component." RFC 9700 §2.1:
// "authorization servers MUST utilize exact string matching except for
// port numbers in localhost redirection URIs of native apps". Matching is simple string comparison (RFC 3986 §6.2.1): no
// normalisation, no prefix matching, so path tricks (/cb/../evil, /cb/x,
// /CB), port tricks on https, added userinfo or fragments never match.
//
// RFC 8252 §7.3: "The authorization server MUST allow any port to be
// specified at the time of the request for loopback IP redirect URIs". The
// exception applies only when both the registered URI and uri are
// loopback redirects (exact scheme "http://", host 127.0.0.1, [::1] or
// localhost): the host must be the same string (127.0.0.1 does not match
// localhost), and the path and query must be identical.
//
// localhost: RFC 8252 §8.3 says "the use of localhost is NOT RECOMMENDED"
// for clients, because a name may resolve elsewhere; it does not forbid an
// authorization server to accept it. mcpgate gives localhost the same
// any-port treatment as the IP literals, because the MCP clients people use
// register it that way (Claude Code's metadata document lists
// http://localhost/callback and calls back on an ephemeral port), browsers
// resolve localhost to loopback themselves, and the port variance adds no
// risk for localhost that it does not add for 127.0.0.1.
//
// The token endpoint must then compare its redirect_uri with the one of the
// authorization request byte for byte (RFC 6749 §4.1.3), not with this
// function.
func MatchRedirectURI(client store.OAuthClient, uri string) bool {
	if uri == "" {
		return false
	}
	for _, r := range client.RedirectURIs {
		if r == uri {
			return true
		}
	}
	req, ok := loopbackParts(uri)
	if !ok {
		return false
	}
	if kind, _ := classifyRedirectURI(uri); kind != redirectLoopback {
		return false
	}
	for _, r := range client.RedirectURIs {
		if reg, ok := loopbackParts(r); ok && reg.host == req.host && reg.rest == req.rest {
			return true
		}
	}
	return false
}

// validateRedirectURIs checks a client's redirect URIs against its
// application type (appType "" = infer) and returns the effective
// application type. Duplicates are removed, order kept.
func validateRedirectURIs(uris []string, appType string) ([]string, string, string) {
	if len(uris) > maxRedirectURIs {
		return nil, "", "at most " + strconv.Itoa(maxRedirectURIs) + " redirect URIs may be registered"
	}
	var out []string
	seen := map[string]bool{}
	allHTTPS := true
	for _, u := range uris {
		kind, msg := classifyRedirectURI(u)
		if msg != "" {
			return nil, "", msg
		}
		if kind != redirectHTTPS {
			allHTTPS = false
			if appType == AppTypeWeb {
				return nil, "", "redirect URI " + quoteURI(u) + " is not https, which a client with application_type \"web\" may not use; register with application_type \"native\""
			}
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if appType == "" {
		appType = AppTypeNative
		if allHTTPS && len(uris) > 0 {
			appType = AppTypeWeb
		}
	}
	return out, appType, ""
}

// quoteURI quotes a URI for an error message, cut to a readable length.
func quoteURI(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.QuoteToASCII(s)
}
