package jsonerr

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestPosition(t *testing.T) {
	data := []byte("ab\ncd\n\nef")
	for _, tc := range []struct {
		off       int64
		line, col int
	}{{0, 1, 1}, {1, 1, 2}, {2, 1, 3}, {3, 2, 1}, {4, 2, 2}, {6, 3, 1}, {7, 4, 1}, {8, 4, 2}, {99, 4, 3}, {-1, 1, 1}} {
		l, c := Position(data, tc.off)
		if l != tc.line || c != tc.col {
			t.Errorf("Position(%d) = %d:%d, want %d:%d", tc.off, l, c, tc.line, tc.col)
		}
	}
}

func TestDescribe(t *testing.T) {
	type inner struct {
		Timeout int      `json:"timeout"`
		Args    []string `json:"args"`
	}
	type outer struct {
		Proxmox inner `json:"proxmox"`
	}
	for _, tc := range []struct{ in, want string }{
		{"{\n  \"a\": 1,,\n}", "line 2, column 10: invalid character ','"},
		{"{\n\"a\": 1", "line 2, column 7: unexpected end of JSON input"},
		{"{\"proxmox\": {\"timeout\": \"x\"}}", "proxmox.timeout: expected integer, got string"},
		{"{\"proxmox\": {\"args\": \"sh\"}}", "proxmox.args: expected array, got string"},
		{"[]", "(top level): expected object, got array"},
	} {
		var v outer
		err := json.Unmarshal([]byte(tc.in), &v)
		if err == nil {
			t.Fatalf("%q decoded", tc.in)
		}
		if got := Describe([]byte(tc.in), err); !strings.Contains(got, tc.want) {
			t.Errorf("Describe(%q) = %q, want it to contain %q", tc.in, got, tc.want)
		}
	}
}

func TestKinds(t *testing.T) {
	var b *bool
	for _, tc := range []struct {
		v    any
		want string
	}{
		{struct{}{}, "object"}, {map[string]int{}, "object"}, {[]int{}, "array"}, {[2]int{}, "array"},
		{"", "string"}, {1, "integer"}, {1.5, "number"}, {b, "boolean"},
	} {
		if got := KindOf(reflect.TypeOf(tc.v)); got != tc.want {
			t.Errorf("KindOf(%T) = %q, want %q", tc.v, got, tc.want)
		}
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(`{"o":{},"a":[],"s":"","n":1,"b":true,"z":null}`), &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"o": "object", "a": "array", "s": "string", "n": "number", "b": "boolean", "z": "null"} {
		if got := KindOfValue(m[k]); got != want {
			t.Errorf("KindOfValue(%s) = %q, want %q", k, got, want)
		}
	}
}
