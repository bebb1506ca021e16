package loginflow_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/store"
)

func TestCallbackCode(t *testing.T) {
	code, hash := loginflow.NewCallbackCode()
	other, _ := loginflow.NewCallbackCode()
	if len(code) != 43 || code == other || string(hash) == code {
		t.Fatalf("NewCallbackCode = %q, %x: want 256 random bits, stored only as a hash", code, hash)
	}
	f := store.LoginFlow{CallbackHash: hash}
	for _, tc := range []struct {
		name string
		f    store.LoginFlow
		code string
		want bool
	}{
		{"its code", f, code, true},
		{"another code", f, other, false},
		{"no code", f, "", false},
		{"the hash itself", f, string(hash), false},
		{"a flow without a code (no user yet)", store.LoginFlow{}, code, false},
		{"a flow without a code, no code", store.LoginFlow{}, "", false},
	} {
		if got := loginflow.CallbackCodeMatches(tc.f, tc.code); got != tc.want {
			t.Errorf("%s: CallbackCodeMatches = %v, want %v", tc.name, got, tc.want)
		}
	}
}
