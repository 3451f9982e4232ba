#!/usr/bin/env bash
# gen_conformance.sh — fetch the ONNX backend test data that onnxio's
# conformance test (TestConformance) reads, into .cache/onnx-testdata/:
#   wheel/   onnx/backend/test/data of the onnx wheel (copied from $PY's onnx
#            when it is that version, else pip download; ~13 MB)
#   debian/  Debian's libonnx-testdata (node tests too, ~40 MB unpacked)
# Each source is optional: a missing tool (pip, apt-get) skips it with a
# message and never fails the build. Run from the repository root; it does
# nothing for a source already present.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/.cache/onnx-testdata"
ONNX_VERSION=${ONNX_VERSION:-1.23.2}
PY=${PY:-python3}
mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -d "$DEST/wheel" ]; then
  # the onnx package installed for the oracles ships the same files
  installed=$("$PY" -c "import onnx, os; print(onnx.__version__, os.path.join(os.path.dirname(onnx.__file__), 'backend', 'test', 'data'))" 2>/dev/null)
  if [ "${installed%% *}" = "$ONNX_VERSION" ] && [ -d "${installed#* }" ]; then
    cp -r "${installed#* }" "$tmp/wheel-data" && mv "$tmp/wheel-data" "$DEST/wheel" &&
      echo "onnx $ONNX_VERSION test data (from $PY's onnx): $DEST/wheel"
  fi
fi
if [ ! -d "$DEST/wheel" ]; then
  if "$PY" -m pip --version >/dev/null 2>&1; then
    if "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "onnx==$ONNX_VERSION" -d "$tmp/whl" >/dev/null 2>&1; then
      whl=$(ls "$tmp"/whl/onnx-*.whl | head -1)
      "$PY" - "$whl" "$tmp/wheel" <<'PYEOF'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("onnx/backend/test/data/"):
            z.extract(n, out)
PYEOF
      mv "$tmp/wheel/onnx/backend/test/data" "$DEST/wheel" && echo "onnx $ONNX_VERSION test data: $DEST/wheel"
    else
      echo "gen_conformance: pip download onnx==$ONNX_VERSION failed; skipping the wheel's test data" >&2
    fi
  else
    echo "gen_conformance: no pip; skipping the wheel's test data" >&2
  fi
fi

if [ ! -d "$DEST/debian" ]; then
  if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    if (cd "$tmp" && apt-get download -q libonnx-testdata >/dev/null 2>&1); then
      dpkg-deb -x "$tmp"/libonnx-testdata_*.deb "$tmp/deb" &&
        mv "$tmp/deb/usr/share/libonnx-testdata/data" "$DEST/debian" && echo "libonnx-testdata: $DEST/debian"
    else
      echo "gen_conformance: apt-get download libonnx-testdata failed (apt-get update?); skipping it" >&2
    fi
  else
    echo "gen_conformance: no apt-get; skipping Debian's libonnx-testdata" >&2
  fi
fi
exit 0
