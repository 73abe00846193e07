#include "engine/core/tensor.hpp"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "engine/core/memory.hpp"
#include "engine/core/op.hpp"
#include "engine/core/parallel.hpp"

namespace tg {

Storage::~Storage()
{
    if (owner) return;
    if (data == small)
        detail::count_bytes(-int64_t(nbytes));
    else
        detail::deallocate(data, nbytes);
}


int64_t normalize_axis(int64_t axis, int64_t rank, const char* op)
{
    int64_t r = rank == 0 ? 1 : rank;
    TG_CHECK(axis >= -r && axis < r, op, ": axis ", axis, " is out of range for a tensor of rank ",
             rank);
    return axis < 0 ? axis + r : axis;
}

int64_t detail::numel_past_int64(const shape_type& shape, const char* op)
{
    for (int64_t d : shape)
        if (d == 0) return 0;
    fail(op, ": shape ", shape, " has more than 2^63 - 1 elements");
}

void detail::undefined_tensor(const char* function)
{
    fail("use of an undefined tensor (in ", function, "())");
}

Tensor Tensor::empty(const shape_type& shape, Dtype dtype, const char* op)
{
    for (int64_t d : shape) TG_CHECK(d >= 0, op, ": negative dimension in shape ", shape);
    const int64_t numel = numel_of(shape, op);
    size_t nbytes = 0;
    TG_CHECK(!__builtin_mul_overflow(size_t(numel), dtype_size(dtype), &nbytes), op, ": shape ", shape, " of ",
             dtype_name(dtype), " needs more than 2^64 bytes");
    TG_CHECK(nbytes <= detail::max_buffer_bytes, op, ": shape ", shape, " of ", dtype_name(dtype), " needs ",
             nbytes, " bytes, more than the ", detail::max_buffer_bytes, " a buffer may have");
    auto impl = detail::make_pooled<TensorImpl>();
    impl->numel = numel;
    impl->shape = shape;
    impl->dtype = dtype;
    impl->storage = detail::make_pooled<Storage>();
    Storage& st = *impl->storage;
    st.nbytes = nbytes;
    if (st.nbytes <= Storage::small_bytes) {
        st.data = st.small;
        detail::count_bytes(int64_t(st.nbytes));
    } else {
        st.data = detail::allocate(st.nbytes);
    }
    if (const int fill = detail::fresh_buffer_fill(); fill >= 0) std::memset(st.data, fill, st.nbytes);
    return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t axis) const
{
    TG_CHECK(dim() > 0, "size(", axis, ") of a 0-d tensor");
    return shape()[size_t(normalize_axis(axis, dim(), "size"))];
}

Tensor& Tensor::requires_grad_(bool value)
{
    TG_CHECK(is_leaf() || value, "requires_grad_(false) on a tensor produced by op '",
             impl().grad_fn ? impl().grad_fn->op : "?", "': use detach() instead");
    TG_CHECK(!value || is_floating(dtype()), "requires_grad_: only float32 and float64 tensors ",
             "can require grad, got ", dtype_name(dtype()), " of shape ", shape());
    impl().requires_grad = value;
    return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g)
{
    if (!g.defined()) {
        impl().grad.reset();
        return;
    }
    TG_CHECK(g.shape() == shape() && g.dtype() == dtype(), "set_grad: gradient of shape ",
             g.shape(), " (", dtype_name(g.dtype()), ") for a tensor of shape ", shape(), " (",
             dtype_name(dtype()), ")");
    impl().grad = g.impl_ptr();
}

void Tensor::zero_grad() { impl().grad.reset(); }

HookHandle Tensor::register_hook(GradHook hook)
{
    TG_CHECK(requires_grad(), "register_hook: a tensor of shape ", shape(),
             " that does not require grad has no gradient to hook");
    TG_CHECK(bool(hook), "register_hook: the hook is empty");
    // A non-leaf's gradient is the one its producing entry receives.
    return detail::add_hook(impl().grad_fn ? impl().grad_fn->hooks : impl().hooks, std::move(hook));
}

HookHandle Tensor::register_post_accumulate_grad_hook(PostAccumulateGradHook hook)
{
    TG_CHECK(requires_grad() && is_leaf(), "register_post_accumulate_grad_hook: a tensor of shape ", shape(),
             requires_grad() ? " is not a leaf (it is computed by op '" + std::string(impl().grad_fn->op) + "')"
                             : std::string(" does not require grad"),
             "; only leaves accumulate gradients");
    TG_CHECK(bool(hook), "register_post_accumulate_grad_hook: the hook is empty");
    return detail::add_hook(impl().post_accumulate_hooks, std::move(hook));
}

void Tensor::backward(const Tensor& gradient, bool retain_graph, bool create_graph) const
{
    tg::backward(*this, gradient, retain_graph, create_graph);
}

Tensor Tensor::detach() const
{
    auto impl2 = detail::make_pooled<TensorImpl>();
    impl2->storage = impl().storage;
    impl2->shape = impl().shape;
    impl2->numel = impl().numel;
    impl2->dtype = impl().dtype;
    return Tensor(std::move(impl2));
}

double Tensor::item() const
{
    TG_CHECK(numel() == 1, "item() needs a tensor with one element, got shape ", shape());
    return TG_DISPATCH_ALL(dtype(), "item", [&] { return double(data<scalar_t>()[0]); });
}

double Tensor::at(const shape_type& index) const
{
    TG_CHECK(int64_t(index.size()) == dim(), "at(", index, "): index of rank ", index.size(),
             " for a tensor of shape ", shape());
    int64_t flat = 0;
    for (size_t i = 0; i < index.size(); ++i) {
        int64_t k = index[i] < 0 ? index[i] + shape()[i] : index[i];
        TG_CHECK(k >= 0 && k < shape()[i], "at(", index, "): index out of range for shape ",
                 shape());
        flat = flat * shape()[i] + k;
    }
    return TG_DISPATCH_ALL(dtype(), "at", [&] { return double(data<scalar_t>()[flat]); });
}

namespace {

// A double as an element of type T. Into int64 only what has an int64 value:
// casting NaN, ±Inf or a value past ±2^63 is undefined behaviour in C++ (and
// gives INT64_MIN on x86), so it is an error naming `op`.
bool has_int64_value(double v) { return v >= -0x1p63 && v < 0x1p63; }  // false for NaN

template <class T>
T element_from(double v, const char* op)
{
    if constexpr (std::is_same_v<T, int64_t>) TG_CHECK(has_int64_value(v), op, ": ", v, " has no int64 value");
    return T(v);
}

template <class To, class From>
void convert(const From* src, To* dst, int64_t n)
{
    if constexpr (std::is_same_v<To, int64_t> && !std::is_same_v<From, int64_t>) {
        for (int64_t i = 0; i < n; ++i) {
            TG_CHECK(has_int64_value(double(src[i])), "to: element ", i, " is ", double(src[i]),
                     ", which has no int64 value");
            dst[i] = To(src[i]);
        }
    } else {
        for (int64_t i = 0; i < n; ++i) dst[i] = To(src[i]);
    }
}

// Copies a tensor into a new buffer of another dtype (no tape).
Tensor converted(const Tensor& t, Dtype dtype)
{
    Tensor out = Tensor::empty(t.shape(), dtype);
    TG_DISPATCH_ALL(t.dtype(), "to", [&] {
        const scalar_t* src = t.data<scalar_t>();
        TG_DISPATCH_ALL(dtype, "to", [&] {
            using dst_t = scalar_t;
            convert(src, out.data<dst_t>(), t.numel());
        });
    });
    return out;
}

}  // namespace

// Dtype conversion and copy: differentiable, and defined here rather than in
// ops/ so that a tensor's own members stand on the core alone.
struct ToDtype : Op<ToDtype> {
    static constexpr const char* name = "to";
    struct Attrs {
        Dtype dtype;
    };
    static Tensor forward(TensorRefs in, const Attrs& a) { return converted(in[0], a.dtype); }
    static tensor_list backward(const BackwardArgs& g) { return {g.grad.to(g.input_dtype(0))}; }
    static double pointwise(const double* x) { return x[0]; }
    static std::vector<OpSample> samples()
    {
        // The checker runs in float64, where a round trip through float32
        // would be all rounding: the sample converts to float64, which for
        // the float32 pass of the sweep is a real conversion.
        return {sample("to float64 [3,4]", {real("x", {3, 4})}, Attrs{float64})};
    }
};
TG_REGISTER_OP(ToDtype);

struct Clone : Op<Clone> {
    static constexpr const char* name = "clone";
    static Tensor forward(TensorRefs in)
    {
        const Tensor& x = in[0];
        Tensor out = Tensor::empty(x.shape(), x.dtype());
        std::memcpy(out.raw_data(), x.raw_data(), size_t(x.numel()) * dtype_size(x.dtype()));
        return out;
    }
    static constexpr ReplayForm replay = ReplayForm::index_map;
    static tensor_list backward(const BackwardArgs& g) { return {g.grad}; }
    static std::vector<OpSample> samples() { return {sample("[3,4]", {real("x", {3, 4})}), sample("0-d", {real("x", {})})}; }
};
TG_REGISTER_OP(Clone);

Tensor Tensor::to(Dtype target) const
{
    if (target == dtype()) return *this;
    if (!is_floating(target)) return converted(*this, target);  // integers carry no gradient
    return call_op<ToDtype>({*this}, {target});
}

Tensor Tensor::clone() const { return call_op<Clone>({*this}); }

Tensor& Tensor::set_data(const Tensor& other)
{
    TG_CHECK(other.defined(), "set_data: undefined source for a tensor of shape ", shape());
    TensorImpl& me = impl();
    TG_CHECK(!me.grad_fn, "set_data: the tensor of shape ", shape(), " was produced by op '", me.grad_fn->op,
             "'; only leaves (parameters, buffers) can take new data");
    TG_CHECK(!me.requires_grad || is_floating(other.dtype()), "set_data: a tensor that requires grad cannot take ",
             dtype_name(other.dtype()), " data of shape ", other.shape());
    const TensorImpl& src = other.impl();
    if (me.shape != src.shape || me.dtype != src.dtype) me.grad.reset();
    me.storage = src.storage;
    me.shape = src.shape;
    me.numel = src.numel;
    me.dtype = src.dtype;
    return *this;
}

std::vector<double> Tensor::to_vector() const
{
    std::vector<double> v(static_cast<size_t>(numel()));
    TG_DISPATCH_ALL(dtype(), "to_vector", [&] {
        const scalar_t* p = data<scalar_t>();
        for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = double(p[i]);
    });
    return v;
}

// --- in-place ------------------------------------------------------------------

void detail::check_inplace(const Tensor& t, const char* op)
{
    TG_CHECK(!(grad_enabled() && t.is_leaf() && t.requires_grad()), op,
             ": in-place change of a leaf that requires grad (shape ", t.shape(),
             ") while grad mode is on; do it under a tg::NoGradGuard");
}

Tensor& Tensor::fill_(double value)
{
    detail::check_inplace(*this, "fill_");
    TG_DISPATCH_ALL(dtype(), "fill_", [&] {
        scalar_t* p = data<scalar_t>();
        std::fill(p, p + numel(), element_from<scalar_t>(value, "fill_"));
    });
    bump_version();
    return *this;
}

Tensor& Tensor::copy_(const Tensor& src)
{
    detail::check_inplace(*this, "copy_");
    TG_CHECK(src.shape() == shape(), "copy_: source of shape ", src.shape(),
             " into a tensor of shape ", shape());
    if (src.dtype() == dtype())
        std::memmove(raw_data(), src.raw_data(), size_t(numel()) * dtype_size(dtype()));
    else {
        Tensor c = converted(src, dtype());
        std::memcpy(raw_data(), c.raw_data(), size_t(numel()) * dtype_size(dtype()));
    }
    bump_version();
    return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha)
{
    detail::check_inplace(*this, "add_");
    TG_CHECK(other.shape() == shape(), "add_: operand of shape ", other.shape(),
             " for a tensor of shape ", shape());
    TG_CHECK(other.dtype() == dtype(), "add_: operand of dtype ", dtype_name(other.dtype()),
             " for a tensor of dtype ", dtype_name(dtype()));
    TG_DISPATCH_FLOATING(dtype(), "add_", [&] {
        scalar_t* p = data<scalar_t>();
        const scalar_t* q = other.data<scalar_t>();
        scalar_t a = scalar_t(alpha);
        parallel_for(numel(), 1 << 15, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) p[i] += a * q[i];
        });
    });
    bump_version();
    return *this;
}

Tensor& Tensor::mul_(double factor)
{
    detail::check_inplace(*this, "mul_");
    TG_DISPATCH_FLOATING(dtype(), "mul_", [&] {
        scalar_t* p = data<scalar_t>();
        scalar_t f = scalar_t(factor);
        parallel_for(numel(), 1 << 15, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) p[i] *= f;
        });
    });
    bump_version();
    return *this;
}

// --- creation --------------------------------------------------------------------

namespace {
Tensor filled(const shape_type& shape, double value, Dtype dtype, const char* op)
{
    Tensor t = Tensor::empty(shape, dtype, op);
    TG_DISPATCH_ALL(dtype, op, [&] {
        scalar_t* p = t.data<scalar_t>();
        std::fill(p, p + t.numel(), element_from<scalar_t>(value, op));
    });
    return t;
}
}  // namespace

Tensor full(const shape_type& shape, double value, Dtype dtype) { return filled(shape, value, dtype, "full"); }
Tensor zeros(const shape_type& shape, Dtype dtype) { return filled(shape, 0.0, dtype, "zeros"); }
Tensor ones(const shape_type& shape, Dtype dtype) { return filled(shape, 1.0, dtype, "ones"); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype()); }
Tensor scalar(double value, Dtype dtype) { return full({}, value, dtype); }

Tensor arange(double start, double stop, double step, Dtype dtype)
{
    TG_CHECK(step != 0 && std::isfinite(start) && std::isfinite(stop) && std::isfinite(step),
             "arange(", start, ", ", stop, ", ", step, "): step must be non-zero and all finite");
    double count = std::ceil((stop - start) / step);
    TG_CHECK(count < 0x1p62, "arange(", start, ", ", stop, ", ", step, "): ", count,
             " elements are too many");  // before the cast, which would overflow
    int64_t n = count > 0 ? int64_t(count) : 0;
    Tensor t = Tensor::empty({n}, dtype, "arange");
    TG_DISPATCH_ALL(dtype, "arange", [&] {
        scalar_t* p = t.data<scalar_t>();
        for (int64_t i = 0; i < n; ++i) p[i] = element_from<scalar_t>(start + double(i) * step, "arange");
    });
    return t;
}
Tensor arange(int64_t n, Dtype dtype) { return arange(0.0, double(n), 1.0, dtype); }

Tensor from_values(const std::vector<double>& values, const shape_type& shape, Dtype dtype)
{
    shape_type s = shape.empty() && values.size() != 1 ? shape_type{int64_t(values.size())} : shape;
    TG_CHECK(numel_of(s, "from_values") == int64_t(values.size()), "from_values: ", values.size(),
             " values do not fill shape ", s);
    Tensor t = Tensor::empty(s, dtype, "from_values");
    TG_DISPATCH_ALL(dtype, "from_values", [&] {
        scalar_t* p = t.data<scalar_t>();
        for (size_t i = 0; i < values.size(); ++i) p[i] = element_from<scalar_t>(values[i], "from_values");
    });
    return t;
}
Tensor from_values(std::initializer_list<double> values, const shape_type& shape, Dtype dtype)
{
    return from_values(std::vector<double>(values), shape, dtype);
}

// --- printing ----------------------------------------------------------------------

namespace {

void print_value(std::ostream& os, const Tensor& t, double x)
{
    if (t.dtype() == int64)
        os << int64_t(x);
    else
        os << std::setw(10) << std::setprecision(4) << std::fixed << x;
}

void print_rec(std::ostream& os, const Tensor& t, const std::vector<double>& v, size_t axis,
               int64_t offset, int64_t stride_prod, int indent, bool summarize)
{
    const shape_type& s = t.shape();
    int64_t n = s[axis];
    int64_t inner = stride_prod / std::max<int64_t>(n, 1);
    os << "[";
    auto print_item = [&](int64_t i) {
        if (axis + 1 == s.size()) {
            print_value(os, t, v[size_t(offset + i)]);
        } else {
            print_rec(os, t, v, axis + 1, offset + i * inner, inner, indent + 1, summarize);
        }
    };
    const char* sep = axis + 1 == s.size() ? ", " : ",\n";
    auto separator = [&] {
        os << sep;
        if (axis + 1 != s.size()) os << std::string(size_t(indent + 1), ' ');
    };
    if (summarize && n > 6) {
        for (int64_t i = 0; i < 3; ++i) { print_item(i); separator(); }
        os << "...";
        for (int64_t i = n - 3; i < n; ++i) { separator(); print_item(i); }
    } else {
        for (int64_t i = 0; i < n; ++i) {
            if (i) separator();
            print_item(i);
        }
    }
    os << "]";
}

}  // namespace

std::string Tensor::to_string() const
{
    if (!defined()) return "tensor(undefined)";
    std::ostringstream os;
    os << "tensor(";
    std::vector<double> v = to_vector();
    if (dim() == 0)
        print_value(os, *this, v[0]);
    else
        print_rec(os, *this, v, 0, 0, numel(), 7, numel() > 1000);
    os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
    if (grad_fn())
        os << ", grad_fn=" << grad_fn()->op;
    else if (requires_grad())
        os << ", requires_grad";
    os << ")";
    return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

namespace detail {
Tensor adopt(void* data, const shape_type& shape, Dtype dtype, std::shared_ptr<void> owner)
{
    auto impl = detail::make_pooled<TensorImpl>();
    impl->numel = numel_of(shape, "adopt");
    impl->shape = shape;
    impl->dtype = dtype;
    impl->storage = detail::make_pooled<Storage>();
    impl->storage->data = data;
    impl->storage->nbytes = size_t(impl->numel) * dtype_size(dtype);
    impl->storage->owner = std::move(owner);
    return Tensor(std::move(impl));
}
}  // namespace detail

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_tensor_ops() {}
}  // namespace detail

}  // namespace tg
