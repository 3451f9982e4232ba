// Package onnxpost post-processes trained ONNX models — merge fine-tunes,
// prune, factorize, quantize, search per-layer compression levels — and
// checks every result with ONNX Runtime on real data before writing it.
//
// This package holds no code; it introduces the packages a Go program
// uses, in the order a release pipeline calls them:
//
//   - onnxio loads and saves models (atomic saves, external data);
//   - merge combines fine-tunes (LoadInputs, New, Merger.Merged; TIES,
//     DARE, SLERP, Fisher and mergekit's methods);
//   - compress/sparsity prunes (PruneModel: N:M or unstructured;
//     magnitude, Wanda, SparseGPT), compress/lowrank factorizes;
//   - quant quantizes (Quantize: int8 QDQ, dynamic and static, int4
//     MatMulNBits, fp16/bf16);
//   - evalharness evaluates with ONNX Runtime and parses gates;
//   - release is the gate-and-commit step every command ends with:
//     evaluate the candidate against its reference, check the gate, write
//     the model atomically only when it passes, record provenance, write
//     the report (JSON and Markdown);
//   - pipeline runs recipes (chains of steps) and the per-layer searches.
//
// The command onnxpost (cmd/onnxpost) is a thin layer over these: flags
// become options, then the library call, then the result is printed.
// examples/release is a whole pipeline written both as a Go program and
// as a recipe that writes the same bytes; docs/ARCHITECTURE.md describes
// the data flow and the contracts.
package onnxpost
