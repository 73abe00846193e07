#include "engine/kernels/norm.hpp"

#include <algorithm>
#include <cmath>

#include "engine/core/parallel.hpp"
#include "engine/kernels/reduce.hpp"

namespace tg::kernels {

namespace {

template <class F>
void for_each_channel(const ChannelView& v, F f)
{
    int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(v.count(), 1));
    parallel_for(v.c, grain, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) f(c);
    });
}

}  // namespace

template <class T>
void batch_norm_forward(const T* x, const T* w, const T* b, const ChannelView& v, double eps, T* y, T* mean_out,
                        T* invstd_out, double* var_out)
{
    for_each_channel(v, [&](int64_t c) {
        double s = 0;
        for (int64_t i = 0; i < v.n; ++i) {
            const T* p = x + v.block(i, c);
            s += double(sum_of<T>(v.s, [p](int64_t k) { return p[k]; }));
        }
        double mean = s / double(v.count());
        double q = 0;
        T mu = T(mean);
        for (int64_t i = 0; i < v.n; ++i) {
            const T* p = x + v.block(i, c);
            q += double(sum_of<T>(v.s, [p, mu](int64_t k) { return (p[k] - mu) * (p[k] - mu); }));
        }
        double var = q / double(v.count());
        double invstd = 1 / std::sqrt(var + eps);
        T a = T((w ? double(w[c]) : 1.0) * invstd), shift = T((b ? double(b[c]) : 0.0) - mean * double(a));
        for (int64_t i = 0; i < v.n; ++i) {
            const T* p = x + v.block(i, c);
            T* o = y + v.block(i, c);
            for (int64_t k = 0; k < v.s; ++k) o[k] = p[k] * a + shift;
        }
        mean_out[c] = mu;
        invstd_out[c] = T(invstd);
        var_out[c] = var;
    });
}

template <class T>
void batch_norm_backward(const T* x, const T* g, const T* w, const T* mean, const T* invstd, const ChannelView& v,
                         T* dx, T* dw, T* db)
{
    for_each_channel(v, [&](int64_t c) {
        T mu = mean[c];
        double sg = 0, sgc = 0;  // Σ g, Σ g·(x - mean)
        for (int64_t i = 0; i < v.n; ++i) {
            const T* p = x + v.block(i, c);
            const T* q = g + v.block(i, c);
            sg += double(sum_of<T>(v.s, [q](int64_t k) { return q[k]; }));
            sgc += double(sum_of<T>(v.s, [p, q, mu](int64_t k) { return q[k] * (p[k] - mu); }));
        }
        // An empty batch has no statistics (invstd is NaN) and no gradient.
        double is = double(invstd[c]), sgx = v.count() == 0 ? 0.0 : sgc * is, m = double(v.count());
        if (dw) dw[c] = T(sgx);
        if (db) db[c] = T(sg);
        if (!dx) return;
        double a = (w ? double(w[c]) : 1.0) * is;
        T ka = T(a), k0 = T(-a * sg / m), kc = T(-a * sgx / m * is);
        for (int64_t i = 0; i < v.n; ++i) {
            const T* p = x + v.block(i, c);
            const T* q = g + v.block(i, c);
            T* o = dx + v.block(i, c);
            for (int64_t k = 0; k < v.s; ++k) o[k] = ka * q[k] + kc * (p[k] - mu) + k0;
        }
    });
}

template <class T>
void batch_norm_update_running(T* running_mean, T* running_var, const T* batch_mean, const double* batch_var,
                               int64_t c, double factor, double unbiased)
{
    for (int64_t ch = 0; ch < c; ++ch) {
        running_mean[ch] = T(factor * double(batch_mean[ch]) + (1 - factor) * double(running_mean[ch]));
        running_var[ch] = T(factor * (batch_var[ch] * unbiased) + (1 - factor) * double(running_var[ch]));
    }
}

template void batch_norm_forward(const float*, const float*, const float*, const ChannelView&, double, float*, float*,
                                 float*, double*);
template void batch_norm_forward(const double*, const double*, const double*, const ChannelView&, double, double*,
                                 double*, double*, double*);
template void batch_norm_backward(const float*, const float*, const float*, const float*, const float*,
                                  const ChannelView&, float*, float*, float*);
template void batch_norm_backward(const double*, const double*, const double*, const double*, const double*,
                                  const ChannelView&, double*, double*, double*);

template void batch_norm_update_running(float*, float*, const float*, const double*, int64_t, double, double);
template void batch_norm_update_running(double*, double*, const double*, const double*, int64_t, double, double);

}  // namespace tg::kernels
