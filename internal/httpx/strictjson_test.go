package httpx

import (
	"strings"
	"testing"
)

func TestCheckJSON(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"flat", `{"sub":"u-1","roles":["a","b"],"n":1}`, true},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}`, true},
		{"name equal to a value", `{"a":"b","b":"a"}`, true},
		{"at most MaxJSONDepth deep", strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth), true},
		{"repeated at the top", `{"sub":"u-100","name":"x","sub":"u-1"}`, false},
		{"repeated with null", `{"name":"write","name":null}`, false},
		{"repeated after a nested value", `{"a":{"sub":1},"sub":2,"sub":3}`, false},
		{"repeated inside an object", `{"user":{"roles":["member"],"roles":["auditor"]}}`, false},
		{"repeated inside an array", `[{"a":1},{"b":1,"b":2}]`, false},
		{"too deep", deep, false},
		{"unterminated", `{"a":[1,2`, false},
		{"not JSON", `{"a":}`, false},
	} {
		if err := CheckJSON([]byte(tc.body)); (err == nil) != tc.ok {
			t.Errorf("%s: CheckJSON(%.40q) = %v, want ok %v", tc.name, tc.body, err, tc.ok)
		}
	}
}
