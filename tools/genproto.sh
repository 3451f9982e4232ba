#!/usr/bin/env bash
# Regenerates onnxio/internal/onnxpb from the onnx.proto carried by PyPI's onnx wheel.
# Needs: pip, protoc (Debian's protobuf-compiler) and protoc-gen-go.
set -euo pipefail
cd "$(dirname "$0")/.."
ONNX_VERSION=${ONNX_VERSION:-1.23.2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
GOBIN="$tmp/bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
python3 -m pip download -q --no-deps "onnx==$ONNX_VERSION" -d "$tmp" --only-binary=:all:
unzip -q -o "$tmp"/onnx-*.whl 'onnx/onnx.proto' -d "$tmp"
out=onnxio/internal/onnxpb
sed 's/^package onnx;/package onnx;\n\noption go_package = "github.com\/onnxpost\/onnxpost\/onnxio\/internal\/onnxpb";/' "$tmp/onnx/onnx.proto" > "$out/onnx.proto"
(cd "$out" && PATH="$tmp/bin:$PATH" protoc --go_out=. --go_opt=paths=source_relative onnx.proto)
echo "regenerated $out from onnx $ONNX_VERSION"
