// Package rebasin aligns the hidden units of ONNX models trained from
// different initializations (Git Re-Basin, Ainsworth et al.), so that they
// can be merged in weight space.
//
// Groups finds the permutation groups of a graph: the output units of each
// hidden MatMul/Gemm layer (with its bias) or channels of each hidden Conv
// (with its bias and any BatchNormalization), tied to the input axis of the
// layer that reads them, through element-wise activations, pooling,
// Dropout/Identity and Flatten (a channel then owns a block of H·W input
// rows of the following Gemm or MatMul). Layers whose outputs are added
// together (residual connections) share one permutation, and
// LayerNormalization over the units moves its scale and bias with them: in
// a transformer the residual stream is one group, each block's MLP units
// another, and the head dimensions of the queries with the keys, and of the
// values with the output projection's input, are permuted within each head,
// the heads of one block being reordered together (Group.Heads,
// Group.Attention; the attention pattern Reshape → Transpose → MatMul of
// PyTorch's exports is recognized; projections in other patterns are held
// in place and listed by Analyze). Graphs it cannot permute exactly
// (grouped convolutions, reshapes or concatenations of hidden units outside
// attention) are refused with the node that stops it.
//
// WeightMatching finds one permutation per group by coordinate descent:
// groups in a seeded random order, each solving a linear assignment problem
// (SolveLAP) on Σ over the tensors touching the group of ⟨W_a[i], P W_b[j]⟩,
// until a whole pass changes nothing. Permute applies permutations to a
// copy of a model; the permuted model computes the same function (the
// values are moved, never rounded). RotateHeads then turns each attention
// head's dimensions by an orthogonal map (the continuous part of the
// heads' symmetry that permutations miss): the same function up to float
// rounding.
package rebasin
