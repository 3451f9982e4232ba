// Package onnxio reads, edits and writes ONNX models losslessly. It is the
// only package of onnxpost that knows the ONNX protobuf schema; everything
// else works on its Model, Tensor, Node and Weight types.
//
// # Overview
//
// Load (or LoadBytes, or LoadFS for a model in an fs.FS) parses a model
// and checks it against Limits: every initializer's dims, data length and
// external-data reference are validated before any tensor is decoded, so a
// hostile file gives an error, never a panic, and nothing outside the
// model's folder is ever read. Tensors held in
// external data are read lazily, on demand. Model.Save writes inline or with
// external data (chosen automatically when the model would pass protobuf's
// 2 GB limit). ReadSignature and DataFiles stream over a model file without
// reading its tensors.
//
// # Saving
//
// A save never leaves a model next to another save's data, after any crash,
// and a failed or cancelled save changes nothing. Each save writes its
// external data to a file of its own, "<output>.<16 hex digits>.data", fsynced
// before the model is written; the model is fsynced under a temporary name
// and renamed over the output, the single commit point. Only then are the
// data files of the replaced model removed, and only those named like save
// data of the same output: hand-made data files that another model may share
// (model.onnx.data) are never removed. On Linux the replaced model is taken
// atomically (renameat2 RENAME_EXCHANGE), so concurrent saves to one output
// each clean up exactly the model they replaced. A crash leaves at most
// hidden ".onnxpost-*" temporaries and one unreferenced data file. An empty
// output path, a folder or a special file is refused before anything is
// written.
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
// # Derived models
//
// Derive returns a model that shares everything with its original (tensor
// data, nodes, subgraphs) at the cost of copying the lists that hold them;
// With, WithInitializers, WithoutInitializers, WithMetadata and
// WithNodeReplaced return such a model with an edit applied, leaving the
// original as it was, in the spirit of copy-on-write. Every editor replaces
// the records it changes rather than modifying them, so no edit of one
// model is ever seen by another that shares its parts. Clone is the deep
// copy, for a caller that wants nothing shared.
//
// # Trust
//
// Model files are untrusted. Limits bounds what Load accepts; external data
// locations must be local paths (filepath.IsLocal) that resolve, symlinks
// included, inside the model's folder (LoadFS: inside the model's folder of
// the fs.FS, links included where the FS tells them). Model files and external data files
// must be regular files: FIFOs, devices and sockets (also through symlinks)
// are refused before they are opened for reading (ErrNotRegular). Two
// initializers of one graph with the same name are refused (ErrFormat).
//
// # Concurrency
//
// A Model is safe for concurrent reads, Bytes and Save included (they build
// the output from shallow copies and never modify the Model); edits need
// exclusive access to the Model they are called on, and no other: a model
// may be read by many goroutines while models derived from it are edited
// and saved.
package onnxio
