package onnxio

import (
	"io"
	"os"
	"unsafe"
)

// dataWriter writes a save's external data file front to back. Where the
// operating system allows it (Linux; see setDirect) the bytes bypass the
// page cache: whole aligned blocks go to the disk straight from the
// caller's memory (O_DIRECT) and only the last partial block is written
// through the cache. A save then neither copies its output into newly
// allocated page-cache memory — on this project's virtual machines that
// copy costs ~2.4 CPU seconds per GB, more than the disk write itself —
// nor evicts the user's cached files for a file it will not read again.
// When direct writes are unavailable (tmpfs, another OS, ONNXPOST_DIRECT_IO
// set to "off") or refused, the writer falls back to ordinary writes with
// early writeback (startWriteback). Either way the file's bytes are the
// same; durability is still the caller's fsync.
type dataWriter struct {
	f       *os.File
	direct  bool   // O_DIRECT is set on f
	stage   []byte // aligned staging block of a direct writer (made on first use)
	n       int    // bytes staged (they belong at offset off)
	off     int64  // file offset where the staged bytes start
	flushed int64  // end of the range handed to startWriteback (buffered)
}

// directAlign is the alignment of direct writes' memory, offsets and
// lengths: a multiple of every block size in use (512-byte and 4 KiB
// sectors, 4 KiB pages).
const directAlign = 4096

// directStage is the size of a direct writer's staging block.
const directStage = 4 << 20

// directMin is the smallest model file written with direct writes (the
// data file always is): below it the copy through the cache is cheap.
const directMin = 1 << 20

// directIO is false when direct writes are turned off (tests, and the
// ONNXPOST_DIRECT_IO=off environment setting).
var directIO = os.Getenv("ONNXPOST_DIRECT_IO") != "off"

// newDataWriter returns a writer over the empty file f.
func newDataWriter(f *os.File) *dataWriter {
	w := &dataWriter{f: f}
	if directIO && setDirect(f, true) == nil {
		w.direct = true
	}
	return w
}

// alignedBlock returns n bytes whose address is a multiple of directAlign.
func alignedBlock(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}

// aligned reports whether p starts at an aligned address.
func aligned(p []byte) bool {
	return len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%directAlign == 0
}

// Write appends p to the file.
func (w *dataWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if !w.direct {
			if err := w.writeBuffered(p); err != nil {
				return total - len(p), err
			}
			return total, nil
		}
		if w.n == 0 && len(p) >= directAlign && aligned(p) {
			// whole blocks straight from the caller's memory
			k := len(p) &^ (directAlign - 1)
			if err := w.writeDirect(p[:k]); err != nil {
				return total - len(p), err
			}
			p = p[k:]
			continue
		}
		c := copy(w.staging()[w.n:], p)
		w.n += c
		p = p[c:]
		if err := w.flushFull(); err != nil {
			return total - len(p), err
		}
	}
	return total, nil
}

// ReadFrom appends what r yields (io.Copy calls it): read straight into
// the staging block when direct, through the file's own ReadFrom (which
// copies file to file in the kernel where it can) otherwise.
func (w *dataWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for w.direct {
		n, err := r.Read(w.staging()[w.n:])
		w.n += n
		total += int64(n)
		if ferr := w.flushFull(); ferr != nil {
			return total, ferr
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	if err := w.spill(); err != nil {
		return total, err
	}
	n, err := w.f.ReadFrom(r)
	w.advance(n)
	return total + n, err
}

// staging returns the staging block, made on first use.
func (w *dataWriter) staging() []byte {
	if w.stage == nil {
		w.stage = alignedBlock(directStage)
	}
	return w.stage
}

// flushFull writes the staging block once it is full.
func (w *dataWriter) flushFull() error {
	if w.n < len(w.stage) {
		return nil
	}
	if err := w.writeDirect(w.stage); err != nil {
		return err
	}
	w.n = 0
	return nil
}

// writeBuffered writes what is staged, then p, through the page cache.
func (w *dataWriter) writeBuffered(p []byte) error {
	if err := w.spill(); err != nil {
		return err
	}
	n, err := w.f.Write(p)
	w.advance(int64(n))
	return err
}

// spill writes the staged bytes of a writer that is no longer direct.
func (w *dataWriter) spill() error {
	if w.n == 0 {
		return nil
	}
	_, err := w.f.Write(w.stage[:w.n])
	w.off += int64(w.n)
	w.n = 0
	return err
}

// advance counts n bytes written through the page cache and starts their
// writeback every writebackChunk bytes.
func (w *dataWriter) advance(n int64) {
	w.off += n
	if w.off-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, w.off-w.flushed)
		w.flushed = w.off
	}
}

// writeDirect writes the aligned blocks b at w.off (the file's position)
// and advances w.off; a refused direct write falls back to an ordinary
// one, and the writer stays buffered from then on.
func (w *dataWriter) writeDirect(b []byte) error {
	n, err := w.f.Write(b)
	w.off += int64(n)
	if err == nil {
		return nil
	}
	if !isInvalid(err) {
		return err
	}
	if err := w.toBuffered(); err != nil {
		return err
	}
	m, err := w.f.Write(b[n:])
	w.off += int64(m)
	return err
}

// toBuffered clears O_DIRECT (the staged bytes are kept for Close or the
// next write to handle).
func (w *dataWriter) toBuffered() error {
	if err := setDirect(w.f, false); err != nil {
		return err
	}
	w.direct = false
	w.flushed = w.off
	return nil
}

// Close writes what is staged; it does not close or sync the file.
func (w *dataWriter) Close() error {
	if w.n == 0 {
		return nil
	}
	if w.direct {
		// the last partial block: through the page cache, at an aligned
		// offset, so it shares no page with the direct writes before it
		if err := w.toBuffered(); err != nil {
			return err
		}
	}
	return w.spill()
}
