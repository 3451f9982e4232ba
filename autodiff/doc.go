// Package autodiff builds gradient graphs of ONNX models: reverse-mode
// differentiation expressed in ONNX ops, so that ONNX Runtime (or any ONNX
// runtime) evaluates the gradients with the same kernels as the forward
// pass.
//
// # Overview
//
// VJP appends to a model the nodes computing a vector-Jacobian product:
// given a float output Y of the forward graph, a seed value S of Y's shape
// (a graph input, a constant, or any value computed in the graph) and a list
// of parameters θ (initializers, Constant outputs or graph inputs), it adds
// nodes whose outputs are ∂(Σ S⊙Y)/∂θ, one value per parameter, shaped like
// the parameter. Gradients is the convenience form that returns a new model
// whose outputs are those gradients.
//
// Shapes are handled at run time where they depend on the batch: the
// gradient of a broadcast operand is reduced with ReduceSum over axes found
// by Shape/Equal/NonZero nodes, so a gradient graph built once serves every
// batch size. Ranks, element types and spatial sizes (Conv, pooling) come
// from a probe: ProbeModel exposes every intermediate value as an output;
// running it once on a sample and passing the observed dtypes and shapes as
// Options.Info lets the builder choose transposes, axes and output paddings.
//
// # Per-example gradients
//
// With Options.PerExample, VJP keeps one gradient per example: every
// parameter's gradient gets a leading example axis. The values computed
// from the graph inputs must carry the examples on axis 0 (VJP checks this
// against probes of batch 1 and 2); only the rules where a parameter meets
// example data change (MatMul and Gemm weights as per-example outer or
// batched products, Conv weights as a product of the output gradient with
// the input patches, biases, norm parameters and embeddings reduced or
// scattered per example). Package fisher uses it to square per-example,
// per-class gradients in one backward pass.
//
// # Supported ops
//
// Add, Sub, Mul, Div, Neg, Abs, Exp, Log, Sqrt, Reciprocal, Pow, Relu,
// LeakyRelu, Sigmoid, Tanh, Sin, Cos, Erf, Gelu (exact), Clip, Softmax, LogSoftmax,
// MatMul, Gemm, Conv (groups, strides, pads, dilations, auto_pad), MaxPool,
// AveragePool, GlobalAveragePool, GlobalMaxPool, BatchNormalization
// (inference), LayerNormalization, Reshape, Flatten, Squeeze, Unsqueeze,
// Transpose, Concat, Slice, Gather, Expand, ReduceMean, ReduceSum, Where,
// Identity, Dropout (inference) and Cast. Shape-computing ops (Shape, Size,
// Constant, Range, comparisons...) never carry gradients. A node on the
// differentiated path whose op has no rule gives an error naming the op and
// the node (ErrUnsupported).
//
// # Formulations
//
// Conv's input gradient is a ConvTranspose of the output gradient with the
// same weight, group, strides, pads and dilations, plus the output_padding
// that restores the input size. Its weight gradient is a Conv of the input,
// batch and channel axes exchanged, with the output gradient as the kernel:
// the forward strides become dilations and the forward dilations strides,
// groups stay groups. MaxPool routes the gradient through the pooling's
// argmax indices (a second MaxPool node with the Indices output) with
// ScatterElements(reduction=add); Slice and Gather scatter the gradient
// through the same op applied to an index tensor, so every start, end, step
// and negative index behaves exactly as in the forward pass. ONNX Runtime's
// CPU build has no ConvGrad (it is a training-build kernel), so none is used.
//
// Opset 13 or newer is required (ReduceSum, Split and Unsqueeze take their
// axes as inputs from opset 13).
package autodiff
