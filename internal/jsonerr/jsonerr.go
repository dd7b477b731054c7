// Package jsonerr turns encoding/json errors into messages a person can act
// on: a line and column for syntax errors, a key path and the expected and
// actual JSON types for type errors.
package jsonerr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Position returns the 1-based line and column (in bytes) of offset off in
// data. Offsets past the end are clamped to the end.
func Position(data []byte, off int64) (line, col int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// Describe explains a json.Unmarshal error for data. Syntax errors become
// "line L, column C: <reason>"; type errors become
// "line L, column C: <key.path>: expected <kind>, got <kind>". Other errors
// are returned as their text.
func Describe(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read including the offending one; at
		// the end of input it is the length, which is where the problem is.
		off := syn.Offset
		if off > 0 && !strings.Contains(syn.Error(), "unexpected end") {
			off--
		}
		line, col := Position(data, off)
		return fmt.Sprintf("line %d, column %d: %s", line, col, syn.Error())
	case errors.As(err, &typ):
		off := typ.Offset
		if off > 0 {
			off--
		}
		line, col := Position(data, off)
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Sprintf("line %d, column %d: %s: expected %s, got %s", line, col, field, KindOf(typ.Type), typ.Value)
	}
	return err.Error()
}

// KindOf names the JSON kind that decodes into Go type t: "object",
// "array", "string", "number", "boolean" (pointers are looked through).
func KindOf(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

// KindOfValue names the JSON kind of a value decoded into any (with or
// without json.Decoder.UseNumber).
func KindOfValue(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}
