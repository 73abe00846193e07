// matmul and its primitive bmm: forward GEMMs, backward rules, samples.
#include "ops/matmul.hpp"

#include "engine/core/op.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/gemm.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

// Replay of bmm for a few changed elements: C' − C = (A' − A)·op(B') + op(A)·(B' − B),
// so each changed element of A updates one row of C, each one of B one column.
bool bmm_delta(DeltaArgs& d, bool ta, bool tb)
{
    const ReplayInput &A = d.inputs[0], &B = d.inputs[1];
    const shape_type &sa = A.base->shape(), &sb = B.base->shape(), &sc = d.base_out.shape();
    const int64_t batch = sc[0], m = sc[1], n = sc[2], k = ta ? sa[1] : sa[2];
    const int64_t a_batches = sa[0] == 1 ? batch : 1, b_batches = sb[0] == 1 ? batch : 1;
    int64_t work = (A.unchanged() ? 0 : int64_t(A.changed->size()) * n * a_batches) +
                   (B.unchanged() ? 0 : int64_t(B.changed->size()) * m * b_batches);
    if (work > batch * m * n * k / 4) return false;  // a GEMM is cheaper
    const double *a0 = A.base_data(), *a1 = A.data(), *b1 = B.data(), *b0 = B.base_data();
    const int64_t a_mat = sa[1] * sa[2], b_mat = sb[1] * sb[2];
    auto op_a = [&](const double* a, int64_t i, int64_t r, int64_t c) {  // op(A)[i][r][c]
        return ta ? a[i * a_mat + c * sa[2] + r] : a[i * a_mat + r * sa[2] + c];
    };
    auto op_b = [&](const double* b, int64_t i, int64_t r, int64_t c) {
        return tb ? b[i * b_mat + c * sb[2] + r] : b[i * b_mat + r * sb[2] + c];
    };
    // A changed element of A adds a row of op(B) to a row of C. For a
    // transposed B (a linear layer's weight) that row is a strided column of
    // B: read it from a transposed copy of B instead, made once per replayer,
    // when B is as recorded (the copy is of the recorded value).
    const double* b_rows = nullptr;  // op(B) as [batches of B][k][n]
    if (tb && B.unchanged() && !A.unchanged()) {
        auto* cached = std::any_cast<std::vector<double>>(&d.cache());
        std::vector<double>& t = cached ? *cached : d.cache().emplace<std::vector<double>>();
        if (t.empty()) {
            t.resize(size_t(sb[0] * b_mat));
            for (int64_t i = 0; i < sb[0]; ++i)
                for (int64_t r = 0; r < k; ++r)
                    for (int64_t j = 0; j < n; ++j) t[size_t((i * k + r) * n + j)] = op_b(b0, i, r, j);
        }
        b_rows = t.data();
    }
    int64_t touched_row = -1;
    if (!A.unchanged())
        for (int64_t f : *A.changed) {
            double da = a1[f] - a0[f];
            int64_t ia = f / a_mat, r = f % a_mat / sa[2], c = f % sa[2];
            int64_t row = ta ? c : r, inner = ta ? r : c;
            for (int64_t i = sa[0] == 1 ? 0 : ia; i < (sa[0] == 1 ? batch : ia + 1); ++i) {
                int64_t ib = sb[0] == 1 ? 0 : i;
                double* out = d.out + (i * m + row) * n;
                if (b_rows) {
                    const double* br = b_rows + (ib * k + inner) * n;
                    for (int64_t j = 0; j < n; ++j) out[j] += da * br[j];
                } else
                    for (int64_t j = 0; j < n; ++j) out[j] += da * op_b(b1, ib, inner, j);
                // Consecutive changes mostly share a row: touch it once.
                if (i * m + row != touched_row) {
                    touched_row = i * m + row;
                    for (int64_t j = 0; j < n; ++j) d.touch(touched_row * n + j);
                }
            }
        }
    if (!B.unchanged())
        for (int64_t f : *B.changed) {
            double db = b1[f] - b0[f];
            int64_t ib = f / b_mat, r = f % b_mat / sb[2], c = f % sb[2];
            int64_t col = tb ? r : c, inner = tb ? c : r;
            for (int64_t i = sb[0] == 1 ? 0 : ib; i < (sb[0] == 1 ? batch : ib + 1); ++i) {
                int64_t ia = sa[0] == 1 ? 0 : i;
                for (int64_t row = 0; row < m; ++row) {
                    d.out[(i * m + row) * n + col] += op_a(a0, ia, row, inner) * db;
                    d.touch((i * m + row) * n + col);
                }
            }
        }
    return true;
}

}  // namespace

namespace {
struct Bmm : Op<Bmm> {
    static constexpr const char* name = "bmm";
    static constexpr Saves saves = save_input(0) | save_input(1);
    struct Attrs {
        bool trans_a, trans_b;
    };
    static Tensor forward(TensorRefs in, const Attrs& at)
    {
        const Tensor &a = in[0], &b = in[1];
        const bool ta = at.trans_a, tb = at.trans_b;
        TG_CHECK(a.defined() && b.defined(), "bmm: undefined operand");

        TG_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-d operands, got ", a.shape(), " and ", b.shape());
        TG_CHECK(a.dtype() == b.dtype(), "bmm: dtype mismatch, ", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
        int64_t ba = a.shape()[0], bb = b.shape()[0];
        TG_CHECK(ba == bb || ba == 1 || bb == 1, "bmm: batch sizes ", ba, " and ", bb, " do not broadcast (",
                 a.shape(), " and ", b.shape(), ")");
        int64_t m = ta ? a.shape()[2] : a.shape()[1], k = ta ? a.shape()[1] : a.shape()[2];
        int64_t kb = tb ? b.shape()[2] : b.shape()[1], n = tb ? b.shape()[1] : b.shape()[2];
        TG_CHECK(k == kb, "matmul: inner dimensions differ, ", a.shape(), ta ? "ᵀ" : "", " and ", b.shape(),
                 tb ? "ᵀ" : "", " (", k, " vs ", kb, ")");
        int64_t batch = ba == 1 ? bb : ba;  // a batch of 1 broadcasts, also to 0
        Tensor out = Tensor::empty({batch, m, n}, a.dtype(), "bmm");
        if (out.numel() == 0) return out;  // no loop over a huge empty batch
        TG_DISPATCH_FLOATING(a.dtype(), "matmul", [&] {
            const scalar_t* pa = a.data<scalar_t>();
            const scalar_t* pb = b.data<scalar_t>();
            scalar_t* pc = out.data<scalar_t>();
            int64_t lda = a.shape()[2], ldb = b.shape()[2];
            int64_t sa = ba == 1 ? 0 : m * k, sb = bb == 1 ? 0 : k * n;
            auto one = [&](int64_t i) {
                detail::gemm(ta, tb, m, n, k, scalar_t(1), pa + i * sa, lda, pb + i * sb, ldb, scalar_t(0),
                             pc + i * m * n, n);
            };
            // Small products: one per core. Large ones: gemm splits each across cores.
            if (batch > 1 && m * n * k < (1 << 18))
                parallel_for(batch, 1, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; ++i) one(i); });
            else
                for (int64_t i = 0; i < batch; ++i) one(i);
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& at)
    {
        const bool ta = at.trans_a, tb = at.trans_b;
        const Tensor &a = g.input(0), &b = g.input(1);
        const Tensor& gc = g.grad;
        Tensor da, db;
        // C = op(A) op(B): dA and dB are products of G with the other operand,
        // with the flags that undo the transpositions.
        if (g.needs_grad(0)) {
            da = !ta ? bmm(gc, b, false, !tb) : bmm(b, gc, tb, true);
            if (a.shape()[0] == 1 && da.shape()[0] != 1) da = sum(da, {0}, true);
        }
        if (g.needs_grad(1)) {
            db = !tb ? bmm(a, gc, !ta, false) : bmm(gc, a, true, ta);
            if (b.shape()[0] == 1 && db.shape()[0] != 1) db = sum(db, {0}, true);
        }
        return {da, db};
    }
    static bool delta(DeltaArgs& d, const Attrs& at) { return bmm_delta(d, at.trans_a, at.trans_b); }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,3,4] x [2,4,5]", {real("a", {2, 3, 4}), real("b", {2, 4, 5})}, Attrs{false, false}),
            sample("[1,3,4]ᵀ x [3,3,5] (a broadcast, transposed)", {real("a", {1, 4, 3}), real("b", {3, 4, 5})},
                   Attrs{true, false}),
            sample("[2,3,4] x [1,5,4]ᵀ (b broadcast, transposed)", {real("a", {2, 3, 4}), real("b", {1, 5, 4})},
                   Attrs{false, true}),
            sample("[2,4,3]ᵀ x [2,5,4]ᵀ", {real("a", {2, 4, 3}), real("b", {2, 5, 4})}, Attrs{true, true}),
        };
    }
};
TG_REGISTER_OP(Bmm);
}  // namespace

Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) { return Bmm::call({a, b}, {trans_a, trans_b}); }

Tensor matmul(const Tensor& a, const Tensor& b)
{
    TG_CHECK(a.defined() && b.defined(), "matmul: undefined operand");
    TG_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: 0-d operand (shapes ", a.shape(), " and ", b.shape(),
             "); use mul for scalars");
    TG_CHECK(a.dtype() == b.dtype(), "matmul: dtype mismatch, ", dtype_name(a.dtype()), " ", a.shape(),
             " and ", dtype_name(b.dtype()), " ", b.shape());
    TG_CHECK(is_floating(a.dtype()), "matmul: expected float32 or float64 operands, got ", dtype_name(a.dtype()), " ",
             a.shape(), " and ", b.shape());
    // Vectors become matrices, and their axis is dropped from the result.
    Tensor a2 = a.dim() == 1 ? reshape(a, {1, a.shape()[0]}) : a;
    Tensor b2 = b.dim() == 1 ? reshape(b, {b.shape()[0], 1}) : b;
    int64_t m = a2.shape()[size_t(a2.dim() - 2)], k = a2.shape()[size_t(a2.dim() - 1)];
    int64_t kb = b2.shape()[size_t(b2.dim() - 2)], n = b2.shape()[size_t(b2.dim() - 1)];
    TG_CHECK(k == kb, "matmul: inner dimensions differ, ", a.shape(), " and ", b.shape(), " (", k, " vs ", kb, ")");

    shape_type batch_a(a2.shape().begin(), a2.shape().end() - 2);
    shape_type batch_b(b2.shape().begin(), b2.shape().end() - 2);
    shape_type batch = kernels::broadcast_shapes(batch_a, batch_b, "matmul");
    Tensor c;
    if (batch_b.empty() || numel_of(batch_b) == 1) {
        // [..., m, k] x [k, n]: the batch folds into the rows of one GEMM.
        Tensor bb = reshape(b2, {1, k, n});
        c = bmm(reshape(a2, {1, numel_of(shape_type(a2.shape().begin(), a2.shape().end() - 1), "matmul"), k}), bb);
    } else {
        int64_t nb = numel_of(batch);
        shape_type full_a = batch, full_b = batch;
        full_a.insert(full_a.end(), {m, k});
        full_b.insert(full_b.end(), {k, n});
        Tensor a3 = numel_of(batch_a) == 1 ? reshape(a2, {1, m, k}) : reshape(broadcast_to(a2, full_a), {nb, m, k});
        Tensor b3 = reshape(broadcast_to(b2, full_b), {nb, k, n});
        c = bmm(a3, b3);
    }
    shape_type out_shape = batch;
    if (a.dim() > 1) out_shape.push_back(m);
    if (b.dim() > 1) out_shape.push_back(n);
    return reshape(c, out_shape);
}
TG_REGISTER_SAMPLES("matmul", {
    sample("[3,4] x [4,5]", {real("a", {3, 4}), real("b", {4, 5})}, [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[2,3,4] x [4,2]", {real("a", {2, 3, 4}), real("b", {4, 2})}, [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[3,4] x [2,4,5]", {real("a", {3, 4}), real("b", {2, 4, 5})}, [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[2,1,3,4] x [3,4,2] broadcast batch", {real("a", {2, 1, 3, 4}), real("b", {3, 4, 2})},
           [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[4] x [4,3] vector-matrix", {real("a", {4}), real("b", {4, 3})}, [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[2,3,4] x [4] matrix-vector", {real("a", {2, 3, 4}), real("b", {4})}, [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[5] x [5] dot", {real("a", {5}), real("b", {5})}, [](const tensor_list& x) { return matmul(x[0], x[1]); }),
    sample("[2,3,4] x [1,4,5] a batch of one folds into the rows", {real("a", {2, 3, 4}), real("b", {1, 4, 5})},
           [](const tensor_list& x) { return matmul(x[0], x[1]); }),
});

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_matmul_ops() {}
}  // namespace detail

}  // namespace tg
