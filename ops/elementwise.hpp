// Elementwise ops with NumPy broadcasting. Both operands of a binary op must
// have the same dtype (no silent promotion); a C++ number operand takes the
// tensor's dtype.
#pragma once

#include "../engine/core/tensor.hpp"

namespace tg {

// --- binary, broadcasting ------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& base, const Tensor& exponent);
Tensor pow(const Tensor& base, double exponent);
// As PyTorch: ties (a == b) send half of the gradient to each side; NaN on
// either side is the result, and both sides get the whole gradient there.
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

// --- unary ----------------------------------------------------------------------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// abs'(0) = 0 (sign(0)); relu'(0) = 0; relu(NaN) = NaN and passes the
// gradient, as PyTorch.
Tensor relu(const Tensor& x);
// 0 where x <= 0, else grad (NaN included): relu's backward (PyTorch's threshold_backward).
Tensor relu_backward(const Tensor& grad, const Tensor& x);
Tensor square(const Tensor& x);
// Slope negative_slope at 0 and below, as PyTorch.
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor softplus(const Tensor& x);  // log(1 + e^x), stable for large |x|
// The gradient passes for low <= x <= high, bounds included; NaN stays NaN
// with gradient 0. As PyTorch.
Tensor clamp(const Tensor& x, double low, double high);

// --- the activations of torch.nn.functional, with PyTorch's values and gradients ----------
Tensor erf(const Tensor& x);
enum class GeluApproximate { none, tanh };
Tensor gelu(const Tensor& x, GeluApproximate approximate = GeluApproximate::none);
Tensor silu(const Tensor& x);  // x·σ(x)
// x for x > 0, alpha·(e^x − 1) for x <= 0; the slope at 0 is alpha.
Tensor elu(const Tensor& x, double alpha = 1.0);
// clamp(x, min_val, max_val), but the gradient passes for min_val < x <
// max_val only, bounds excluded (clamp includes them), as PyTorch.
Tensor hardtanh(const Tensor& x, double min_val = -1.0, double max_val = 1.0);
Tensor relu6(const Tensor& x);  // hardtanh(x, 0, 6)

// --- not differentiable: 0/1 masks in the operands' dtype, and sign -----------------------
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor sign(const Tensor& x);

// --- operators ---------------------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

}  // namespace tg
