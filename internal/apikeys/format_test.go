package apikeys

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

// scannerPattern is the regular expression the package comment gives to
// secret scanners.
var scannerPattern = regexp.MustCompile(`\bmcpg_[0-9A-Za-z]{49}\b`)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		k := Generate()
		if len(k) != 54 || KeyLen != 54 {
			t.Fatalf("len(%q) = %d, want 54", k, len(k))
		}
		if !scannerPattern.MatchString(k) {
			t.Fatalf("%q does not match the documented scanner pattern", k)
		}
		if err := Parse(k); err != nil {
			t.Fatalf("Parse(Generate()) = %v", err)
		}
		if seen[k] {
			t.Fatalf("Generate returned %q twice", k)
		}
		seen[k] = true
		if got := DisplayPrefix(k); got != k[:12] || !strings.HasPrefix(got, "mcpg_") {
			t.Fatalf("DisplayPrefix(%q) = %q", k, got)
		}
	}
}

// referenceKey builds a key from the format description alone, with math/big
// and hash/crc32, to cross-check the hand-written encoder and CRC.
func referenceKey(random []byte) string {
	digits := func(n *big.Int, width int) string {
		const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		var out []byte
		n = new(big.Int).Set(n)
		base, rem := big.NewInt(62), new(big.Int)
		for n.Sign() > 0 {
			n.QuoRem(n, base, rem)
			out = append([]byte{alphabet[rem.Int64()]}, out...)
		}
		return strings.Repeat("0", width-len(out)) + string(out)
	}
	head := "mcpg_" + digits(new(big.Int).SetBytes(random), 43)
	sum := crc32.ChecksumIEEE([]byte(head))
	return head + digits(new(big.Int).SetUint64(uint64(sum)), 6)
}

func TestFormatMatchesReference(t *testing.T) {
	inputs := [][32]byte{{}, {31: 1}, {0: 1}}
	var ones [32]byte
	for i := range ones {
		ones[i] = 0xff
	}
	inputs = append(inputs, ones)
	for range 500 {
		var r [32]byte
		rand.Read(r[:])
		inputs = append(inputs, r)
	}
	for _, in := range inputs {
		got, want := format(in), referenceKey(in[:])
		if got != want {
			t.Fatalf("format(%x) = %q, reference %q", in, got, want)
		}
		if err := Parse(got); err != nil {
			t.Fatalf("Parse(%q) = %v", got, err)
		}
	}
	if got, want := format([32]byte{}), "mcpg_"+strings.Repeat("0", 43); got[:48] != want {
		t.Errorf("zero key = %q, want body of 43 zeros", got)
	}
}

func TestCRC32String(t *testing.T) {
	for n := range 80 {
		b := make([]byte, n)
		rand.Read(b)
		if got, want := crc32String(string(b)), crc32.ChecksumIEEE(b); got != want {
			t.Fatalf("crc32String(%d bytes) = %08x, want %08x", n, got, want)
		}
	}
}

func TestHash(t *testing.T) {
	for _, s := range []string{"", "x", Generate(), strings.Repeat("y", 54), strings.Repeat("z", 1000)} {
		if got, want := Hash(s), sha256.Sum256([]byte(s)); got != want {
			t.Errorf("Hash(%.20q…) = %x, want SHA-256 %x", s, got, want)
		}
	}
}

// withChecksum replaces the last 6 characters of a 54-character string by
// the checksum of the first 48, so that a test isolates another check.
func withChecksum(s string) string {
	head := s[:48]
	sum := crc32.ChecksumIEEE([]byte(head))
	var cs [6]byte
	for i := 5; i >= 0; i-- {
		cs[i] = base62Digits[sum%62]
		sum /= 62
	}
	return head + string(cs[:])
}

// malformedKeys are strings that Parse and Verify must reject.
func malformedKeys() []struct{ name, key string } {
	good := Generate()
	body := good[5:48]
	return []struct{ name, key string }{
		{"empty", ""},
		{"prefix only", "mcpg_"},
		{"huge", "mcpg_" + strings.Repeat("A", 1<<20)},
		{"one short", good[:53]},
		{"one long", good + "0"},
		{"trailing newline", good + "\n"},
		{"leading space", " " + good[1:]},
		{"wrong prefix", withChecksum("mcpk_" + body + "000000")},
		{"upper-case prefix", withChecksum("MCPG_" + body + "000000")},
		{"prefix without underscore", withChecksum("mcpgx" + body + "000000")},
		{"other vendor prefix", withChecksum("sk_l_" + body + "000000")},
		{"dash in body", withChecksum("mcpg_-" + body[1:] + "000000")},
		{"underscore in body", withChecksum("mcpg_" + body[:20] + "_" + body[21:] + "000000")},
		{"base64 characters", withChecksum("mcpg_" + body[:41] + "+/" + "000000")},
		{"NUL byte", withChecksum("mcpg_" + body[:42] + "\x00" + "000000")},
		// Same byte length as a real key: two ASCII characters replaced by
		// one two-byte Cyrillic 'о' (U+043E), which looks like 'o'.
		{"cyrillic lookalike", withChecksum("mcpg_" + body[:40] + "о" + body[42:] + "000000")},
		{"fullwidth digit", withChecksum("mcpg_" + body[:40] + "０" + "000000")}, // U+FF10 is 3 bytes
		{"invalid UTF-8", withChecksum("mcpg_" + body[:42] + "\xff" + "000000")},
		{"SQL injection", withChecksum("mcpg_" + "' OR '1'='1' --" + body[15:] + "000000")},
		{"SQL comment and quote", "mcpg_'; DROP TABLE api_keys; --" + strings.Repeat("a", 23)},
		{"LIKE wildcard", withChecksum("mcpg_%" + body[1:] + "000000")},
		{"bad checksum", good[:48] + flip(good[48:49]) + good[49:]},
		{"checksum of another key", good[:48] + Generate()[48:]},
		{"body above 2^256-1", withChecksum("mcpg_" + strings.Repeat("z", 43) + "000000")},
	}
}

// flip returns a different base62 character.
func flip(c string) string {
	if c == "0" {
		return "1"
	}
	return "0"
}

func TestParseRejects(t *testing.T) {
	for _, tc := range malformedKeys() {
		t.Run(tc.name, func(t *testing.T) {
			err := Parse(tc.key)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, want ErrMalformed", err)
			}
			if len(tc.key) > 10 && strings.Contains(err.Error(), tc.key[5:]) {
				t.Errorf("error %q repeats the input", err)
			}
			if got := DisplayPrefix(tc.key); got != "" {
				t.Errorf("DisplayPrefix = %q, want \"\"", got)
			}
		})
	}
}

// TestParseDetectsEverySingleCharacterChange: a typo anywhere in a key, to
// any other key character, is caught without a database read.
func TestParseDetectsEverySingleCharacterChange(t *testing.T) {
	for range 5 {
		good := Generate()
		for i := range len(good) {
			for j := 0; j < len(base62Digits); j++ {
				c := base62Digits[j]
				if c == good[i] {
					continue
				}
				bad := good[:i] + string(c) + good[i+1:]
				if err := Parse(bad); !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse(%q) (position %d changed) = %v, want ErrMalformed", bad, i, err)
				}
			}
		}
	}
}

// TestParseSwapsDetected: swapping two adjacent different characters is the
// other classic transcription error.
func TestParseSwapsDetected(t *testing.T) {
	good := Generate()
	for i := 5; i+1 < len(good); i++ {
		if good[i] == good[i+1] {
			continue
		}
		bad := good[:i] + string(good[i+1]) + string(good[i]) + good[i+2:]
		if err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse with positions %d,%d swapped = %v, want ErrMalformed", i, i+1, err)
		}
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	good, bad := Generate(), Generate()[:53]+"!"
	if n := testing.AllocsPerRun(100, func() { _ = Parse(good); _ = Parse(bad) }); n != 0 {
		t.Errorf("Parse allocates %v times per call, want 0", n)
	}
}
