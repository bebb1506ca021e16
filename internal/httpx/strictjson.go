package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxJSONDepth bounds the nesting CheckJSON accepts; the JSON mcpgate
// reads (MCP messages, posted users) is shallow.
const MaxJSONDepth = 64

// CheckJSON walks body once and refuses a repeated member name in any
// object, at any level, and nesting deeper than MaxJSONDepth. Names
// "SHOULD be unique" (RFC 8259 §4), and where they are not, decoders
// disagree on which one wins (and on whether null overrides): a
// security-relevant document with {"name":"transfer","name":null} or
// {"sub":"u-100",…,"sub":"u-1"} could be read one way where it is checked
// and another where it is used, so mcpgate refuses such documents
// outright (RFC 7519 §4 allows a JWT recipient the same). It does not
// decode: callers parse the body after it passes.
func CheckJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object    bool
		keys      map[string]struct{}
		expectKey bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 {
				return errors.New("unterminated JSON")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			top := &stack[n-1]
			if top.expectKey {
				if key, ok := tok.(string); ok {
					if _, dup := top.keys[key]; dup {
						return fmt.Errorf("member %q appears twice", key)
					}
					top.keys[key] = struct{}{}
					top.expectKey = false
					continue
				}
			} else {
				top.expectKey = true // this token is the value
			}
		}
		switch tok {
		case json.Delim('{'):
			if len(stack) >= MaxJSONDepth {
				return errors.New("JSON nested too deeply")
			}
			stack = append(stack, frame{object: true, keys: map[string]struct{}{}, expectKey: true})
		case json.Delim('['):
			if len(stack) >= MaxJSONDepth {
				return errors.New("JSON nested too deeply")
			}
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
		}
	}
}
