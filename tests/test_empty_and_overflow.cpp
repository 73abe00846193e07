// Empty tensors are valid tensors, and sizes near int64 are errors, never
// crashes or hangs (issue 13). Results as PyTorch gives them. Every registry
// op with each input given an empty axis: test_bad_input_sweep.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <tapegrad/tapegrad.hpp>

namespace {

using tg::shape_type;
using tg::Tensor;

const tg::Dtype both_dtypes[] = {tg::float32, tg::float64};

Tensor leaf(const shape_type& shape, tg::Dtype dtype) { return tg::zeros(shape, dtype).requires_grad_(); }

}  // namespace

TEST_CASE("empty: sum over everything of [0,3] is 0 and its gradient is empty [0,3]")
{
    for (tg::Dtype dt : both_dtypes) {
        Tensor x = leaf({0, 3}, dt);
        Tensor s = tg::sum(x);
        CHECK(s.shape() == shape_type{});
        CHECK(s.item() == 0.0);
        s.backward();
        CHECK(x.grad().shape() == shape_type{0, 3});
        CHECK(x.grad().dtype() == dt);
    }
}

TEST_CASE("empty: sum over the empty axis of [3,0] is three zeros, with an empty gradient")
{
    for (tg::Dtype dt : both_dtypes) {
        Tensor x = leaf({3, 0}, dt);
        Tensor s = tg::sum(x, {1});
        CHECK(s.shape() == shape_type{3});
        CHECK(s.to_vector() == std::vector<double>{0, 0, 0});
        tg::sum(s).backward();
        CHECK(x.grad().shape() == shape_type{3, 0});
    }
}

TEST_CASE("empty: mean of an empty tensor is NaN, max over an empty axis is an error")
{
    CHECK(std::isnan(tg::mean(tg::zeros({0})).item()));
    CHECK(tg::mean(tg::zeros({2, 0}), {1}).shape() == shape_type{2});
    CHECK_THROWS_WITH_AS(tg::max(tg::zeros({0})), doctest::Contains("max: reduction over axis 0 of size 0"), tg::Error);
    CHECK_THROWS_AS(tg::min(tg::zeros({3, 0}), {1}), tg::Error);
    CHECK(tg::max(tg::zeros({0, 3}), {1}).shape() == shape_type{0});
}

TEST_CASE("empty: add of [3,1] and [1,0] broadcasts to [3,0], forward and backward")
{
    for (tg::Dtype dt : both_dtypes) {
        Tensor a = leaf({3, 1}, dt), b = leaf({1, 0}, dt);
        Tensor y = tg::add(a, b);
        CHECK(y.shape() == shape_type{3, 0});
        tg::sum(y).backward();
        CHECK(a.grad().shape() == shape_type{3, 1});
        CHECK(a.grad().to_vector() == std::vector<double>{0, 0, 0});
        CHECK(b.grad().shape() == shape_type{1, 0});
    }
}

TEST_CASE("empty: softmax and log_softmax of [0,5] and [5,0] are empty, with empty gradients")
{
    for (tg::Dtype dt : both_dtypes)
        for (shape_type shape : {shape_type{0, 5}, shape_type{5, 0}}) {
            Tensor x = leaf(shape, dt);
            Tensor y = tg::softmax(x, 1);
            CHECK(y.shape() == shape);
            tg::sum(y).backward();
            CHECK(x.grad().shape() == shape);
            Tensor x2 = leaf(shape, dt);
            Tensor z = tg::log_softmax(x2, 0);
            CHECK(z.shape() == shape);
            tg::sum(z).backward();
            CHECK(x2.grad().shape() == shape);
        }
}

TEST_CASE("empty: log_softmax of [2^40, 0] returns at once instead of walking 2^40 empty rows")
{
    Tensor x = tg::zeros({int64_t(1) << 40, 0});
    CHECK(tg::log_softmax(x, 1).shape() == x.shape());
    CHECK(tg::softmax(x, 0).shape() == x.shape());
    CHECK(tg::slice(x, 1, 0, 0).shape() == x.shape());
    CHECK(tg::slice(x, 0, 5, 10).shape() == shape_type{5, 0});
    CHECK(tg::concat({x, x}, 1).shape() == x.shape());
    CHECK(tg::matmul(x, tg::zeros({0, 0})).shape() == x.shape());
    CHECK(tg::transpose(x).shape() == shape_type{0, int64_t(1) << 40});
}

TEST_CASE("empty: matmul with m, n or k of 0")
{
    for (tg::Dtype dt : both_dtypes) {
        Tensor a = leaf({0, 3}, dt), b = leaf({3, 4}, dt);
        Tensor y = tg::matmul(a, b);
        CHECK(y.shape() == shape_type{0, 4});
        tg::sum(y).backward();
        CHECK(a.grad().shape() == shape_type{0, 3});
        CHECK(b.grad().to_vector() == std::vector<double>(12, 0.0));

        Tensor c = leaf({3, 0}, dt), d = tg::ones({0, 4}, dt).requires_grad_();
        Tensor z = tg::matmul(c, d);  // k = 0: zeros
        CHECK(z.shape() == shape_type{3, 4});
        CHECK(z.to_vector() == std::vector<double>(12, 0.0));
        tg::sum(z).backward();
        CHECK(c.grad().shape() == shape_type{3, 0});
        CHECK(d.grad().shape() == shape_type{0, 4});
    }
}

TEST_CASE("empty: matmul broadcasts a batch of 1 against a batch of 0")
{
    for (tg::Dtype dt : both_dtypes) {
        Tensor a = tg::ones({1, 3, 4}, dt).requires_grad_();
        Tensor y = tg::matmul(a, tg::ones({0, 4, 5}, dt));
        CHECK(y.shape() == shape_type{0, 3, 5});
        tg::sum(y).backward();
        CHECK(a.grad().shape() == shape_type{1, 3, 4});
        CHECK(a.grad().to_vector() == std::vector<double>(12, 0.0));
        CHECK(tg::bmm(tg::ones({0, 3, 4}, dt), tg::ones({1, 4, 5}, dt)).shape() == shape_type{0, 3, 5});
    }
}

TEST_CASE("empty: conv2d and max_pool2d with a batch of 0 give empty outputs and zero weight gradients")
{
    for (tg::Dtype dt : both_dtypes) {
        Tensor x = leaf({0, 1, 5, 5}, dt);
        Tensor w = tg::ones({2, 1, 3, 3}, dt).requires_grad_();
        Tensor y = tg::conv2d(x, w);
        CHECK(y.shape() == shape_type{0, 2, 3, 3});
        tg::sum(y).backward();
        CHECK(x.grad().shape() == shape_type{0, 1, 5, 5});
        CHECK(w.grad().shape() == shape_type{2, 1, 3, 3});
        CHECK(w.grad().to_vector() == std::vector<double>(18, 0.0));

        Tensor p = leaf({0, 1, 4, 4}, dt);
        Tensor q = tg::max_pool2d(p, {2, 2});
        CHECK(q.shape() == shape_type{0, 1, 2, 2});
        tg::sum(q).backward();
        CHECK(p.grad().shape() == shape_type{0, 1, 4, 4});
    }
}

TEST_CASE("empty: conv2d with 0 output channels has a zero input gradient, and an empty plane is an error as in PyTorch")
{
    for (tg::Dtype dt : both_dtypes) {
        // Taken from a reused buffer, dx once kept whatever it held (the
        // transposed-gradient path had no output channel to write from).
        for (const shape_type& ws : {shape_type{0, 8, 3, 3}, shape_type{0, 8, 1, 1}, shape_type{0, 2, 3, 3}}) {
            CAPTURE(ws);
            Tensor x = tg::full({1, 16, 4, 4}, 7.0, dt).requires_grad_();
            Tensor w = leaf(ws, dt);
            Tensor y = tg::conv2d(x, w, Tensor(), 1, 0, 1, 16 / ws[1]);
            CHECK(y.numel() == 0);
            tg::sum(y).backward();
            CHECK(x.grad().to_vector() == std::vector<double>(256, 0.0));
            // Only the weight asks: the weight gradient of no output channel is empty.
            Tensor w_only = leaf(ws, dt);
            tg::sum(tg::conv2d(tg::full({1, 16, 4, 4}, 7.0, dt), w_only, Tensor(), 1, 0, 1, 16 / ws[1])).backward();
            CHECK(w_only.grad().shape() == ws);
        }
        Tensor w = tg::ones({2, 3, 1, 1}, dt);
        for (const shape_type& xs : {shape_type{2, 3, 0, 5}, shape_type{2, 3, 5, 0}}) {
            CAPTURE(xs);
            CHECK_THROWS_WITH(tg::conv2d(tg::zeros(xs, dt), w, Tensor(), 1, 1),
                              doctest::Contains("conv2d: input of shape"));
            CHECK_THROWS_WITH(tg::max_pool2d(tg::zeros(xs, dt), 2), doctest::Contains("has an empty plane"));
            CHECK_THROWS_WITH(tg::avg_pool2d(tg::zeros(xs, dt), 2, 1, 1), doctest::Contains("has an empty plane"));
            CHECK_THROWS_WITH(tg::adaptive_avg_pool2d(tg::zeros(xs, dt), 2), doctest::Contains("has an empty plane"));
        }
        // Channels of 0 are fine: a sum over no channel is 0, plus the bias.
        // (PyTorch 1.13 returns a [2, 0, 4, 4] here, which we take for a bug.)
        for (const shape_type& ws : {shape_type{3, 0, 1, 1}, shape_type{3, 0, 3, 3}}) {
            Tensor y = tg::conv2d(tg::zeros({2, 0, 4, 4}, dt), tg::zeros(ws, dt), tg::from_values({1, 2, 3}, {3}, dt),
                                  1, ws[2] / 2);
            REQUIRE(y.shape() == shape_type{2, 3, 4, 4});
            const std::vector<double> v = y.to_vector();
            for (size_t k = 0; k < v.size(); ++k) CHECK(v[k] == double(1 + (k / 16) % 3));
        }
        CHECK(tg::adaptive_avg_pool2d(tg::zeros({1, 0, 4, 4}, dt), 2).shape() == shape_type{1, 0, 2, 2});
    }
}

TEST_CASE("empty: batch_norm of an empty batch is empty, with zero weight gradients and the statistics untouched")
{
    // PyTorch 1.13: F.batch_norm(zeros(0, 3, 5), rm, rv, w, b, training=True)
    // is [0, 3, 5], w.grad = b.grad = 0, rm and rv unchanged.
    for (tg::Dtype dt : both_dtypes)
        for (const shape_type& xs : {shape_type{0, 3, 5}, shape_type{2, 3, 0}, shape_type{0, 3}}) {
            CAPTURE(xs);
            Tensor x = leaf(xs, dt);
            Tensor w = tg::ones({3}, dt).requires_grad_(), b = tg::zeros({3}, dt).requires_grad_();
            Tensor rm = tg::from_values({0.5, 1, 2}, {3}, dt), rv = tg::from_values({1, 2, 3}, {3}, dt);
            Tensor y = tg::batch_norm(x, {&rm, &rv}, w, b, true);
            CHECK(y.shape() == xs);
            tg::sum(y).backward();
            CHECK(w.grad().to_vector() == std::vector<double>(3, 0.0));
            CHECK(b.grad().to_vector() == std::vector<double>(3, 0.0));
            CHECK(rm.to_vector() == std::vector<double>{0.5, 1, 2});
            CHECK(rv.to_vector() == std::vector<double>{1, 2, 3});
        }
    // One value per channel has no variance: an error, as in PyTorch.
    CHECK_THROWS_WITH(tg::batch_norm(tg::zeros({1, 3}), {}, Tensor(), Tensor(), true),
                      doctest::Contains("more than 1 value per channel"));
    CHECK(tg::batch_norm(tg::zeros({4, 0, 5}), {}, Tensor(), Tensor(), true).shape() ==
          shape_type{4, 0, 5});
}

TEST_CASE("empty: the sum of a transposed [0,3] has an empty [0,3] gradient")
{
    Tensor x = leaf({0, 3}, tg::float32);
    Tensor t = tg::transpose(x);
    CHECK(t.shape() == shape_type{3, 0});
    tg::sum(t).backward();
    CHECK(x.grad().shape() == shape_type{0, 3});
}

TEST_CASE("overflow: element and byte counts past int64 or the largest buffer are errors")
{
    CHECK_THROWS_WITH_AS(tg::zeros({int64_t(1) << 32, int64_t(1) << 32}),
                         "tapegrad: zeros: shape [4294967296, 4294967296] has more than 2^63 - 1 elements", tg::Error);
    CHECK_THROWS_WITH_AS(tg::zeros({int64_t(1) << 62}),
                         "tapegrad: zeros: shape [4611686018427387904] of float32 needs more than 2^64 bytes", tg::Error);
    // 2^63 + 4 bytes: the allocator's power-of-two rounding used to loop forever here.
    CHECK_THROWS_WITH_AS(tg::zeros({(int64_t(1) << 61) + 1}), doctest::Contains("bytes, more than the"), tg::Error);
    // 2^50 bytes: past any address space, refused before malloc (which ASan would abort on).
    CHECK_THROWS_WITH_AS(tg::ones({int64_t(1) << 48}, tg::float32), doctest::Contains("ones: shape [281474976710656]"),
                         tg::Error);
    // 2^44 bytes (16 TiB): inside the largest buffer, but more than this machine's memory
    // and swap (CI once saw ASan abort on it), so the same error with or without ASan.
    CHECK_THROWS_WITH_AS(tg::zeros({int64_t(1) << 42}, tg::float32),
                         doctest::Contains("bytes of memory and swap this machine has"), tg::Error);
    // The largest buffer itself (2^48 bytes) is attempted, so it meets the machine's
    // memory; four bytes more are refused as larger than any buffer may be.
    CHECK_THROWS_WITH_AS(tg::zeros({int64_t(1) << 46}, tg::float32),
                         doctest::Contains("bytes of memory and swap this machine has"), tg::Error);
    CHECK_THROWS_WITH_AS(tg::zeros({(int64_t(1) << 46) + 1}, tg::float32),
                         doctest::Contains("281474976710660 bytes, more than the 281474976710656 a buffer may have"),
                         tg::Error);
    CHECK_THROWS_WITH_AS(tg::reshape(tg::ones({4}), {int64_t(1) << 62, 4}),
                         doctest::Contains("reshape: shape [4611686018427387904, 4] has more than"), tg::Error);
    CHECK_THROWS_AS(tg::zeros({-1}), tg::Error);
    // A zero axis makes the count 0 however large the others are.
    CHECK(tg::zeros({int64_t(1) << 62, int64_t(1) << 62, 0}).numel() == 0);
    // reshape's own product of the known sizes overflows there too, and must still count 0
    // (UBSan saw the unchecked product), and leave nothing for a -1 to stand for.
    CHECK(tg::reshape(tg::zeros({0}), {int64_t(1) << 62, 4, 0}).shape() == tg::shape_type{int64_t(1) << 62, 4, 0});
    CHECK_THROWS_WITH_AS(tg::reshape(tg::zeros({0}), {int64_t(1) << 62, 4, 0, -1}),
                         doctest::Contains("reshape: cannot reshape [0]"), tg::Error);
}

TEST_CASE("overflow: slice with a step near 2^63 selects one element")
{
    CHECK(tg::slice(tg::ones({10}), 0, 0, 10, int64_t(1) << 62).shape() == shape_type{1});
    Tensor x = tg::arange(10, tg::float64).requires_grad_();
    Tensor y = tg::slice(x, 0, 3, 10, INT64_MAX);
    CHECK(y.to_vector() == std::vector<double>{3});
    tg::sum(y).backward();
    CHECK(x.grad().to_vector() == std::vector<double>{0, 0, 0, 1, 0, 0, 0, 0, 0, 0});
}

TEST_CASE("0-d and empty: flatten of a scalar, a scalar reduced over axis 0 (sum, mean, max and min with indices), permute and slice of empty tensors")
{
    for (tg::Dtype dt : both_dtypes) {
        // flatten of a 0-d tensor is [1], as torch.flatten gives; its gradient is 0-d again.
        Tensor s = tg::full({}, 3.0, dt).requires_grad_();
        Tensor f = tg::flatten(s);
        CHECK(f.shape() == shape_type{1});
        CHECK(f.to_vector() == std::vector<double>{3.0});
        tg::sum(f * 2.0).backward();
        CHECK(s.grad().shape() == shape_type{});
        CHECK(s.grad().item() == 2.0);

        // A 0-d tensor reduced over axis 0 or -1 is itself (torch.sum(t, 0) of a scalar); axis 1 is an error.
        for (int64_t axis : {0, -1}) {
            Tensor t = tg::full({}, 5.0, dt).requires_grad_();
            Tensor r = tg::sum(t, {axis});
            CHECK(r.shape() == shape_type{});
            CHECK(r.item() == 5.0);
            CHECK(tg::mean(t, {axis}).item() == 5.0);
            (r * 3.0).backward();
            CHECK(t.grad().item() == 3.0);
        }
        CHECK_THROWS_WITH_AS(tg::sum(tg::full({}, 1.0, dt), {1}), doctest::Contains("axis 1 is out of range"),
                             tg::Error);
        // torch.max(t, 0) of a scalar: itself, at index 0 (keepdims or not, still 0-d); axis 1 is an error.
        for (bool is_max : {true, false}) {
            Tensor t = tg::full({}, -2.5, dt).requires_grad_();
            auto [v, i] = is_max ? tg::max_with_indices(t, -1, true) : tg::min_with_indices(t, 0);
            CHECK(v.shape() == shape_type{});
            CHECK(v.item() == -2.5);
            CHECK(i.dtype() == tg::int64);
            CHECK(i.shape() == shape_type{});
            CHECK(i.item() == 0.0);
            (v * 4.0).backward();
            CHECK(t.grad().item() == 4.0);
            CHECK_THROWS_WITH_AS(tg::max_with_indices(t, 1), doctest::Contains("axis 1 is out of range"), tg::Error);
        }

        // permute of an empty tensor: the shape moves, nothing is read; the gradient is empty too.
        Tensor e = leaf({2, 0, 3}, dt);
        Tensor p = tg::permute(e, {2, 0, 1});
        CHECK(p.shape() == shape_type{3, 2, 0});
        tg::sum(p).backward();
        CHECK(e.grad().shape() == shape_type{2, 0, 3});

        // An empty slice (start at stop, or past the end) is [.., 0, ..]; its gradient is all zeros.
        Tensor x = tg::reshape(tg::arange(0.0, 12.0, 1.0, dt), {3, 4}).detach().requires_grad_();
        Tensor none = tg::slice(x, 1, 2, 2);
        CHECK(none.shape() == shape_type{3, 0});
        CHECK(tg::slice(x, 0, 5, 9).shape() == shape_type{0, 4});
        tg::sum(none).backward();
        CHECK(x.grad().shape() == shape_type{3, 4});
        CHECK(x.grad().to_vector() == std::vector<double>(12, 0.0));
    }
}

TEST_CASE("0-d and empty: index_select of a scalar, linear of no input features, a constant pad that keeps nothing of a row")
{
    for (tg::Dtype dt : both_dtypes) {
        CAPTURE(std::string(tg::dtype_name(dt)));
        // A 0-d tensor has the one axis 0: index [0] or 0-d 0 gives it back, 0-d
        // (as PyTorch); an index of two is refused (PyTorch gives a 0-d for it too).
        Tensor s = tg::scalar(2.5, dt).requires_grad_();
        for (const shape_type& is : {shape_type{1}, shape_type{}}) {
            Tensor picked = tg::index_select(s, 0, tg::zeros(is, tg::int64));
            CHECK(picked.dim() == 0);
            CHECK(picked.item() == 2.5);
            CHECK(tg::grad({picked}, {s})[0].item() == 1.0);
        }
        CHECK_THROWS_WITH(tg::index_select(s, 0, tg::zeros({2}, tg::int64)),
                          doctest::Contains("index_select: a 0-d input takes one index, got an index of shape [2]"));
        CHECK_THROWS_WITH(tg::index_select(s, 0, tg::ones({1}, tg::int64)), doctest::Contains("index_select"));
        // linear with 0 input features: the bias alone, and a weight gradient of [3, 0].
        Tensor x = leaf({2, 0}, dt), w = leaf({3, 0}, dt), b = tg::from_values({1, 2, 3}, {3}, dt).requires_grad_();
        Tensor y = tg::linear(x, w, b);
        CHECK(y.to_vector() == std::vector<double>{1, 2, 3, 1, 2, 3});
        tg::sum(y).backward();
        CHECK(w.grad().shape() == shape_type{3, 0});
        CHECK(b.grad().to_vector() == std::vector<double>{2, 2, 2});
    }
    // Constant pads (-3, 2) on an axis of 3 keep nothing of each row: the value
    // only, in every dtype.
    for (tg::Dtype dt : {tg::float32, tg::float64, tg::int64}) {
        CAPTURE(std::string(tg::dtype_name(dt)));
        Tensor p = tg::pad(tg::ones({2, 3}, dt), {-3, 2}, tg::PaddingMode::constant, 4);
        CHECK(p.shape() == shape_type{2, 2});
        CHECK(p.to_vector() == std::vector<double>{4, 4, 4, 4});
    }
}
