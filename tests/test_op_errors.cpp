// Bad arguments to the ops, one per check the ops make: each is a tg::Error
// whose message names the op and says what is wrong with which argument
// (shapes, dtypes, values). Checks that the samples cannot reach, since a
// sample is a valid call.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "tests/helpers.hpp"

using namespace tg;

namespace {

struct BadCall {
    const char* what;
    std::function<void()> call;
    std::vector<std::string> message;  // pieces the error message must hold
};

void check_errors(const std::vector<BadCall>& calls)
{
    for (const BadCall& c : calls) {
        const std::string what = c.what;
        CAPTURE(what);
        const std::string msg = error_of(c.call);
        INFO(msg);
        for (const std::string& piece : c.message) CHECK(contains(msg, piece));
    }
}

Tensor ints(const shape_type& shape) { return zeros(shape, int64); }

}  // namespace

TEST_CASE("op errors: elementwise, layers and losses name the op and the bad argument")
{
    const Tensor x = zeros({2, 3}), u;  // u: undefined
    Generator gen(1);
    // batch_norm's running statistics, good and bad.
    Tensor rm = zeros({3}), rv = ones({3}), no_stat, count = scalar(0, int64), float_count = zeros({}),
           count_1 = zeros({1}, int64), negative_count = scalar(-1, int64), full_count = scalar(0, int64);
    *full_count.data<int64_t>() = INT64_MAX;
    check_errors({
        {"exp of int64", [&] { exp(ints({2})); }, {"exp", "expected a float32 or float64 tensor, got int64"}},
        {"add of int64", [&] { add(ints({2}), ints({2})); }, {"add", "got int64"}},
        {"exp of undefined", [&] { exp(u); }, {"exp: undefined operand"}},
        // Composites name themselves, not the op inside that would fail first.
        {"mean of int64", [&] { mean(ints({2, 3})); }, {"tapegrad: mean: expected a float32 or float64 tensor, got int64"}},
        {"mse_loss of int64", [&] { mse_loss(ints({2}), ints({2})); }, {"tapegrad: mse_loss: input is int64"}},
        {"linear of int64", [&] { linear(ints({2, 3}), ints({4, 3})); }, {"tapegrad: linear: input (int64)"}},
        {"matmul of int64", [&] { matmul(ints({2, 3}), ints({3, 2})); }, {"tapegrad: matmul: expected float32 or float64"}},
        {"layer_norm of int64", [&] { layer_norm(ints({2, 3}), {3}); }, {"tapegrad: layer_norm: input must be float32"}},
        {"leaky_relu of int64", [&] { leaky_relu(ints({2}), 0.1); }, {"tapegrad: leaky_relu: expected a float32"}},
        {"bce of int64", [&] { binary_cross_entropy_with_logits(ints({2}), ints({2})); },
         {"tapegrad: binary_cross_entropy_with_logits: logits are int64"}},
        {"transpose of undefined", [&] { transpose(u, 0, 1); }, {"tapegrad: transpose: undefined operand"}},
        {"stack with an undefined tensor", [&] { stack({x, u}); }, {"tapegrad: stack: tensor 1 is undefined"}},
        {"an undefined tensor's shape", [&] { (void)u.shape(); }, {"tapegrad: use of an undefined tensor (in shape())"}},
        {"add, first undefined", [&] { add(u, x); }, {"add: undefined operand"}},
        {"add, second undefined", [&] { add(x, u); }, {"add: undefined operand"}},
        {"relu_backward, no gradient", [&] { relu_backward(u, x); }, {"relu_backward: undefined operand"}},
        {"relu_backward, no input", [&] { relu_backward(x, u); }, {"relu_backward: undefined operand"}},
        {"clamp low > high", [&] { clamp(x, 2, 1); }, {"clamp: low 2 is above high 1"}},
        {"linear, no input", [&] { linear(u, x); }, {"linear: undefined operand"}},
        {"linear, no weight", [&] { linear(x, u); }, {"linear: undefined operand"}},
        {"linear of 0-d", [&] { linear(zeros({}), zeros({4, 3})); }, {"linear: input of shape []"}},
        {"linear, widths differ", [&] { linear(x, zeros({4, 5})); }, {"linear: input of shape [2, 3]", "[4, 5]"}},
        {"dropout of undefined", [&] { dropout(u, 0.5, true, gen); }, {"dropout: undefined operand"}},
        {"batch_norm of undefined", [&] { batch_norm(u, {}, u, u, true); }, {"batch_norm: undefined input"}},
        {"batch_norm of int64", [&] { batch_norm(ints({2, 3}), {}, u, u, true); },
         {"batch_norm: input must be float32 or float64, got int64"}},
        {"batch_norm, mean without var", [&] { batch_norm(x, {.mean = &rm}, u, u, true); },
         {"batch_norm: give both running_mean and running_var"}},
        {"batch_norm, mean points to an undefined tensor", [&] { batch_norm(x, {&no_stat, &rv}, u, u, true); },
         {"batch_norm: running_mean points to an undefined tensor"}},
        {"batch_norm, mean and var one tensor", [&] { batch_norm(x, {&rm, &rm}, u, u, true); },
         {"batch_norm: running_mean and running_var share their memory"}},
        {"batch_norm, a count without statistics", [&] { batch_norm(x, {.num_batches_tracked = &count}, u, u, true); },
         {"batch_norm: num_batches_tracked without running_mean and running_var"}},
        {"batch_norm, a float count", [&] { batch_norm(x, {&rm, &rv, &float_count}, u, u, true); },
         {"batch_norm: num_batches_tracked must be an int64 0-d tensor, got float32 of shape []"}},
        {"batch_norm, a count of shape [1]", [&] { batch_norm(x, {&rm, &rv, &count_1}, u, u, true); },
         {"batch_norm: num_batches_tracked must be an int64 0-d tensor, got int64 of shape [1]"}},
        {"batch_norm, a negative count", [&] { batch_norm(x, {&rm, &rv, &negative_count}, u, u, true); },
         {"batch_norm: num_batches_tracked -1 is not a count"}},
        {"batch_norm, the largest count", [&] { batch_norm(x, {&rm, &rv, &full_count}, u, u, true); },
         {"batch_norm: num_batches_tracked 9223372036854775807 is not a count"}},
        {"batch_norm, momentum None without a count", [&] { batch_norm(x, {&rm, &rv}, u, u, true, std::nullopt); },
         {"batch_norm: momentum None (the cumulative average of every batch) needs num_batches_tracked"}},
        {"batch_norm, float64 weight", [&] { batch_norm(x, {}, zeros({3}, float64), u, true); },
         {"batch_norm", "weight is float64"}},
        {"batch_norm, negative eps", [&] { batch_norm(x, {}, u, u, true, 0.1, -1); },
         {"batch_norm: eps -1 is not a finite number >= 0"}},
        {"batch_norm, NaN eps", [&] { batch_norm(x, {}, u, u, true, 0.1, NAN); }, {"batch_norm: eps nan"}},
        {"batch_norm, infinite eps", [&] { batch_norm(x, {}, u, u, true, 0.1, INFINITY); }, {"batch_norm: eps inf"}},
        {"batch_norm, NaN momentum", [&] { batch_norm(x, {&rm, &rv}, u, u, true, NAN); },
         {"batch_norm: momentum nan is outside [0, 1]"}},
        {"batch_norm, momentum 1.5", [&] { batch_norm(x, {&rm, &rv}, u, u, true, 1.5); },
         {"batch_norm: momentum 1.5 is outside [0, 1]"}},
        {"layer_norm of undefined", [&] { layer_norm(u, {3}); }, {"layer_norm: undefined input"}},
        {"layer_norm, no axes", [&] { layer_norm(x, {}); }, {"layer_norm: normalized_shape is empty"}},
        {"layer_norm, more axes than the input", [&] { layer_norm(zeros({3}), {2, 3}); },
         {"layer_norm: input of shape [3] does not end in normalized_shape [2, 3]"}},
        {"layer_norm, negative eps", [&] { layer_norm(x, {3}, u, u, -1); },
         {"layer_norm: eps -1 is not a finite number >= 0"}},
        {"layer_norm, NaN eps", [&] { layer_norm(x, {3}, u, u, NAN); }, {"layer_norm: eps nan"}},
        {"cross_entropy, reduction 7", [&] { cross_entropy(x, ints({2}), Reduction(7)); },
         {"cross_entropy: reduction 7 is not one of Reduction::none (0), mean (1), sum (2)"}},
        {"nll_loss, reduction -1", [&] { nll_loss(x, ints({2}), Reduction(-1)); }, {"nll_loss: reduction -1"}},
        {"mse_loss, reduction 5", [&] { mse_loss(x, x, Reduction(5)); }, {"mse_loss: reduction 5"}},
        {"bce, reduction 5", [&] { binary_cross_entropy_with_logits(x, x, Reduction(5)); },
         {"binary_cross_entropy_with_logits: reduction 5"}},
        {"cross_entropy, no logits", [&] { cross_entropy(u, ints({2})); }, {"cross_entropy: undefined operand"}},
        {"cross_entropy, no targets", [&] { cross_entropy(x, u); }, {"cross_entropy: undefined operand"}},
        {"cross_entropy of int64 logits", [&] { cross_entropy(ints({2, 3}), ints({2})); },
         {"cross_entropy", "logits must be float32 or float64, got int64", "[2, 3]"}},
        {"cross_entropy of 0-d logits", [&] { cross_entropy(zeros({}), ints({})); },
         {"cross_entropy", "must have a class axis"}},
        {"cross_entropy, no classes", [&] { cross_entropy(zeros({2, 0}), ints({2})); },
         {"cross_entropy", "[2, 0]", "have no classes"}},
        {"cross_entropy, smoothing below 0", [&] { cross_entropy(x, ints({2}), Reduction::mean, -100, -0.5); },
         {"cross_entropy: label_smoothing -0.5 is outside [0, 1]"}},
        {"cross_entropy, smoothing above 1", [&] { cross_entropy(x, ints({2}), Reduction::mean, -100, 1.5); },
         {"cross_entropy: label_smoothing 1.5 is outside [0, 1]"}},
        {"mse_loss, no input", [&] { mse_loss(u, x); }, {"mse_loss: undefined operand"}},
        {"mse_loss, no target", [&] { mse_loss(x, u); }, {"mse_loss: undefined operand"}},
        {"mse_loss, dtypes differ", [&] { mse_loss(x, zeros({2, 3}, float64)); },
         {"mse_loss: input is float32, target is float64"}},
        {"bce, no logits", [&] { binary_cross_entropy_with_logits(u, x); },
         {"binary_cross_entropy_with_logits: undefined operand"}},
        {"bce, no target", [&] { binary_cross_entropy_with_logits(x, u); },
         {"binary_cross_entropy_with_logits: undefined operand"}},
        {"bce, dtypes differ", [&] { binary_cross_entropy_with_logits(x, zeros({2, 3}, float64)); },
         {"binary_cross_entropy_with_logits: logits are float32, target is float64"}},
        {"bce, pos_weight dtype", [&] { binary_cross_entropy_with_logits(x, x, Reduction::mean, zeros({3}, float64)); },
         {"binary_cross_entropy_with_logits: pos_weight is float64"}},
        {"bce, pos_weight of another width", [&] { binary_cross_entropy_with_logits(x, x, Reduction::mean, zeros({2})); },
         {"binary_cross_entropy_with_logits: pos_weight of shape [2]", "[2, 3]"}},
    });
}

TEST_CASE("op errors: matmul, reductions and shape ops name the op and the shapes")
{
    const Tensor x = zeros({2, 3}), u;
    check_errors({
        {"bmm, first undefined", [&] { bmm(u, zeros({1, 2, 2})); }, {"bmm: undefined operand"}},
        {"bmm, second undefined", [&] { bmm(zeros({1, 2, 2}), u); }, {"bmm: undefined operand"}},
        {"bmm of 2-d", [&] { bmm(x, zeros({1, 3, 2})); }, {"bmm: expected 3-d operands, got [2, 3] and [1, 3, 2]"}},
        {"bmm of 3-d and 2-d", [&] { bmm(zeros({1, 2, 3}), zeros({3, 2})); }, {"bmm: expected 3-d operands"}},
        {"bmm, dtypes differ", [&] { bmm(zeros({1, 2, 3}), zeros({1, 3, 2}, float64)); },
         {"bmm: dtype mismatch, float32 and float64"}},
        {"bmm, batches differ", [&] { bmm(zeros({2, 2, 3}), zeros({3, 3, 2})); },
         {"bmm: batch sizes 2 and 3 do not broadcast"}},
        {"bmm, transposed inner sizes differ", [&] { bmm(zeros({1, 2, 3}), zeros({1, 3, 2}), true, false); },
         {"matmul: inner dimensions differ", "[1, 2, 3]ᵀ"}},
        {"matmul, first undefined", [&] { matmul(u, x); }, {"matmul: undefined operand"}},
        {"matmul, second undefined", [&] { matmul(x, u); }, {"matmul: undefined operand"}},
        {"matmul of 0-d", [&] { matmul(zeros({}), x); }, {"matmul: 0-d operand (shapes [] and [2, 3]"}},
        {"matmul by 0-d", [&] { matmul(x, zeros({})); }, {"matmul: 0-d operand (shapes [2, 3] and []"}},
        {"matmul, dtypes differ", [&] { matmul(x, zeros({3, 2}, float64)); }, {"matmul: dtype mismatch, float32 [2, 3]"}},
        {"sum of undefined", [&] { sum(u); }, {"sum: undefined operand"}},
        {"sum, an axis twice", [&] { sum(x, {1, -1}); }, {"sum: axis -1 repeated in [1, -1] for shape [2, 3]"}},
        {"max of undefined", [&] { max(u); }, {"max: undefined operand"}},
        {"max over an empty axis", [&] { max(zeros({0, 3}), {0}); },
         {"max: reduction over axis 0 of size 0 in shape [0, 3]"}},
        {"argmax of 0-d", [&] { argmax(zeros({}), 0); }, {"argmax: a 0-d tensor has no axis 0"}},
        {"argmax over an empty axis", [&] { argmax(zeros({0, 2}), 0); }, {"argmax: axis 0 of shape [0, 2] is empty"}},
        {"reshape, two -1", [&] { reshape(x, {-1, -1}); }, {"reshape: more than one -1 in [-1, -1]"}},
        {"reshape, negative size", [&] { reshape(x, {-2, -3}); }, {"reshape: negative size in [-2, -3]"}},
        {"reshape, -1 with a zero", [&] { reshape(x, {0, -1}); }, {"reshape: cannot reshape [2, 3]"}},
        {"reshape of undefined", [&] { reshape(u, {2}); }, {"reshape: undefined operand"}},
        {"flatten of undefined", [&] { flatten(u); }, {"flatten: undefined operand"}},
        {"flatten, start after end", [&] { flatten(zeros({2, 3, 4}), 2, 1); },
         {"flatten: start axis 2 after end axis 1"}},
        {"squeeze of a wide axis", [&] { squeeze(x, 0); }, {"squeeze: axis 0 of shape [2, 3]"}},
        {"permute of undefined", [&] { permute(u, {0}); }, {"permute: undefined operand"}},
        {"permute, too few axes", [&] { permute(x, {0}); }, {"permute: 1 axes for a tensor of shape [2, 3]"}},
        {"transpose of 0-d", [&] { transpose(zeros({})); }, {"transpose: a 0-d tensor has no axes"}},
        {"slice of 0-d", [&] { slice(zeros({}), 0, 0, 1); }, {"slice: cannot slice a 0-d tensor"}},
        {"slice, step 0", [&] { slice(x, 1, 0, 2, 0); }, {"slice: step must be at least 1, got 0"}},
        {"slice of undefined", [&] { slice(u, 0, 0, 1); }, {"slice: undefined operand"}},
        {"unslice of undefined", [&] { unslice(u, {2, 3}, 0, 0); }, {"unslice: undefined operand"}},
        {"unslice, ranks differ", [&] { unslice(zeros({2}), {2, 3}, 0, 0); }, {"unslice: gradient of shape [2]"}},
        {"unslice, longer than the axis", [&] { unslice(zeros({2, 4}), {2, 3}, 1, 0); },
         {"unslice: gradient of shape [2, 4] does not fit [2, 3] at axis 1"}},
        {"unslice, another axis differs", [&] { unslice(zeros({3, 2}), {2, 3}, 1, 0); },
         {"unslice: gradient of shape [3, 2] does not fit [2, 3]"}},
        {"select past the end", [&] { select(x, 0, 2); }, {"select: index 2 out of range for axis 0 of shape [2, 3]"}},
        {"select before the start", [&] { select(x, 0, -3); }, {"select: index -3 out of range"}},
        {"concat of nothing", [&] { concat({}); }, {"concat: no tensors"}},
        {"concat, first undefined", [&] { concat({u, x}); }, {"concat: tensor 0 is undefined"}},
        {"concat of 0-d", [&] { concat({zeros({}), zeros({})}); }, {"concat: cannot concatenate 0-d tensors"}},
        {"concat, second undefined", [&] { concat({x, u}); }, {"concat: tensor 1 is undefined"}},
        {"concat, dtypes differ", [&] { concat({x, zeros({2, 3}, float64)}); }, {"concat: tensor 1 is float64"}},
        {"concat, ranks differ", [&] { concat({x, zeros({2})}); }, {"concat: tensor 1 of shape [2]", "[2, 3]"}},
        {"concat, sizes differ", [&] { concat({x, zeros({3, 3})}, 1); }, {"concat: tensor 1 of shape [3, 3]"}},
        {"stack of nothing", [&] { stack({}); }, {"stack: no tensors"}},
        {"stack, shapes differ", [&] { stack({x, zeros({3, 2})}); }, {"stack: tensor 1 of shape [3, 2]"}},
        {"broadcast_to of undefined", [&] { broadcast_to(u, {2, 3}); }, {"broadcast_to: undefined operand"}},
        {"broadcast_to a smaller shape", [&] { broadcast_to(x, {3}); }, {"broadcast_to", "[2, 3]", "[3]"}},
        {"broadcast_to of int64", [&] { broadcast_to(ints({3}), {2, 3}); },
         {"broadcast_to: expected a float32 or float64 tensor, got int64"}},
        {"sum_to a larger shape", [&] { sum_to(x, {4, 2, 3}); }, {"sum_to", "[4, 2, 3]", "[2, 3]"}},
        {"softmax of undefined", [&] { softmax(u); }, {"softmax: undefined operand"}},
        {"log_softmax of int64", [&] { log_softmax(ints({2, 3})); },
         {"log_softmax: expected a float32 or float64 tensor, got int64"}},
    });
}

TEST_CASE("op errors: convolution and pooling name the op, the argument and the shapes")
{
    const Tensor x = zeros({1, 2, 4, 4}), u;
    check_errors({
        {"conv2d of undefined", [&] { conv2d(u, zeros({1, 2, 3, 3})); }, {"conv2d: undefined input"}},
        {"conv2d, no weight", [&] { conv2d(x, u); }, {"conv2d: undefined weight"}},
        {"conv2d of int64", [&] { conv2d(ints({1, 2, 4, 4}), ints({1, 2, 3, 3})); },
         {"conv2d: input must be float32 or float64, got int64"}},
        {"im2col of undefined", [&] { im2col(u, 2); }, {"im2col: undefined input"}},
        {"im2col of 3-d", [&] { im2col(zeros({2, 4, 4}), 2); }, {"im2col: expected a 4-d input", "[2, 4, 4]"}},
        {"im2col, kernel height 0", [&] { im2col(x, {0, 1}); }, {"im2col: kernel size (0, 1) must be positive"}},
        {"im2col, kernel width 0", [&] { im2col(x, {1, 0}); }, {"im2col: kernel size (1, 0) must be positive"}},
        {"im2col, stride width 0", [&] { im2col(x, 2, {1, 0}); }, {"im2col: stride (1, 0) must be positive"}},
        {"im2col, padding width -1", [&] { im2col(x, 2, 1, {0, -1}); }, {"im2col: padding (0, -1) must not be negative"}},
        {"im2col, dilation height 0", [&] { im2col(x, 2, 1, 0, {0, 1}); }, {"im2col: dilation (0, 1) must be positive"}},
        {"im2col, dilation width 0", [&] { im2col(x, 2, 1, 0, {1, 0}); }, {"im2col: dilation (1, 0) must be positive"}},
        {"im2col, kernel wider than the input", [&] { im2col(x, {1, 5}); },
         {"im2col: kernel (1, 5)", "larger than the padded input (4, 4)", "[1, 2, 4, 4]"}},
        {"col2im of undefined", [&] { col2im(u, {4, 4}, 2); }, {"col2im: undefined input"}},
        {"col2im of 2-d", [&] { col2im(zeros({8, 9}), {4, 4}, 2); }, {"col2im: expected a 3-d input", "[8, 9]"}},
        {"col2im into height 0", [&] { col2im(zeros({1, 8, 9}), {0, 4}, 2); }, {"col2im: input size (0, 4) must be positive"}},
        {"col2im into width 0", [&] { col2im(zeros({1, 8, 9}), {4, 0}, 2); }, {"col2im: input size (4, 0) must be positive"}},
        {"col2im, kernel of no taps", [&] { col2im(zeros({1, 8, 9}), {4, 4}, {0, 2}); },
         {"col2im", "not a multiple of the kernel's 0x2 = 0"}},
        {"max_pool2d of undefined", [&] { max_pool2d(u, 2); }, {"max_pool2d: undefined input"}},
        {"max_pool2d of int64", [&] { max_pool2d(ints({1, 2, 4, 4}), 2); },
         {"max_pool2d: input must be float32 or float64, got int64"}},
        {"max_pool2d, kernel height 0", [&] { max_pool2d(x, {0, 2}); }, {"max_pool2d: kernel size (0, 2) must be positive"}},
        {"max_pool2d, kernel width 0", [&] { max_pool2d(x, {2, 0}); }, {"max_pool2d: kernel size (2, 0) must be positive"}},
        {"max_pool2d, stride width 0", [&] { max_pool2d(x, 2, {2, 0}); }, {"max_pool2d: stride (2, 0) must be positive"}},
        {"max_pool2d, padding width -1", [&] { max_pool2d(x, 2, 2, {0, -1}); }, {"max_pool2d: padding (0, -1)"}},
        {"max_pool2d, padding above half the kernel width", [&] { max_pool2d(x, 2, 2, {0, 2}); },
         {"max_pool2d: padding (0, 2) must be between 0 and half the kernel (2, 2)"}},
        {"max_pool2d, kernel wider than the input", [&] { max_pool2d(x, {2, 5}); },
         {"max_pool2d: kernel (2, 5) is larger than the input's plane (4, 4) with padding (0, 0)"}},
        {"max_pool2d, kernel 2^62 with padding 2^60", [&] { max_pool2d(x, int64_t(1) << 62, 1, int64_t(1) << 60); },
         {"max_pool2d: kernel (4611686018427387904, 4611686018427387904) is larger than the input's plane (4, 4)"}},
        {"max_pool2d, kernel 2^63 - 1", [&] { max_pool2d(x, INT64_MAX, 1, INT64_MAX / 4); },
         {"max_pool2d: kernel (9223372036854775807, 9223372036854775807) is larger"}},
        {"conv2d, padding 2^62", [&] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), u, 1, int64_t(1) << 62); },
         {"conv2d: kernel (3, 3), dilation (1, 1) and padding (4611686018427387904, 4611686018427387904) give sizes past 2^63"}},
        {"conv2d, dilation 2^62", [&] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), u, 1, 0, int64_t(1) << 62); },
         {"conv2d", "past 2^63"}},
        {"conv2d, padding 2^40 (output too large)", [&] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), u, 1, int64_t(1) << 40); },
         {"conv2d", "too large"}},
        {"adaptive_avg_pool2d, output 2^40 x 2^40", [&] { adaptive_avg_pool2d(zeros({1, 1, 4, 4}), {int64_t(1) << 40, int64_t(1) << 40}); },
         {"adaptive_avg_pool2d", "[1, 1, 1099511627776, 1099511627776]"}},
        {"avg_pool2d_backward of undefined", [&] { avg_pool2d_backward(u, {1, 2, 4, 4}, 2); },
         {"avg_pool2d_backward: undefined gradient"}},
        {"avg_pool2d_backward of int64", [&] { avg_pool2d_backward(ints({1, 2, 2, 2}), {1, 2, 4, 4}, 2); },
         {"avg_pool2d_backward: gradient must be float32 or float64, got int64"}},
        {"avg_pool2d_backward of 3-d", [&] { avg_pool2d_backward(zeros({2, 2, 2}), {1, 2, 4, 4}, 2); },
         {"avg_pool2d_backward: expected a 4-d gradient and input shape, got [2, 2, 2] and [1, 2, 4, 4]"}},
        {"avg_pool2d_backward into 3-d", [&] { avg_pool2d_backward(zeros({1, 2, 2, 2}), {2, 4, 4}, 2); },
         {"avg_pool2d_backward: expected a 4-d gradient and input shape"}},
        {"max_pool2d_backward, indices of another shape",
         [&] { max_pool2d_backward(zeros({1, 2, 2, 2}), ints({1, 2, 2, 1}), {1, 2, 4, 4}); },
         {"max_pool2d_backward: indices of shape [1, 2, 2, 1] for values of shape [1, 2, 2, 2]"}},
        {"max_pool2d_backward, float64 indices",
         [&] { max_pool2d_backward(zeros({1, 2, 2, 2}), zeros({1, 2, 2, 2}, float64), {1, 2, 4, 4}); },
         {"max_pool2d_backward: indices must be an int64 tensor"}},
        {"max_pool2d_backward, channels differ",
         [&] { max_pool2d_backward(zeros({1, 3, 2, 2}), ints({1, 3, 2, 2}), {1, 2, 4, 4}); },
         {"max_pool2d_backward: gradient of shape [1, 3, 2, 2] for an input of shape [1, 2, 4, 4]"}},
        {"max_pool2d_gather, float64 indices", [&] { max_pool2d_gather(x, zeros({1, 2, 2, 2}, float64)); },
         {"max_pool2d_gather: indices must be int64 [N, C, Ho, Wo] for input [1, 2, 4, 4], got float64"}},
        {"max_pool2d_gather, undefined indices", [&] { max_pool2d_gather(x, u); },
         {"max_pool2d_gather: indices must be int64", "undefined"}},
        {"max_pool2d_gather, 3-d indices", [&] { max_pool2d_gather(x, ints({1, 2, 2})); },
         {"max_pool2d_gather: indices must be int64", "[1, 2, 2]"}},
        {"max_pool2d_gather, batches differ", [&] { max_pool2d_gather(x, ints({2, 2, 2, 2})); },
         {"max_pool2d_gather", "got int64 [2, 2, 2, 2]"}},
        {"max_pool2d_gather, channels differ", [&] { max_pool2d_gather(x, ints({1, 3, 2, 2})); },
         {"max_pool2d_gather", "got int64 [1, 3, 2, 2]"}},
        {"adaptive_avg_pool2d to width 0", [&] { adaptive_avg_pool2d(x, {2, 0}); },
         {"adaptive_avg_pool2d: output size (2, 0) must be positive"}},
        {"adaptive_avg_pool2d_backward, batches differ", [&] { adaptive_avg_pool2d_backward(zeros({2, 2, 2, 2}), {1, 2, 4, 4}); },
         {"adaptive_avg_pool2d_backward: gradient of shape [2, 2, 2, 2] for an input of shape [1, 2, 4, 4]"}},
        {"adaptive_avg_pool2d_backward, channels differ",
         [&] { adaptive_avg_pool2d_backward(zeros({1, 3, 2, 2}), {1, 2, 4, 4}); },
         {"adaptive_avg_pool2d_backward: gradient of shape [1, 3, 2, 2]"}},
        {"adaptive_avg_pool2d_backward, empty rows", [&] { adaptive_avg_pool2d_backward(zeros({1, 2, 0, 2}), {1, 2, 4, 4}); },
         {"adaptive_avg_pool2d_backward: gradient of shape [1, 2, 0, 2]"}},
        {"adaptive_avg_pool2d_backward, empty columns",
         [&] { adaptive_avg_pool2d_backward(zeros({1, 2, 2, 0}), {1, 2, 4, 4}); },
         {"adaptive_avg_pool2d_backward: gradient of shape [1, 2, 2, 0]"}},
    });
}

TEST_CASE("op errors: huge strides, kernels and paddings that fit are valid calls")
{
    const Tensor x = zeros({1, 2, 4, 4});
    // A window of 2^62 padded by 2^61 on each side: five windows (k - 2p = 0),
    // each over the whole plane (PyTorch's output size formula, without its overflow).
    Tensor r = reshape(arange(32), {1, 2, 4, 4});
    Tensor m = max_pool2d(r, int64_t(1) << 62, 1, int64_t(1) << 61);
    CHECK(m.shape() == shape_type{1, 2, 5, 5});
    CHECK(m.data<float>()[0] == 15);
    CHECK(m.data<float>()[49] == 31);
    CHECK(max_pool2d(r, INT64_MAX, 1, INT64_MAX / 2).shape() == shape_type{1, 2, 4, 4});
    CHECK(avg_pool2d(x, 2, int64_t(1) << 62).shape() == shape_type{1, 2, 1, 1});
    CHECK(max_pool2d(x, 3, INT64_MAX, 1).shape() == shape_type{1, 2, 1, 1});
    CHECK(conv2d(x, zeros({3, 2, 3, 3}), Tensor(), INT64_MAX, 1).shape() == shape_type{1, 3, 1, 1});
}

TEST_CASE("op errors: unpooling, normalisation, padding, loss and reduction arguments each refused by name")
{
    const Tensor x = zeros({1, 1, 2, 2}), at = zeros({1, 1, 2, 2}, int64), u;
    Tensor mean = zeros({1}), var = ones({1}), no_var, no_count;
    const Tensor nan = scalar(std::nan(""));  // 0-d
    const double inf = std::numeric_limits<double>::infinity();
    check_errors({
        {"max_unpool2d, kernel width 0", [&] { max_unpool2d(x, at, {2, 0}); },
         {"max_unpool2d: kernel size (2, 0) must be positive"}},
        {"max_unpool2d, stride height 0", [&] { max_unpool2d(x, at, 2, {0, 1}); },
         {"max_unpool2d: stride (0, 1) must be positive"}},
        {"max_unpool2d, stride width 0", [&] { max_unpool2d(x, at, 2, {1, 0}); },
         {"max_unpool2d: stride (1, 0) must be positive"}},
        {"max_unpool2d, padding height -1", [&] { max_unpool2d(x, at, 2, 2, {-1, 0}); },
         {"max_unpool2d: padding (-1, 0) must not be negative"}},
        {"max_unpool2d, padding width -1", [&] { max_unpool2d(x, at, 2, 2, {0, -1}); },
         {"max_unpool2d: padding (0, -1) must not be negative"}},
        {"max_unpool2d, unbatched input and no indices", [&] { max_unpool2d(zeros({1, 2, 2}), u, 2); },
         {"max_unpool2d: indices of shape [] for an input of shape [1, 2, 2]"}},
        // Padding past the kernel: the default size is -3, and an output_size
        // within a stride of it is still negative.
        {"max_unpool2d, negative output_size", [&] { max_unpool2d(zeros({1, 1, 1, 1}), zeros({1, 1, 1, 1}, int64), 1, 1, 2, {-3, -3}); },
         {"max_unpool2d: output size (-3, -3) must not be negative"}},
        {"max_unpool2d, negative output width", [&] { max_unpool2d(zeros({1, 1, 3, 1}), zeros({1, 1, 3, 1}, int64), 1, 1, {0, 2}, {3, -3}); },
         {"max_unpool2d: output size (3, -3) must not be negative"}},
        {"avg_pool2d_backward, divisor_override 0", [&] { avg_pool2d_backward(zeros({1, 1, 1, 1}), {1, 1, 2, 2}, 2, 2, 0, true, false, 0); },
         {"avg_pool2d_backward: divisor_override must not be 0"}},
        {"conv2d, padding=same with dilation width 0", [&] { conv2d(x, zeros({1, 1, 1, 1}), u, 1, same, {1, 0}); },
         {"conv2d: padding=same for kernel (1, 1) and dilation (1, 0): both must be positive"}},
        {"reflect pad of 4 axes", [&] { pad(zeros({1, 2, 2, 2, 2}), {1, 1, 1, 1, 1, 1, 1, 1}, PaddingMode::reflect); },
         {"pad: reflect padding pads 1 axis of a 2-d or 3-d input", "[1, 2, 2, 2, 2]"}},
        {"embedding, padding_idx below -rows", [&] { embedding(zeros({2}, int64), zeros({3, 2}), -4); },
         {"embedding: padding_idx -4 is out of range for 3 embeddings"}},
        {"batch_norm, running_var undefined", [&] { batch_norm(x, {&mean, &no_var}); },
         {"batch_norm: running_var points to an undefined tensor"}},
        {"batch_norm, num_batches_tracked undefined", [&] { batch_norm(x, {&mean, &var, &no_count}); },
         {"batch_norm: num_batches_tracked points to an undefined tensor"}},
        {"group_norm, eps NaN", [&] { group_norm(x, 1, u, u, std::nan("")); }, {"group_norm: eps nan is not a finite number >= 0"}},
        {"group_norm, eps inf", [&] { group_norm(x, 1, u, u, inf); }, {"group_norm: eps inf is not a finite number >= 0"}},
        {"group_norm, eps negative", [&] { group_norm(x, 1, u, u, -1e-5); }, {"group_norm: eps -1e-05 is not a finite number >= 0"}},
        {"smooth_l1_loss, beta inf", [&] { smooth_l1_loss(x, x, Reduction::mean, inf); },
         {"smooth_l1_loss: beta inf must be finite and >= 0"}},
        {"max_with_indices, axis past the end", [&] { max_with_indices(x, 4); },
         {"max_with_indices: axis 4 is out of range for shape [1, 1, 2, 2]"}},
        {"min_with_indices, axis before the start", [&] { min_with_indices(x, -5); },
         {"min_with_indices: axis -5 is out of range for shape [1, 1, 2, 2]"}},
        {"max_with_indices of a 0-d tensor, axis 1", [&] { max_with_indices(nan, 1); },
         {"max_with_indices: axis 1 is out of range for shape []"}},
        // Enum values outside their enums (a cast), named as unknown.
        {"gelu, approximate 2", [&] { gelu(x, GeluApproximate(2)); }, {"gelu: approximate 2 is neither none nor tanh"}},
        {"conv2d_padding_sides, kind 3", [&] { conv2d_padding_sides(ConvPadding(ConvPadding::Kind(3)), 3, 1); },
         {"conv2d: unknown padding kind 3"}},
        {"set_isa, an Isa outside the enum", [&] { kernels::set_isa(kernels::Isa(2)); },
         {"set_isa: this CPU does not support ?"}},
    });
}
