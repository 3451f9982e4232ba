// Package jsonout encodes reports as JSON the way every onnxpost report is
// written: indented, without HTML escaping, NaN and ±Inf as null.
package jsonout

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
)

// Safe returns v as a tree of maps, slices and scalars in which every
// NaN or ±Inf float is nil (JSON null), for values encoding/json refuses.
// It follows encoding/json's rules for struct fields (json tags,
// omitempty, "-", embedded structs) and uses json.Marshaler
// implementations as they are.
func Safe(v any) any {
	return safeValue(reflect.ValueOf(v))
}

var marshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
var textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()

func safeValue(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if v.Type().Implements(marshalerType) && !(v.Kind() == reflect.Pointer && v.IsNil()) {
		if b, err := v.Interface().(json.Marshaler).MarshalJSON(); err == nil {
			return json.RawMessage(b)
		}
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return safeValue(v.Elem())
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	case reflect.Struct:
		out := map[string]any{}
		safeStruct(v, out)
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := map[string]any{}
		it := v.MapRange()
		for it.Next() {
			k := it.Key()
			var key string
			if k.Type().Implements(textMarshalerType) {
				b, _ := k.Interface().(encoding.TextMarshaler).MarshalText()
				key = string(b)
			} else {
				key = fmt.Sprint(k.Interface())
			}
			out[key] = safeValue(it.Value())
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Interface()
		}
		fallthrough
	case reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = safeValue(v.Index(i))
		}
		return out
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return nil
	}
	return v.Interface()
}

func safeStruct(v reflect.Value, out map[string]any) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		fv := v.Field(i)
		if f.Anonymous && name == "" {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct {
				safeStruct(fv, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(","+opts+",", ",omitempty,") && fv.IsZero() {
			continue
		}
		if (fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && strings.Contains(","+opts+",", ",omitempty,") && fv.Len() == 0 {
			continue
		}
		out[name] = safeValue(fv)
	}
}

// Marshal encodes v as indented JSON without HTML escaping (gate
// expressions keep their < and >), ending with a newline. A NaN or Inf
// somewhere in v is written as null rather than failing.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		var uv *json.UnsupportedValueError
		if !errors.As(err, &uv) {
			return nil, fmt.Errorf("encoding JSON: %w", err)
		}
		buf.Reset()
		if err := enc.Encode(Safe(v)); err != nil {
			return nil, fmt.Errorf("encoding JSON: %w", err)
		}
	}
	return buf.Bytes(), nil
}
