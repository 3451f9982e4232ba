package onnxio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/onnxpost/onnxpost/internal/safefile"
	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// Field numbers of onnx.proto3 that the streaming scanner reads.
const (
	fieldModelGraph       = 7  // ModelProto.graph
	fieldGraphInitializer = 5  // GraphProto.initializer
	fieldGraphInput       = 11 // GraphProto.input
	fieldGraphOutput      = 12 // GraphProto.output
	fieldTensorName       = 8  // TensorProto.name
	fieldTensorExternal   = 13 // TensorProto.external_data
	fieldEntryKey         = 1  // StringStringEntryProto.key
	fieldEntryValue       = 2  // StringStringEntryProto.value
)

// wireField is one field of a message being scanned: its number and, for a
// length-delimited field, where its bytes lie in the file.
type wireField struct {
	num      protowire.Number
	typ      protowire.Type
	off, len int64
	vstart   int64 // where the encoded value starts (just after the tag)
}

// scanFields calls fn for every field of the message in r[off:end),
// reading only tags and lengths (a tensor's data is skipped, never read).
func scanFields(r io.ReaderAt, off, end int64, fn func(f wireField) error) error {
	var buf [2 * binary64]byte
	for off < end {
		n := int64(len(buf))
		if end-off < n {
			n = end - off
		}
		b := buf[:n]
		if _, err := r.ReadAt(b, off); err != nil && err != io.EOF {
			return err
		}
		num, typ, tl := protowire.ConsumeTag(b)
		if tl < 0 {
			return fmt.Errorf("%w: %v", ErrFormat, protowire.ParseError(tl))
		}
		off += int64(tl)
		f := wireField{num: num, typ: typ, vstart: off}
		switch typ {
		case protowire.VarintType:
			_, vl := protowire.ConsumeVarint(b[tl:])
			if vl < 0 {
				return fmt.Errorf("%w: %v", ErrFormat, protowire.ParseError(vl))
			}
			off += int64(vl)
		case protowire.Fixed32Type:
			off += 4
		case protowire.Fixed64Type:
			off += 8
		case protowire.BytesType:
			l, vl := protowire.ConsumeVarint(b[tl:])
			if vl < 0 {
				return fmt.Errorf("%w: %v", ErrFormat, protowire.ParseError(vl))
			}
			off += int64(vl)
			if l > uint64(end-off) {
				return fmt.Errorf("%w: field %d of %d bytes runs past its message", ErrFormat, num, l)
			}
			f.off, f.len = off, int64(l)
			off += int64(l)
		default:
			return fmt.Errorf("%w: unsupported wire type %d", ErrFormat, typ)
		}
		if off > end {
			return fmt.Errorf("%w: field %d runs past its message", ErrFormat, num)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// binary64 is the longest varint; a tag and a length fit in two.
const binary64 = 10

// readField returns the bytes of a length-delimited field, refusing one
// over max bytes.
func readField(r io.ReaderAt, f wireField, max int64) ([]byte, error) {
	if f.len > max {
		return nil, fmt.Errorf("%w: field %d of %d bytes, over %d", ErrLimit, f.num, f.len, max)
	}
	b := make([]byte, f.len)
	if _, err := r.ReadAt(b, f.off); err != nil && !(err == io.EOF && f.len == 0) {
		return nil, err
	}
	return b, nil
}

// scanGraph finds the main graph of the model in r (size bytes) and calls
// fn for each of its fields.
func scanGraph(r io.ReaderAt, size int64, fn func(f wireField) error) error {
	found := false
	err := scanFields(r, 0, size, func(f wireField) error {
		if f.num != fieldModelGraph || f.typ != protowire.BytesType {
			return nil
		}
		found = true
		return scanFields(r, f.off, f.off+f.len, fn)
	})
	if err == nil && !found {
		err = fmt.Errorf("%w: model has no graph", ErrFormat)
	}
	return err
}

// smallField bounds a field the scanner reads whole (a name, a value
// info, an external-data entry): 64 MiB.
const smallField = 64 << 20

// DataFiles lists the external data locations that the main graph's
// initializers of the model file at path reference, as written in the
// model (unresolved), each once, in order of first use. It streams over the
// file and reads no tensor data, so it is cheap on a large inline model.
func DataFiles(path string) ([]string, error) {
	f, size, err := safefile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return dataFiles(f, size)
}

func dataFiles(r io.ReaderAt, size int64) ([]string, error) {
	var locs []string
	seen := map[string]bool{}
	err := scanGraph(r, size, func(g wireField) error {
		if g.num != fieldGraphInitializer || g.typ != protowire.BytesType {
			return nil
		}
		return scanFields(r, g.off, g.off+g.len, func(t wireField) error {
			if t.num != fieldTensorExternal || t.typ != protowire.BytesType {
				return nil
			}
			b, err := readField(r, t, smallField)
			if err != nil {
				return err
			}
			e := &pb.StringStringEntryProto{}
			if err := proto.Unmarshal(b, e); err != nil {
				return fmt.Errorf("%w: %v", ErrFormat, err)
			}
			if e.GetKey() == "location" && !seen[e.GetValue()] {
				seen[e.GetValue()] = true
				locs = append(locs, e.GetValue())
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return locs, nil
}

// Signature holds a model's graph inputs (initializers excluded) and
// outputs.
type Signature struct {
	Inputs, Outputs []ValueInfo
}

// ReadSignature returns the graph inputs (those that are not initializers)
// and outputs of the model file at path. It streams over the file, reading
// only value infos and initializer names, so describing a large model costs
// almost no memory (Load would hold all its tensors).
func ReadSignature(path string) (*Signature, error) {
	f, size, err := safefile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > DefaultLimits.MaxModelBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrLimit, path, size, DefaultLimits.MaxModelBytes)
	}
	s, err := readSignature(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ReadSignatureFrom is ReadSignature on a serialized model of size bytes
// held by r (e.g. a bytes.Reader): nothing is copied but value infos and
// initializer names.
func ReadSignatureFrom(r io.ReaderAt, size int64) (*Signature, error) {
	return readSignature(r, size)
}

func readSignature(r io.ReaderAt, size int64) (*Signature, error) {
	var ins, outs []*pb.ValueInfoProto
	inits := map[string]bool{}
	err := scanGraph(r, size, func(g wireField) error {
		if g.typ != protowire.BytesType {
			return nil
		}
		switch g.num {
		case fieldGraphInput, fieldGraphOutput:
			b, err := readField(r, g, smallField)
			if err != nil {
				return err
			}
			v := &pb.ValueInfoProto{}
			if err := proto.Unmarshal(b, v); err != nil {
				return fmt.Errorf("%w: %v", ErrFormat, err)
			}
			if g.num == fieldGraphInput {
				ins = append(ins, v)
			} else {
				outs = append(outs, v)
			}
		case fieldGraphInitializer:
			return scanFields(r, g.off, g.off+g.len, func(t wireField) error {
				if t.num != fieldTensorName || t.typ != protowire.BytesType {
					return nil
				}
				b, err := readField(r, t, smallField)
				if err != nil {
					return err
				}
				inits[string(b)] = true
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s := &Signature{}
	for _, v := range ins {
		if !inits[v.GetName()] {
			s.Inputs = append(s.Inputs, valueInfoFromProto(v))
		}
	}
	for _, v := range outs {
		s.Outputs = append(s.Outputs, valueInfoFromProto(v))
	}
	return s, nil
}

// DiskSize returns the size of the model file at path plus the sizes of
// the external data files (in its folder) that its initializers reference.
func DiskSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	n := st.Size()
	locs, err := DataFiles(path)
	if err != nil {
		return 0, err
	}
	for _, l := range locs {
		p, err := resolveLocal(filepath.Dir(path), l)
		if err != nil {
			return 0, err
		}
		ds, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		n += ds.Size()
	}
	return n, nil
}

// lazyThreshold is the smallest inline raw_data that LoadLazy leaves in
// the file.
var lazyThreshold int64 = 64 << 10

const fieldTensorRawData = 9 // TensorProto.raw_data

// LoadLazy loads the model at path like Load but leaves the raw data of the
// main graph's large inline initializers (64 KiB and more) in the file: they
// become references into the model file itself, read on demand like
// external data. Describing, inspecting and counting the parameters of a
// large inline model thus costs memory for its graph only, not its weights.
//
// The model is meant for reading. Its large initializers report IsExternal,
// so Save with ExternalAuto writes them to a data file; the model file must
// not change while the model is in use.
func LoadLazy(path string, opts ...Option) (*Model, error) {
	cfg, f, size, err := openModel(path, opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	p, err := lazyModel(f, size, filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Model{p: p, dir: dir, limits: cfg.limits}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.reindex()
	return m, nil
}

// appendField appends field f of r (tag and value) to b.
func appendField(b []byte, r io.ReaderAt, f wireField) ([]byte, error) {
	// the tag and length precede f.off; re-encode them
	b = protowire.AppendTag(b, f.num, f.typ)
	switch f.typ {
	case protowire.BytesType:
		b = protowire.AppendVarint(b, uint64(f.len))
		n := len(b)
		b = append(b, make([]byte, f.len)...)
		if _, err := r.ReadAt(b[n:], f.off); err != nil && !(err == io.EOF && f.len == 0) {
			return nil, err
		}
		return b, nil
	}
	// scalar fields: copy their encoded value
	var v [binary64]byte
	n, err := r.ReadAt(v[:], f.vstart)
	if err != nil && err != io.EOF {
		return nil, err
	}
	var l int
	switch f.typ {
	case protowire.VarintType:
		_, l = protowire.ConsumeVarint(v[:n])
	case protowire.Fixed32Type:
		l = 4
	case protowire.Fixed64Type:
		l = 8
	}
	if l <= 0 || l > n {
		return nil, fmt.Errorf("%w: bad field %d", ErrFormat, f.num)
	}
	return append(b, v[:l]...), nil
}

// lazyModel decodes the model in r field by field (protobuf merges
// repeated occurrences of a message), replacing large raw_data of the main
// graph's initializers by references to file at their offsets.
func lazyModel(r io.ReaderAt, size int64, file string) (*pb.ModelProto, error) {
	var top, graph []byte
	var inits []*pb.TensorProto
	err := scanFields(r, 0, size, func(f wireField) error {
		if f.num != fieldModelGraph || f.typ != protowire.BytesType {
			var err error
			top, err = appendField(top, r, f)
			return err
		}
		return scanFields(r, f.off, f.off+f.len, func(g wireField) error {
			if g.num != fieldGraphInitializer || g.typ != protowire.BytesType {
				var err error
				graph, err = appendField(graph, r, g)
				return err
			}
			var tb []byte
			var raw *wireField
			err := scanFields(r, g.off, g.off+g.len, func(t wireField) error {
				if t.num == fieldTensorRawData && t.typ == protowire.BytesType && t.len >= lazyThreshold {
					tf := t
					raw = &tf
					return nil
				}
				var err error
				tb, err = appendField(tb, r, t)
				return err
			})
			if err != nil {
				return err
			}
			t := &pb.TensorProto{}
			if err := proto.Unmarshal(tb, t); err != nil {
				return fmt.Errorf("%w: %v", ErrFormat, err)
			}
			if raw != nil {
				if t.GetDataLocation() == pb.TensorProto_EXTERNAL || len(t.ExternalData) > 0 {
					return fmt.Errorf("%w: initializer %q has both raw_data and external data", ErrFormat, t.GetName())
				}
				t.DataLocation = pb.TensorProto_EXTERNAL.Enum()
				t.ExternalData = []*pb.StringStringEntryProto{
					{Key: proto.String("location"), Value: proto.String(file)},
					{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(raw.off, 10))},
					{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(raw.len, 10))},
				}
			}
			inits = append(inits, t)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	p := &pb.ModelProto{}
	if err := proto.Unmarshal(top, p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	g := &pb.GraphProto{}
	if err := proto.Unmarshal(graph, g); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	g.Initializer = inits
	p.Graph = g
	return p, nil
}
