// The tensor: an n-dimensional, row-major, contiguous array of float32,
// float64 or int64 that may take part in automatic differentiation.
//
// A Tensor is a cheap handle (a shared pointer); copies share the data. Every
// tensor owns contiguous row-major memory: ops that only reinterpret the shape
// (reshape, squeeze, flatten) share it, all others write a new buffer.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dtype.hpp"
#include "error.hpp"
#include "hooks.hpp"

namespace tg {

class Tensor;
using tensor_list = std::vector<Tensor>;
// Parameters, buffers, optimizer state and checkpoint entries, by name.
using named_tensors = std::vector<std::pair<std::string, Tensor>>;
struct Node;

// A buffer shared by a tensor and its aliases.
struct Storage {
    void* data = nullptr;
    size_t nbytes = 0;
    std::shared_ptr<void> owner;  // set when the memory belongs to someone else (an adopted xarray)
    uint64_t version = 0;         // bumped by every in-place change; the tape checks it
    // Small tensors (scalars, tiny vectors) keep their elements here: no
    // separate allocation.
    static constexpr size_t small_bytes = 64;
    alignas(16) unsigned char small[small_bytes];

    Storage() = default;
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage();
};

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    shape_type shape;
    int64_t numel = 0;
    Dtype dtype = Dtype::float32;
    bool requires_grad = false;
    std::shared_ptr<Node> grad_fn;       // the tape entry that produced this tensor (null for leaves)
    std::shared_ptr<TensorImpl> grad;    // accumulated gradient of a leaf
    std::shared_ptr<GradHookList> hooks; // a leaf's gradient hooks (a non-leaf's are on its grad_fn)
    std::shared_ptr<PostAccumulateGradHookList> post_accumulate_hooks;  // a leaf's
};

namespace detail {
// "tapegrad: use of an undefined tensor (in shape())".
[[noreturn]] void undefined_tensor(const char* function);
// numel_of's rare path, out of line: 0 if an axis is 0, else the error.
int64_t numel_past_int64(const shape_type& shape, const char* op);
}  // namespace detail

// Number of elements of a shape (1 for a 0-d shape). A product past int64
// is an error naming `op`, unless an axis is 0 (then there are no elements).
// On every op's path: one multiply and one overflow flag per axis.
inline int64_t numel_of(const shape_type& shape, const char* op = "numel")
{
    int64_t n = 1;
    bool overflow = false;
    for (int64_t d : shape) overflow |= __builtin_mul_overflow(n, d, &n);
    return overflow ? detail::numel_past_int64(shape, op) : n;
}

class Tensor {
public:
    Tensor() = default;  // undefined: no data
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

    // A new, uninitialised tensor; `op` names the caller in a size error.
    static Tensor empty(const shape_type& shape, Dtype dtype = float32, const char* op = "empty");

    bool defined() const { return impl_ != nullptr; }
    const shape_type& shape() const { return impl().shape; }
    int64_t dim() const { return int64_t(impl().shape.size()); }
    int64_t numel() const { return impl().numel; }
    // Size along `axis` (negative counts from the end).
    int64_t size(int64_t axis) const;
    Dtype dtype() const { return impl().dtype; }

    // Typed access to the elements; the type must match dtype().
    template <class T> T* data();
    template <class T> const T* data() const;
    void* raw_data() const { return impl().storage->data; }

    // --- autodiff ------------------------------------------------------------
    bool requires_grad() const { return impl().requires_grad; }
    // Marks a leaf as a variable to differentiate with respect to.
    Tensor& requires_grad_(bool value = true);
    bool is_leaf() const { return impl().grad_fn == nullptr; }
    // The gradient accumulated by backward() (undefined until the first one).
    // A later backward adds in place only to a gradient nobody else holds: one
    // the caller kept (from grad(), set_grad or a create_graph backward) keeps
    // its values, and the leaf gets a new tensor.
    Tensor grad() const;
    void set_grad(const Tensor& g);
    void zero_grad();
    // Sweeps the tape back from this tensor. A non-scalar needs `gradient`,
    // the upstream gradient of the same shape.
    void backward(const Tensor& gradient = Tensor(), bool retain_graph = false,
                  bool create_graph = false) const;
    // Calls `hook` with the gradient with respect to this tensor each time a
    // backward (or tg::grad) computes it, before it is used: before a leaf's
    // grad() accumulates it, before a non-leaf's producing op propagates it.
    // The hook may return a replacement of the same shape and dtype (or an
    // undefined Tensor to keep it); hooks run in registration order, each on
    // the previous one's result. Under create_graph the gradient it sees is
    // recorded, so what it computes is differentiated too.
    HookHandle register_hook(GradHook hook);
    // For a leaf that requires grad: calls `hook` with the leaf each time a
    // backward() has accumulated into its grad() everything that backward
    // sends it (once per backward, after its last contribution; also when
    // every contribution was empty, so grad() may be as before). Not called by
    // tg::grad, which accumulates nothing. PyTorch's
    // register_post_accumulate_grad_hook.
    HookHandle register_post_accumulate_grad_hook(PostAccumulateGradHook hook);
    // Same data, cut from the tape.
    Tensor detach() const;
    const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }

    // --- values ---------------------------------------------------------------
    double item() const;                       // the value of a one-element tensor
    double at(const shape_type& index) const;  // one element, bounds-checked
    Tensor to(Dtype dtype) const;              // differentiable conversion
    Tensor clone() const;                      // differentiable copy
    std::vector<double> to_vector() const;     // all elements, row-major
    std::string to_string() const;

    // --- in-place changes (not recorded; they bump the version counter) --------
    Tensor& fill_(double value);
    Tensor& zero_() { return fill_(0.0); }
    Tensor& copy_(const Tensor& src);
    Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other
    Tensor& mul_(double factor);
    uint64_t version() const { return impl().storage->version; }
    void bump_version() const { ++impl().storage->version; }
    // Makes this tensor refer to `other`'s data (its storage, shape and dtype)
    // while keeping its identity: every handle, a module's member and an
    // optimizer's list see the new data. For leaves (parameters, buffers);
    // tape entries that saved this tensor notice the swap and refuse to run.
    // The gradient is dropped when the shape or dtype changes.
    Tensor& set_data(const Tensor& other);

    // `caller` (filled in where impl() is called: "dtype", "shape") is named in
    // the error. (__builtin_FUNCTION: std::source_location is not in clang 14.)
    TensorImpl& impl(const char* caller = __builtin_FUNCTION()) const
    {
        if (!impl_) [[unlikely]]
            detail::undefined_tensor(caller);
        return *impl_;
    }
    const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
    bool same(const Tensor& other) const { return impl_ == other.impl_; }

private:
    std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// --- creation -----------------------------------------------------------------
Tensor zeros(const shape_type& shape, Dtype dtype = float32);
Tensor ones(const shape_type& shape, Dtype dtype = float32);
Tensor full(const shape_type& shape, double value, Dtype dtype = float32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// 0-d tensor holding one value.
Tensor scalar(double value, Dtype dtype = float32);
// start, start+step, ... < stop.
Tensor arange(double start, double stop, double step = 1.0, Dtype dtype = float32);
Tensor arange(int64_t n, Dtype dtype = float32);
// From values in row-major order; `shape` defaults to a 1-d tensor.
Tensor from_values(const std::vector<double>& values, const shape_type& shape = {},
                   Dtype dtype = float32);
Tensor from_values(std::initializer_list<double> values, const shape_type& shape = {},
                   Dtype dtype = float32);

template <class T> T* Tensor::data()
{
    TG_CHECK(dtype_of<T>() == dtype(), "data<", dtype_name(dtype_of<T>()), ">() on a ",
             dtype_name(dtype()), " tensor of shape ", shape());
    return static_cast<T*>(raw_data());
}
template <class T> const T* Tensor::data() const
{
    TG_CHECK(dtype_of<T>() == dtype(), "data<", dtype_name(dtype_of<T>()), ">() on a ",
             dtype_name(dtype()), " tensor of shape ", shape());
    return static_cast<const T*>(raw_data());
}

namespace detail {
// A tensor over memory that `owner` keeps alive (an adopted xarray).
Tensor adopt(void* data, const shape_type& shape, Dtype dtype, std::shared_ptr<void> owner);
// Refuses an in-place change of a leaf that requires grad while grad mode is on.
void check_inplace(const Tensor& t, const char* op);
}  // namespace detail

// Normalises a possibly negative axis for a tensor of rank `rank`; `op` names the
// op in the error.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* op);

}  // namespace tg
