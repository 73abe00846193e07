// Matrix products through BLAS GEMM on the tensors' own storage.
#pragma once

#include "../engine/core/tensor.hpp"

namespace tg {

// NumPy matmul: 2-D × 2-D, batched [..., m, k] × [..., k, n] with broadcast
// batch axes, and 1-D operands treated as a row (left) or column (right)
// vector whose axis is dropped from the result.
Tensor matmul(const Tensor& a, const Tensor& b);

// The primitive: op(a) · op(b) per batch for a [Ba, m, k] and b [Bb, k, n]
// (stored transposed when the flags say so), where Ba and Bb are equal or one
// of them is 1. The backward is again bmm with other flags, so nothing is
// transposed in memory.
Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

}  // namespace tg
