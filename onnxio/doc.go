// Package onnxio reads, edits and writes ONNX models losslessly. It is the
// only package of onnxpost that knows the ONNX protobuf schema; everything
// else works on its Model, Tensor, Node and Weight types.
//
// # Overview
//
// Load (or LoadBytes) parses a model and checks it against Limits: every
// initializer's dims, data length and external-data reference are validated
// before any tensor is decoded, so a hostile file gives an error, never a
// panic, and nothing outside the model's folder is ever read. Tensors held in
// external data are read lazily, on demand. Model.Save writes atomically
// (temporary file, fsync, rename), inline or with external data (chosen
// automatically when the model would pass protobuf's 2 GB limit).
//
// Tensor gives typed views of every numeric ONNX data type — float32/64,
// float16 and bfloat16 (round-to-nearest-even), the float8 and float4 types,
// signed and unsigned 2/4/8/16/32/64-bit integers (2- and 4-bit packed two or
// four per byte, low bits first) and bool — as float32 or float64 and back.
// String tensors are preserved untouched.
//
// Weights lists every parameter tensor with the op that consumes it, its
// role (MatMul.B, Gemm.B, Conv.W, bias, norm, embedding) and its layout
// (which axis is the output axis, which the reduction axis), looking through
// Identity, Transpose, Cast and DequantizeLinear and into Constant nodes.
// Match pairs the parameters of two models of the same architecture by graph
// position rather than by name.
//
// # Invariants
//
// A model loaded and saved unchanged is proto.Equal to the input, unknown
// fields included. Input files are never modified. Edits (SetInitializer,
// ReplaceNode, ...) change only the Model value they are called on.
//
// # Trust
//
// Model files are untrusted. Limits bounds what Load accepts; external data
// locations must be local paths (filepath.IsLocal) that resolve, symlinks
// included, inside the model's folder.
package onnxio
