// Package npz reads and writes numpy's .npy and .npz files: little-endian
// (or single-byte) bool, int8-int64, uint8-uint64, float16, float32 and
// float64 arrays in C order, format versions 1.0, 2.0 and 3.0, stored or
// deflate-compressed archives (numpy.savez, numpy.savez_compressed).
//
// # Trust
//
// Files are untrusted: every header field and length is checked, against
// Limits too, before use; the reader allocates in proportion to the bytes
// actually present, returns errors wrapping ErrFormat (ErrLimit past
// Limits) and never panics. The arrays read from one archive hold at most
// MaxTotalBytes together, checked against each entry's declared size and
// .npy header before its data is inflated; an entry that inflates past its
// declared size stops there; arrays a caller does not select
// (ReadSelected) are skipped unread. Files are opened only when they are
// regular files (FIFOs and devices are refused before the open).
// Fortran-order, big-endian, structured, object and string arrays are
// rejected with an error saying so.
package npz

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/internal/safefile"
)

// ErrFormat reports a malformed or unsupported .npy/.npz file.
var ErrFormat = errors.New("npz: invalid npy/npz data")

// Limits bounds what the .npy/.npz reader accepts from untrusted files.
type Limits struct {
	// MaxArrayBytes bounds the data of one array (default 4 GiB).
	MaxArrayBytes int64
	// MaxArrays bounds the number of arrays in one .npz (default 4096).
	MaxArrays int
	// MaxHeaderBytes bounds a .npy header (default 65536).
	MaxHeaderBytes int
	// MaxRank bounds the number of dimensions (default 32).
	MaxRank int
	// MaxTotalBytes bounds the data of all the arrays read from one .npz
	// together (default 4 GiB). Arrays that are skipped (see ReadSelected)
	// are not read and do not count.
	MaxTotalBytes int64
}

// DefaultLimits are the limits used by ReadNPY, ReadNPZ and LoadDataset.
var DefaultLimits = Limits{MaxArrayBytes: 4 << 30, MaxArrays: 4096, MaxHeaderBytes: 1 << 16, MaxRank: 32, MaxTotalBytes: 4 << 30}

// ErrLimit reports an array or archive beyond Limits (its header or the
// archive's directory says so before the data is read).
var ErrLimit = errors.New("npz: limit exceeded")

func (l Limits) withDefaults() Limits {
	if l.MaxArrayBytes <= 0 {
		l.MaxArrayBytes = DefaultLimits.MaxArrayBytes
	}
	if l.MaxArrays <= 0 {
		l.MaxArrays = DefaultLimits.MaxArrays
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultLimits.MaxHeaderBytes
	}
	if l.MaxRank <= 0 {
		l.MaxRank = DefaultLimits.MaxRank
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultLimits.MaxTotalBytes
	}
	return l
}

var npyMagic = []byte("\x93NUMPY")

// descrTypes maps numpy type codes (without byte order) to dtypes.
var descrTypes = map[string]Type{
	"b1": Bool, "i1": Int8, "u1": Uint8,
	"i2": Int16, "u2": Uint16, "f2": Float16,
	"i4": Int32, "u4": Uint32, "f4": Float32,
	"i8": Int64, "u8": Uint64, "f8": Float64,
}

// Read reads every array of a .npz archive of the given size with
// DefaultLimits.
func Read(r io.ReaderAt, size int64) (map[string]*Array, error) { return DefaultLimits.Read(r, size) }

// ReadNPY reads one .npy array from r with DefaultLimits.
func ReadNPY(r io.Reader) (*Array, error) { return DefaultLimits.ReadNPY(r) }

// ReadNPY reads one .npy array (format versions 1.0, 2.0 and 3.0) from r.
// Supported: little-endian (or single-byte) bool, int8..int64,
// uint8..uint64, float16, float32 and float64 in C order. Fortran order,
// big-endian data, structured, object and string dtypes are rejected with
// an error wrapping ErrFormat. Trailing bytes after the data are an error.
func (l Limits) ReadNPY(r io.Reader) (*Array, error) {
	l = l.withDefaults()
	return l.readNPY(r, -1, l.MaxArrayBytes)
}

// readNPY parses the header, then reads the data (and checks that nothing
// follows it). avail is the number of bytes the source declares (an
// archive entry's uncompressed size; -1: unknown); budget bounds the data.
// Both are checked against the header's shape before any data is read.
func (l Limits) readNPY(r io.Reader, avail, budget int64) (*Array, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: file too short for a .npy header", ErrFormat)
	}
	if !bytes.Equal(pre[:6], npyMagic) {
		return nil, fmt.Errorf("%w: not a .npy file (bad magic)", ErrFormat)
	}
	major := pre[6]
	var hlen int
	switch major {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("%w: truncated header length", ErrFormat)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("%w: truncated header length", ErrFormat)
		}
		h := binary.LittleEndian.Uint32(b[:])
		if int64(h) > int64(l.MaxHeaderBytes) {
			return nil, fmt.Errorf("%w: header of %d bytes exceeds the limit of %d", ErrFormat, h, l.MaxHeaderBytes)
		}
		hlen = int(h)
	default:
		return nil, fmt.Errorf("%w: unsupported .npy format version %d.%d", ErrFormat, pre[6], pre[7])
	}
	if hlen > l.MaxHeaderBytes {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the limit of %d", ErrFormat, hlen, l.MaxHeaderBytes)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("%w: truncated header (%d bytes declared)", ErrFormat, hlen)
	}
	dtype, shape, err := l.parseHeader(string(hdr))
	if err != nil {
		return nil, err
	}
	es := int64(elemSize(dtype))
	n, err := numElements(shape, l.MaxArrayBytes/es)
	if err != nil {
		return nil, fmt.Errorf("%w: shape %v of %v exceeds the limit of %d bytes", ErrFormat, shape, dtype, l.MaxArrayBytes)
	}
	size := n * es
	if avail >= 0 && size > avail {
		return nil, fmt.Errorf("%w: data truncated: shape %v of %v needs %d bytes, the archive entry holds %d", ErrFormat, shape, dtype, size, avail)
	}
	if size > budget {
		return nil, fmt.Errorf("%w: shape %v of %v needs %d bytes, over the %d bytes left of the limit for all arrays (MaxTotalBytes)", ErrLimit, shape, dtype, size, budget)
	}
	// Read gradually (io.ReadAll grows its buffer) so a lying header cannot
	// make us allocate more than the bytes actually present.
	data, err := io.ReadAll(io.LimitReader(r, size+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading data: %v", ErrFormat, err)
	}
	if int64(len(data)) < size {
		return nil, fmt.Errorf("%w: data truncated: shape %v of %v needs %d bytes, file has %d", ErrFormat, shape, dtype, size, len(data))
	}
	if int64(len(data)) > size {
		return nil, fmt.Errorf("%w: trailing bytes after the data of shape %v", ErrFormat, shape)
	}
	return &Array{Type: dtype, Shape: shape, Data: data[:size:size]}, nil
}

// parseHeader parses the Python dict literal of a .npy header.
func (l Limits) parseHeader(h string) (Type, []int64, error) {
	p := &pyParser{s: h}
	v, err := p.value(0)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return 0, nil, fmt.Errorf("%w: header: unexpected text after the dictionary", ErrFormat)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return 0, nil, fmt.Errorf("%w: header is not a dictionary", ErrFormat)
	}
	for k := range d {
		if k != "descr" && k != "fortran_order" && k != "shape" {
			return 0, nil, fmt.Errorf("%w: header has unknown key %q", ErrFormat, k)
		}
	}
	descr, ok := d["descr"].(string)
	if !ok {
		return 0, nil, fmt.Errorf("%w: header's descr is missing or not a simple type (structured arrays are not supported)", ErrFormat)
	}
	fo, ok := d["fortran_order"].(bool)
	if !ok {
		return 0, nil, fmt.Errorf("%w: header's fortran_order is missing or not a bool", ErrFormat)
	}
	if fo {
		return 0, nil, fmt.Errorf("%w: Fortran-order arrays are not supported; save a C-order array (numpy.ascontiguousarray)", ErrFormat)
	}
	tup, ok := d["shape"].([]any)
	if !ok {
		return 0, nil, fmt.Errorf("%w: header's shape is missing or not a tuple", ErrFormat)
	}
	if len(tup) > l.MaxRank {
		return 0, nil, fmt.Errorf("%w: rank %d exceeds the limit of %d", ErrFormat, len(tup), l.MaxRank)
	}
	shape := make([]int64, len(tup))
	for i, x := range tup {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return 0, nil, fmt.Errorf("%w: header's shape has an invalid dimension", ErrFormat)
		}
		shape[i] = n
	}
	dtype, err := parseDescr(descr)
	if err != nil {
		return 0, nil, err
	}
	return dtype, shape, nil
}

func parseDescr(descr string) (Type, error) {
	if len(descr) < 2 {
		return 0, fmt.Errorf("%w: unsupported dtype %q", ErrFormat, descr)
	}
	order, code := descr[0], descr[1:]
	dt, ok := descrTypes[code]
	if !ok {
		return 0, fmt.Errorf("%w: unsupported dtype %q (supported: bool, int8-64, uint8-64, float16/32/64)", ErrFormat, descr)
	}
	single := elemSize(dt) == 1
	switch order {
	case '<', '=':
	case '|':
		if !single {
			return 0, fmt.Errorf("%w: dtype %q has no byte order", ErrFormat, descr)
		}
	case '>':
		if !single {
			return 0, fmt.Errorf("%w: big-endian dtype %q is not supported; convert with array.astype('<%s')", ErrFormat, descr, code)
		}
	default:
		return 0, fmt.Errorf("%w: unsupported dtype %q", ErrFormat, descr)
	}
	return dt, nil
}

// pyParser parses the subset of Python literals found in .npy headers:
// dicts, tuples, lists, strings, integers, True/False/None.
type pyParser struct {
	s string
	i int
}

func (p *pyParser) skipSpace() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > 8 {
		return nil, errors.New("nesting too deep")
	}
	p.skipSpace()
	if p.i >= len(p.s) {
		return nil, errors.New("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		m := map[string]any{}
		for {
			p.skipSpace()
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				return m, nil
			}
			k, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, errors.New("dictionary key is not a string")
			}
			p.skipSpace()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, errors.New("expected ':'")
			}
			p.i++
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if _, dup := m[ks]; dup {
				return nil, fmt.Errorf("duplicate key %q", ks)
			}
			m[ks] = v
			if err := p.sep('}'); err != nil {
				return nil, err
			}
		}
	case c == '(' || c == '[':
		end := byte(')')
		if c == '[' {
			end = ']'
		}
		p.i++
		var t []any
		for {
			p.skipSpace()
			if p.i < len(p.s) && p.s[p.i] == end {
				p.i++
				return t, nil
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if len(t) >= 64 {
				return nil, errors.New("tuple too long")
			}
			t = append(t, v)
			if err := p.sep(end); err != nil {
				return nil, err
			}
		}
	case c == '\'' || c == '"':
		p.i++
		j := strings.IndexByte(p.s[p.i:], c)
		if j < 0 {
			return nil, errors.New("unterminated string")
		}
		s := p.s[p.i : p.i+j]
		if strings.IndexByte(s, '\\') >= 0 {
			return nil, errors.New("escapes in strings are not supported")
		}
		p.i += j + 1
		return s, nil
	case c >= '0' && c <= '9' || c == '-':
		j := p.i + 1
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		n, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer %q", p.s[p.i:j])
		}
		p.i = j
		if p.i < len(p.s) && p.s[p.i] == 'L' { // Python 2 long
			p.i++
		}
		return n, nil
	default:
		for _, w := range []struct {
			s string
			v any
		}{{"True", true}, {"False", false}, {"None", nil}} {
			if strings.HasPrefix(p.s[p.i:], w.s) {
				p.i += len(w.s)
				return w.v, nil
			}
		}
		return nil, fmt.Errorf("unexpected character %q", c)
	}
}

// sep consumes a ',' or peeks the closing delimiter.
func (p *pyParser) sep(end byte) error {
	p.skipSpace()
	if p.i >= len(p.s) {
		return errors.New("unexpected end")
	}
	switch p.s[p.i] {
	case ',':
		p.i++
		return nil
	case end:
		return nil
	}
	return fmt.Errorf("expected ',' or %q", end)
}

// ReadFile reads every array of the .npz file at path with DefaultLimits.
func ReadFile(path string) (map[string]*Array, error) { return DefaultLimits.ReadFile(path) }

// ReadFile reads every array of the .npz file at path (numpy.savez or
// savez_compressed), keyed by name without the .npy suffix.
func (l Limits) ReadFile(path string) (map[string]*Array, error) {
	m, _, err := l.ReadFileSelected(path, nil)
	return m, err
}

// ReadFileSelected is ReadSelected on the .npz file at path. The path must
// be a regular file (symlinks followed): FIFOs and devices are refused
// before they are opened.
func (l Limits) ReadFileSelected(path string, want func(name string) bool) (map[string]*Array, []string, error) {
	f, size, err := safefile.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	m, skipped, err := l.ReadSelected(f, size, want)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, skipped, nil
}

// Read reads every array of a .npz archive of the given size.
func (l Limits) Read(r io.ReaderAt, size int64) (map[string]*Array, error) {
	m, _, err := l.ReadSelected(r, size, nil)
	return m, err
}

// ReadSelected reads the arrays of a .npz archive for which want returns
// true (all when want is nil) and returns the names of the others, which
// are skipped unread (their data is neither inflated nor checked). The
// arrays read together hold at most MaxTotalBytes: an entry whose declared
// size, or whose .npy header, would pass what is left is refused before its
// data is read, and an entry that inflates past its declared size is an
// error as soon as it does.
func (l Limits) ReadSelected(r io.ReaderAt, size int64, want func(name string) bool) (map[string]*Array, []string, error) {
	l = l.withDefaults()
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, nil, fmt.Errorf("%w: not a .npz (zip) archive: %v", ErrFormat, err)
	}
	if len(zr.File) > l.MaxArrays {
		return nil, nil, fmt.Errorf("%w: %d arrays exceed the limit of %d", ErrFormat, len(zr.File), l.MaxArrays)
	}
	out := map[string]*Array{}
	seen := map[string]bool{}
	var skipped []string
	budget := l.MaxTotalBytes
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue // a folder entry
		}
		name, ok := strings.CutSuffix(f.Name, ".npy")
		if !ok {
			return nil, nil, fmt.Errorf("%w: archive entry %q is not a .npy array", ErrFormat, f.Name)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("%w: array %q appears twice", ErrFormat, name)
		}
		seen[name] = true
		if want != nil && !want(name) {
			skipped = append(skipped, name)
			continue
		}
		declared := f.UncompressedSize64
		if declared > uint64(budget)+uint64(l.MaxHeaderBytes)+16 {
			return nil, nil, fmt.Errorf("%w: array %q declares %d bytes, over the %d bytes left of the limit for all arrays (MaxTotalBytes)", ErrLimit, name, declared, budget)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: array %q: %v", ErrFormat, name, err)
		}
		// archive/zip fails a read past the declared size; the limit
		// reader makes that bound explicit for readNPY's size checks
		a, err := l.readNPY(bufio.NewReader(&declaredReader{r: rc, left: int64(declared)}), int64(declared), budget)
		rc.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("array %q: %w", name, err)
		}
		budget -= int64(len(a.Data))
		out[name] = a
	}
	return out, skipped, nil
}

// declaredReader reads an archive entry and fails once it yields more
// than the entry's declared uncompressed size (a zip bomb whose directory
// understates its size stops there).
type declaredReader struct {
	r    io.Reader
	left int64
}

func (d *declaredReader) Read(p []byte) (int, error) {
	if d.left <= 0 {
		var one [1]byte
		n, err := d.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: the archive entry inflates past its declared size", ErrFormat)
		}
		if err == nil || err == io.EOF {
			return 0, io.EOF
		}
		return 0, err // e.g. the checksum, checked at the end
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.r.Read(p)
	d.left -= int64(n)
	return n, err
}

// WriteNPY writes a as a version 1.0 .npy array (version 2.0 when the
// header needs it).
func WriteNPY(w io.Writer, a *Array) error {
	if err := a.Validate(); err != nil {
		return err
	}
	var code string
	for c, d := range descrTypes {
		if d == a.Type {
			code = c
		}
	}
	if code == "" {
		return fmt.Errorf("%w: cannot write type %v to .npy", ErrFormat, a.Type)
	}
	order := "<"
	if elemSize(a.Type) == 1 {
		order = "|"
	}
	dims := make([]string, len(a.Shape))
	for i, d := range a.Shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	shape := strings.Join(dims, ", ")
	if len(dims) == 1 {
		shape += ","
	}
	h := fmt.Sprintf("{'descr': '%s%s', 'fortran_order': False, 'shape': (%s), }", order, code, shape)
	var pre []byte
	total := len(h) + 1 + 10
	if total+(64-total%64)%64 < 1<<16 {
		pad := (64 - total%64) % 64
		h += strings.Repeat(" ", pad) + "\n"
		pre = append(append([]byte{}, npyMagic...), 1, 0, 0, 0)
		binary.LittleEndian.PutUint16(pre[8:], uint16(len(h)))
	} else {
		total += 2
		pad := (64 - total%64) % 64
		h += strings.Repeat(" ", pad) + "\n"
		pre = append(append([]byte{}, npyMagic...), 2, 0, 0, 0, 0, 0)
		binary.LittleEndian.PutUint32(pre[8:], uint32(len(h)))
	}
	for _, b := range [][]byte{pre, []byte(h), a.Data} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes arrays to path as an uncompressed .npz (like numpy.savez),
// in name order. It writes to a temporary file in the same folder and
// renames it into place.
func WriteFile(path string, arrays map[string]*Array) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.npz")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriter(tmp)
	if err = Write(bw, arrays); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil { // CreateTemp makes 0600
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Write writes arrays to w as an uncompressed .npz archive, in name
// order.
func Write(w io.Writer, arrays map[string]*Array) error {
	names := make([]string, 0, len(arrays))
	for n := range arrays {
		names = append(names, n)
	}
	sort.Strings(names)
	zw := zip.NewWriter(w)
	for _, n := range names {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: n + ".npy", Method: zip.Store})
		if err != nil {
			return err
		}
		if err := WriteNPY(fw, arrays[n]); err != nil {
			return fmt.Errorf("array %q: %w", n, err)
		}
	}
	return zw.Close()
}
