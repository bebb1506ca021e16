package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeEmail(t *testing.T) {
	good := map[string]string{
		"Alice@Example.com":     "alice@example.com",
		"  bob@example.com\t":   "bob@example.com",
		"x+tag@sub.example.org": "x+tag@sub.example.org",
		"admin@localhost":       "admin@localhost",
	}
	for in, want := range good {
		got, err := NormalizeEmail(in)
		if err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", "alice", "alice@", "@example.com", "Alice <alice@example.com>",
		"аlice@example.com", // Cyrillic а: a look-alike must not create a second "alice"
		"alice@exаmple.com",
		// U+212A KELVIN SIGN lower-cases to ASCII "k": it must be refused
		// as non-ASCII, not folded into kate@example.com.
		"\u212Aate@example.com", "kate@\u212Aelvin.example", "\u212A@example.com",
		"alice@example.com\x00", "a b@example.com", "alice@example.com, bob@example.com",
		"' OR 1=1 --@example.com",
		strings.Repeat("a", 250) + "@example.com",
	}
	for _, in := range bad {
		if got, err := NormalizeEmail(in); err == nil {
			t.Errorf("NormalizeEmail(%q) accepted as %q", in, got)
		} else {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "email" {
				t.Errorf("NormalizeEmail(%q): error %v is not a field error", in, err)
			}
		}
	}
}

func TestEmailDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Pat@Example.COM":          "example.com",
		"pat@sub.example.org":      "sub.example.org",
		"pat@\u212Aelvin.example":  "", // not kelvin.example
		"pat@evil.com@example.com": "",
		"no-at-sign":               "",
		"":                         "",
	} {
		got, ok := EmailDomain(in)
		if got != want || ok != (want != "") {
			t.Errorf("EmailDomain(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestNormalizeEmailDomain(t *testing.T) {
	for in, want := range map[string]string{"@Example.com": "example.com", " sub.Example.org ": "sub.example.org", "xn--bcher-kva.example": "xn--bcher-kva.example"} {
		if got, err := NormalizeEmailDomain(in); err != nil || got != want {
			t.Errorf("NormalizeEmailDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "@", "localhost", "example", "a@example.com", "exa mple.com", "example.com/x", "bücher.example", "\u212Aelvin.example", "example..com"} {
		if got, err := NormalizeEmailDomain(in); err == nil {
			t.Errorf("NormalizeEmailDomain(%q) accepted as %q", in, got)
		}
	}
}

func TestPasswordPolicy(t *testing.T) {
	for pw, ok := range map[string]bool{
		"short":                        false,
		"elevenchars":                  false,
		"twelve chars":                 true,
		"ünïcödé-long":                 true, // 12 runes, more bytes
		strings.Repeat("x", 1024):      true,
		strings.Repeat("x", 1025):      false,
		strings.Repeat("x", 1<<20):     false,
		"\xff\xfe invalid utf8 stuff!": false,
	} {
		if err := CheckPasswordPolicy(pw); (err == nil) != ok {
			t.Errorf("CheckPasswordPolicy(%.20q…) = %v, want ok=%v", pw, err, ok)
		}
	}
}

func TestPasswordHashRoundTrip(t *testing.T) {
	h := HashPassword("correct horse battery")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not an OWASP-parameter argon2id PHC string", h)
	}
	if err := VerifyPassword(h, "correct horse battery"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := VerifyPassword(h, "correct horse batterY"); !errors.Is(err, ErrPasswordMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	if h2 := HashPassword("correct horse battery"); h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 4 GiB: refused, not attempted
		"$argon2id$v=19$m=19456,t=2,p=1$!!$!!"} {
		if err := VerifyPassword(bad, "x"); err == nil || errors.Is(err, ErrPasswordMismatch) {
			t.Errorf("VerifyPassword(%q) = %v, want a format error", bad, err)
		}
	}
}

func TestGeneratePassword(t *testing.T) {
	a, b := GeneratePassword(), GeneratePassword()
	if a == b || len(a) != 20 || CheckPasswordPolicy(a) != nil {
		t.Fatalf("generated %q and %q", a, b)
	}
}

func TestCheckRolesAndName(t *testing.T) {
	roles, err := CheckRoles([]string{"admin", " auditor ", "admin", ""})
	if err != nil || strings.Join(roles, ",") != "admin,auditor" {
		t.Fatalf("CheckRoles = %v, %v", roles, err)
	}
	for _, bad := range []string{"Admin", "a b", "rôle", strings.Repeat("r", 65), "x;drop"} {
		if _, err := CheckRoles([]string{bad}); err == nil {
			t.Errorf("role %q accepted", bad)
		}
	}
	if _, err := CheckDisplayName("Eve\u202egnp.exe"); err == nil {
		t.Error("right-to-left override accepted in a display name")
	}
	if _, err := CheckDisplayName(strings.Repeat("n", 201)); err == nil {
		t.Error("201-character name accepted")
	}
}
