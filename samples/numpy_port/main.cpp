// The seed, ported: the NumPy conv layer this project grew from (the second
// `class Conv`, with im2col, of ../shared/seed/000_bb821144dc84adf6.txt),
// moved to C++ line by line in xtensor and judged by tapegrad's checker.
//
// 1. seed::Conv is the Python class as written, bugs included; the comment
//    above each block quotes the Python lines it ports.
// 2. fixed::Conv is the same code with the fixes, each commented.
// 3. Both become tapegrad ops (tg::XtensorOp): "seed_conv" and "ported_conv".
// 4. seed_conv is gradchecked in float64 on a few shapes. The report says,
//    per gradient the Python code makes (next_dout, self.W['grad'],
//    self.b['grad']) and element by element, where its backward is wrong.
// 5. ported_conv passes the checker, matches tg::conv2d, and its registered
//    samples pass tg::check_sample.
// 6. A small CNN made with ported_conv trains on Fashion-MNIST.
//
//   numpy_port [--steps 300] [--data DIR]
//
// Exit code: 0 when the seed's backward is found wrong, the fixed one passes
// every check and matches tg::conv2d, and training lowered the loss; 77 when
// all checks went so but the dataset is not installed (training skipped);
// 1 otherwise.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>
#include <tapegrad/xtensor.hpp>

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xpad.hpp>
#include <xtensor/xview.hpp>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// --- NumPy's words ------------------------------------------------------------------------

// A shape as Python prints a tuple: (2, 7, 5), (3,).
template <class S>
std::string py_tuple(const S& shape)
{
    std::string s = "(";
    for (size_t d = 0; d < shape.size(); ++d) {
        if (d) s += ", ";
        s += std::to_string(shape[d]);
    }
    return s + (shape.size() == 1 ? ",)" : ")");
}

// a.reshape(shape), -1 included. Sizes that disagree raise NumPy's own
// ValueError text as a tapegrad error: the checker then reports it, as a
// NumPy user would see it, instead of xtensor ending the program.
template <class E>
auto np_reshape(E&& e, std::vector<ptrdiff_t> shape)
{
    xt::xarray<typename std::decay_t<E>::value_type> a = std::forward<E>(e);
    const ptrdiff_t size = ptrdiff_t(a.size());
    ptrdiff_t known = 1;
    for (ptrdiff_t s : shape)
        if (s != -1) known *= s;
    auto unknown = std::find(shape.begin(), shape.end(), -1);
    if (unknown == shape.end() ? known != size : known == 0 || size % known != 0) {
        std::string text;
        for (ptrdiff_t s : shape) {
            text += text.empty() ? "(" : ",";
            text += s == -1 ? std::string("newaxis") : std::to_string(s);
        }
        tg::fail("ValueError: cannot reshape array of size ", size, " into shape ", text, ")");
    }
    if (unknown != shape.end()) *unknown = size / known;
    a.reshape(std::vector<size_t>(shape.begin(), shape.end()));
    return a;
}

template <class E, class S>
auto np_reshape(E&& e, const S& shape)
{
    return np_reshape(std::forward<E>(e), std::vector<ptrdiff_t>(shape.begin(), shape.end()));
}

// --- 1. The seed's layer, as written ------------------------------------------------------

namespace seed {

// {'val': ..., 'grad': ...}
template <class T>
struct Param {
    xt::xarray<T> val, grad;
};

// class Conv:  (the im2col one; `this->` is Python's `self.`)
template <class T>
class Conv {
public:
    // def __init__(self, in_channels, out_channels, kernel_size, stride=1):
    //     self.kernel_size = (kernel_size,kernel_size,in_channels,out_channels)
    //     self.W = {'val': np.random.standard_normal((self.kernel_size)), 'grad': np.zeros(self.kernel_size)}
    //     self.b = {'val': np.random.standard_normal(out_channels), 'grad': np.zeros(out_channels)}
    // The values come from tapegrad (the op's inputs) instead of being drawn here.
    Conv(xt::xarray<T> w, xt::xarray<T> b, size_t stride)
        : in_channels(w.shape()[2]),
          out_channels(w.shape()[3]),
          kernel_size{w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]},
          stride(stride),
          W{std::move(w), xt::zeros<T>(kernel_size)},
          b{std::move(b), xt::zeros<T>({out_channels})}
    {
    }

    template <class E>
    xt::xarray<T> _forward(const E& x)
    {
        // (N,Cin,H,W) = x.shape
        // self.input_shape = x.shape
        const size_t N = x.shape()[0], H = x.shape()[2], W = x.shape()[3];
        this->input_shape.assign(x.shape().begin(), x.shape().end());
        // H_ = int((H - self.kernel_size[0]) / self.stride + 1)
        // W_ = int((W - self.kernel_size[0]) / self.stride + 1)
        const size_t H_ = (H - this->kernel_size[0]) / this->stride + 1;
        const size_t W_ = (W - this->kernel_size[0]) / this->stride + 1;
        // col_weights = self.W['val'].reshape([-1,self.out_channels])
        xt::xarray<T> col_weights = np_reshape(this->W.val, {-1, ptrdiff_t(this->out_channels)});
        // self.col_image = []                     (here the array that np.array(self.col_image) makes)
        // conv_out = np.zeros((N,self.out_channels,H_,W_))
        this->col_image = xt::zeros<T>({N, H_ * W_, this->in_channels * this->kernel_size[0] * this->kernel_size[0]});
        xt::xarray<T> conv_out = xt::zeros<T>({N, this->out_channels, H_, W_});
        for (size_t i = 0; i < N; ++i) {
            // img_i = x[i]
            // self.col_image_i = self.im2col(img_i,self.kernel_size[0],self.stride)
            auto img_i = xt::view(x, i);
            xt::xarray<T> col_image_i = this->im2col(img_i, this->kernel_size[0], this->stride);
            // conv_out[i] = np.reshape(np.dot(self.col_image_i, col_weights) + self.b['val'],(H_,W_,-1)).transpose(2,0,1)
            xt::view(conv_out, i) = xt::transpose(
                np_reshape(xt::linalg::dot(col_image_i, col_weights) + this->b.val, {ptrdiff_t(H_), ptrdiff_t(W_), -1}),
                {2, 0, 1});
            // self.col_image.append(self.col_image_i)
            xt::view(this->col_image, i) = col_image_i;
        }
        // self.col_image = np.array(self.col_image)
        return conv_out;
    }

    template <class E>
    xt::xarray<T> _backward(const E& dout)
    {
        const size_t k = this->kernel_size[0];
        // (N,Cout,H_,W_) = dout.shape
        // col_dout = dout.reshape((N,Cout,-1))
        const size_t N = dout.shape()[0], Cout = dout.shape()[1];
        xt::xarray<T> col_dout = np_reshape(dout, {ptrdiff_t(N), ptrdiff_t(Cout), -1});
        // for i in range(self.input_shape[0]):
        //     self.W['grad'] += np.dot(col_dout[i], self.col_image[i]).reshape(self.W['val'].shape)
        for (size_t i = 0; i < this->input_shape[0]; ++i)
            this->W.grad += np_reshape(xt::linalg::dot(xt::view(col_dout, i), xt::view(this->col_image, i)),
                                       this->W.val.shape());
        // self.b['grad'] += np.sum(col_dout,axis=(0,2)).reshape(self.b['val'].shape)
        this->b.grad += np_reshape(xt::sum(col_dout, {0, 2}), this->b.val.shape());

        // dout_pad = np.pad(dout, ((0, 0), (0, 0), (self.kernel_size[0] - 1, self.kernel_size[0] - 1),
        //                   (self.kernel_size[0] - 1, self.kernel_size[0] - 1)), 'constant', constant_values=0)
        xt::xarray<T> dout_pad = xt::pad(xt::xarray<T>(dout), {{0, 0}, {0, 0}, {k - 1, k - 1}, {k - 1, k - 1}},
                                         xt::pad_mode::constant, T(0));
        // weight_flip = self.W['val'][:,:,::-1,::-1]
        // weight_flip = np.swapaxes(weight_flip, 0, 1)
        // weight_flip_col = weight_flip.reshape(self.in_channels, -1)
        xt::xarray<T> weight_flip = xt::flip(xt::flip(this->W.val, 2), 3);
        weight_flip = xt::transpose(weight_flip, {1, 0, 2, 3});
        xt::xarray<T> weight_flip_col = np_reshape(weight_flip, {ptrdiff_t(this->in_channels), -1});

        // next_dout = np.zeros((N, self.in_channels, self.input_shape[2], self.input_shape[3]))
        xt::xarray<T> next_dout = xt::zeros<T>({N, this->in_channels, this->input_shape[2], this->input_shape[3]});
        for (size_t i = 0; i < N; ++i) {
            // dout_pad_image_batch_i = dout_pad[i,:]
            // dout_pad_image_batch_i_col = self.im2col(dout_pad_image_batch_i , self.kernel_size[0], self.stride)
            // next_dout[i] = np.reshape(np.dot(weight_flip_col, np.transpose(dout_pad_image_batch_i_col)),
            //                           (self.in_channels, self.input_shape[2], self.input_shape[3]))
            auto dout_pad_image_batch_i = xt::view(dout_pad, i);
            xt::xarray<T> dout_pad_image_batch_i_col = this->im2col(dout_pad_image_batch_i, k, this->stride);
            xt::view(next_dout, i) =
                np_reshape(xt::linalg::dot(weight_flip_col, xt::transpose(dout_pad_image_batch_i_col)),
                           {ptrdiff_t(this->in_channels), ptrdiff_t(this->input_shape[2]), ptrdiff_t(this->input_shape[3])});
        }
        return next_dout;
    }

    // def im2col(self, image, ksize, stride):
    //     # image is a 3d tensor([channel, height, width])
    template <class E>
    xt::xarray<T> im2col(const E& image, size_t ksize, size_t stride) const
    {
        // image_col = []                          (counted first and allocated once; the same rows)
        auto windows = [&](size_t n) { return n < ksize ? 0 : (n - ksize) / stride + 1; };
        xt::xarray<T> image_col =
            xt::zeros<T>({windows(image.shape()[1]) * windows(image.shape()[2]), image.shape()[0] * ksize * ksize});
        size_t row = 0;
        // for i in range(0, image.shape[1] - ksize + 1, stride):
        //     for j in range(0, image.shape[2] - ksize + 1, stride):
        //         col = image[:,i:i + ksize, j:j + ksize].reshape([-1])
        //         image_col.append(col)
        // (xt::noalias: the row is written in place, without a temporary; it
        // does not overlap the image)
        for (size_t i = 0; i + ksize <= image.shape()[1]; i += stride)
            for (size_t j = 0; j + ksize <= image.shape()[2]; j += stride)
                xt::noalias(xt::row(image_col, ptrdiff_t(row++))) =
                    xt::flatten(xt::view(image, xt::all(), xt::range(i, i + ksize), xt::range(j, j + ksize)));
        // image_col = np.array(image_col)
        return image_col;
    }

    size_t in_channels, out_channels;
    std::array<size_t, 4> kernel_size;
    size_t stride;
    Param<T> W, b;
    std::vector<size_t> input_shape;
    xt::xarray<T> col_image;
};

}  // namespace seed

// --- 2. The same layer, corrected ---------------------------------------------------------
//
// The seed's backward reshapes, flips and swaps W as if it were
// (Cout, Cin, F, F), the layout of the notes' first, loop-based Conv; this
// class keeps W as (k, k, Cin, Cout). The fixes go through W's
// (Cout, Cin, k, k) view, W.transpose(3, 2, 0, 1), where the seed's lines
// mean what they say. The forward's W.reshape(-1, Cout) was right only for
// Cin = 1, and stride > 1 needs dout dilated.

namespace fixed {

// class Conv(seed.Conv): the same __init__ and im2col, these two methods anew.
template <class T>
class Conv : public seed::Conv<T> {
public:
    using seed::Conv<T>::Conv;

    template <class E>
    xt::xarray<T> _forward(const E& x)
    {
        const size_t N = x.shape()[0], H = x.shape()[2], W = x.shape()[3];
        this->input_shape.assign(x.shape().begin(), x.shape().end());
        const size_t H_ = (H - this->kernel_size[0]) / this->stride + 1;
        const size_t W_ = (W - this->kernel_size[0]) / this->stride + 1;
        // FIX 1: im2col's columns run over (Cin, k, k), so the weight rows must
        // too: W.reshape(-1, Cout) ran over (k, k, Cin) and, with Cin > 1,
        // multiplied each window element with another channel's weight.
        // col_weights = self.W['val'].transpose(3, 2, 0, 1).reshape(self.out_channels, -1).T
        xt::xarray<T> col_weights = xt::transpose(
            np_reshape(xt::transpose(this->W.val, {3, 2, 0, 1}), {ptrdiff_t(this->out_channels), -1}));
        this->col_image = xt::zeros<T>({N, H_ * W_, this->in_channels * this->kernel_size[0] * this->kernel_size[0]});
        xt::xarray<T> conv_out = xt::zeros<T>({N, this->out_channels, H_, W_});
        for (size_t i = 0; i < N; ++i) {
            auto img_i = xt::view(x, i);
            xt::xarray<T> col_image_i = this->im2col(img_i, this->kernel_size[0], this->stride);
            xt::view(conv_out, i) = xt::transpose(
                np_reshape(xt::linalg::dot(col_image_i, col_weights) + this->b.val, {ptrdiff_t(H_), ptrdiff_t(W_), -1}),
                {2, 0, 1});
            xt::view(this->col_image, i) = col_image_i;
        }
        return conv_out;
    }

    // need_next_dout is not a fix but a saving: tapegrad says whether x wants
    // a gradient. The first layer's x is the data, whose next_dout the Python
    // computed and dropped: here it is most of the backward's time.
    template <class E>
    xt::xarray<T> _backward(const E& dout, bool need_next_dout = true)
    {
        const size_t k = this->kernel_size[0], s = this->stride;
        const size_t Cin = this->in_channels, H = this->input_shape[2], W = this->input_shape[3];
        const size_t N = dout.shape()[0], Cout = dout.shape()[1], H_ = dout.shape()[2], W_ = dout.shape()[3];
        xt::xarray<T> col_dout = np_reshape(dout, {ptrdiff_t(N), ptrdiff_t(Cout), -1});
        // FIX 2: np.dot(col_dout[i], self.col_image[i]) is dW as (Cout, Cin·k·k),
        // the (Cout, Cin, k, k) layout; .reshape(W.shape) poured it unchanged
        // into (k, k, Cin, Cout). Reshape to (Cout, Cin, k, k), then transpose
        // to W's layout.
        // self.W['grad'] += np.dot(col_dout[i], self.col_image[i]).reshape(Cout, Cin, k, k).transpose(2, 3, 1, 0)
        for (size_t i = 0; i < this->input_shape[0]; ++i)
            this->W.grad += xt::transpose(
                np_reshape(xt::linalg::dot(xt::view(col_dout, i), xt::view(this->col_image, i)),
                           {ptrdiff_t(Cout), ptrdiff_t(Cin), ptrdiff_t(k), ptrdiff_t(k)}),
                {2, 3, 1, 0});
        this->b.grad += np_reshape(xt::sum(col_dout, {0, 2}), this->b.val.shape());
        if (!need_next_dout) return {};

        // FIX 3 (stride > 1): output (h_, w_) read the window at (h_·s, w_·s).
        // Put dout there with zeros between (dilate it), so the sliding below
        // runs at stride 1; rows and columns of x that no window reached
        // ((H - k) % s != 0) get zeros, padded after. The seed slid im2col at
        // stride s over the undilated dout: too few windows, and the reshape
        // to (Cin, H, W) raised.
        // dout_dilated = np.zeros((N, Cout, (H_ - 1) * s + 1, (W_ - 1) * s + 1)); dout_dilated[:, :, ::s, ::s] = dout
        // dout_pad = np.pad(dout_dilated, ((0, 0), (0, 0), (k - 1, k - 1 + extra_h), (k - 1, k - 1 + extra_w)))
        xt::xarray<T> dout_dilated = xt::zeros<T>({N, Cout, (H_ - 1) * s + 1, (W_ - 1) * s + 1});
        xt::view(dout_dilated, xt::all(), xt::all(), xt::range(0, (H_ - 1) * s + 1, s),
                 xt::range(0, (W_ - 1) * s + 1, s)) = dout;
        const size_t extra_h = H - ((H_ - 1) * s + k), extra_w = W - ((W_ - 1) * s + k);
        xt::xarray<T> dout_pad = xt::pad(dout_dilated, {{0, 0}, {0, 0}, {k - 1, k - 1 + extra_h}, {k - 1, k - 1 + extra_w}},
                                         xt::pad_mode::constant, T(0));
        // FIX 4: [:, :, ::-1, ::-1] flips the kernel and swapaxes(0, 1) swaps
        // the channels only in the (Cout, Cin, k, k) layout; on W itself they
        // flipped the channel axes and transposed the kernel (and the reshape
        // below then mixed kernel positions into channels).
        // weight_flip = self.W['val'].transpose(3, 2, 0, 1)[:, :, ::-1, ::-1]
        xt::xarray<T> weight_flip = xt::flip(xt::flip(xt::transpose(this->W.val, {3, 2, 0, 1}), 2), 3);
        weight_flip = xt::transpose(weight_flip, {1, 0, 2, 3});
        xt::xarray<T> weight_flip_col = np_reshape(weight_flip, {ptrdiff_t(Cin), -1});

        xt::xarray<T> next_dout = xt::zeros<T>({N, Cin, H, W});
        for (size_t i = 0; i < N; ++i) {
            auto dout_pad_image_batch_i = xt::view(dout_pad, i);
            // FIX 3 again: stride 1 over the dilated dout.
            xt::xarray<T> dout_pad_image_batch_i_col = this->im2col(dout_pad_image_batch_i, k, 1);
            xt::view(next_dout, i) = np_reshape(xt::linalg::dot(weight_flip_col, xt::transpose(dout_pad_image_batch_i_col)),
                                                {ptrdiff_t(Cin), ptrdiff_t(H), ptrdiff_t(W)});
        }
        return next_dout;
    }
};

}  // namespace fixed

// --- the shapes checked, for both layers --------------------------------------------------

struct Config {
    const char* label;
    int64_t n, cin, cout, h, w, k, stride;
};

const Config configs[] = {
    {"Cin=1 Cout=1, k=3, stride 1", 2, 1, 1, 5, 7, 3, 1},
    {"Cin=2 Cout=3, k=3, stride 1", 2, 2, 3, 5, 7, 3, 1},
    {"Cin=2 Cout=3, k=3, stride 2", 2, 2, 3, 7, 5, 3, 2},
    {"Cin=2 Cout=3, k=2, stride 2, the last row and column unreached", 1, 2, 3, 7, 5, 2, 2},
};

// --- 3. The layers as tapegrad ops -------------------------------------------------------
//
// x [N, Cin, H, W], W [k, k, Cin, Cout], b [Cout] in; conv_out [N, Cout, H_, W_]
// out. tapegrad saves the inputs; the backward builds the layer again and runs
// _forward once more to refill what the Python object kept between the two
// calls (self.col_image, self.input_shape). x goes in as an xarray copy: views
// of it are then made without allocating (views of tapegrad's view, whose
// shape is a std::vector, allocate), and im2col makes one per window. The
// layer's "+=" into 'grad' starts from zeros here: summing over calls is the
// tape's job (each leaf's grad()).
struct ConvAttrs {
    int64_t stride = 1;
    int64_t kernel_size = 3;
};

template <class T>
void check_conv_inputs(const char* op, const tg::XtForward<T>& f, const ConvAttrs& a)
{
    const tg::shape_type &x = f.tensor(0).shape(), &w = f.tensor(1).shape(), &b = f.tensor(2).shape();
    const int64_t k = a.kernel_size;
    TG_CHECK(x.size() == 4 && w.size() == 4 && b.size() == 1 && w[0] == k && w[1] == k && w[2] == x[1] &&
                 b[0] == w[3] && a.stride >= 1 && x[2] >= k && x[3] >= k,
             op, ": needs x [N, Cin, H, W] with H, W >= k, W [k, k, Cin, Cout], b [Cout] and stride >= 1; got x ", x,
             ", W ", w, ", b ", b, ", k ", k, ", stride ", a.stride);
}

struct SeedConv : tg::XtensorOp<SeedConv> {
    static constexpr const char* name = "seed_conv";
    using Attrs = ConvAttrs;
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_input(1) | tg::save_input(2);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f, const Attrs& a)
    {
        check_conv_inputs(name, f, a);
        seed::Conv<T> conv(f.input(1), f.input(2), size_t(a.stride));
        f.set_output(conv._forward(xt::xarray<T>(f.input(0))));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& g, const Attrs& a)
    {
        seed::Conv<T> conv(g.input(1), g.input(2), size_t(a.stride));
        conv._forward(xt::xarray<T>(g.input(0)));
        xt::xarray<T> next_dout = conv._backward(g.grad());
        g.set_grad(0, next_dout);
        g.set_grad(1, conv.W.grad);
        g.set_grad(2, conv.b.grad);
    }
};

struct PortedConv : tg::XtensorOp<PortedConv> {
    static constexpr const char* name = "ported_conv";
    using Attrs = ConvAttrs;
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_input(1) | tg::save_input(2);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f, const Attrs& a)
    {
        check_conv_inputs(name, f, a);
        fixed::Conv<T> conv(f.input(1), f.input(2), size_t(a.stride));
        f.set_output(conv._forward(xt::xarray<T>(f.input(0))));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& g, const Attrs& a)
    {
        fixed::Conv<T> conv(g.input(1), g.input(2), size_t(a.stride));
        conv._forward(xt::xarray<T>(g.input(0)));
        xt::xarray<T> next_dout = conv._backward(g.grad(), g.needs_grad(0));
        g.set_grad(0, next_dout);
        g.set_grad(1, conv.W.grad);
        g.set_grad(2, conv.b.grad);
    }
    static std::vector<tg::OpSample> samples()
    {
        std::vector<tg::OpSample> out;
        for (const Config& c : configs)
            out.push_back(sample(c.label,
                                 {tg::real("x", {c.n, c.cin, c.h, c.w}), tg::real("W", {c.k, c.k, c.cin, c.cout}),
                                  tg::real("b", {c.cout})},
                                 {c.stride, c.k}));
        return out;
    }
};
TG_REGISTER_OP(PortedConv);

tg::tensor_list make_inputs(const Config& c, uint64_t seed)
{
    tg::Generator gen(seed);
    return {tg::randn({c.n, c.cin, c.h, c.w}, tg::float64, &gen).requires_grad_(),
            tg::randn({c.k, c.k, c.cin, c.cout}, tg::float64, &gen).requires_grad_(),
            tg::randn({c.cout}, tg::float64, &gen).requires_grad_()};
}

template <class Op>
tg::Tensor call(const Config& c, const tg::tensor_list& in)
{
    return Op::call({in[0], in[1], in[2]}, {c.stride, c.k});
}

// tg::conv2d's weight is [Cout, Cin, kh, kw]: W[kh, kw, ci, co] at [co, ci, kh, kw].
tg::Tensor reference_conv(const Config& c, const tg::tensor_list& in)
{
    return tg::conv2d(in[0], tg::permute(in[1], {3, 2, 0, 1}), in[2], c.stride);
}

// max |a - b| / max(1, max |b|)
double relative_difference(const tg::Tensor& a, const tg::Tensor& b)
{
    std::vector<double> av = a.to_vector(), bv = b.to_vector();
    double diff = 0, scale = 1;
    for (size_t i = 0; i < av.size(); ++i) {
        diff = std::max(diff, std::abs(av[i] - bv[i]));
        scale = std::max(scale, std::abs(bv[i]));
    }
    return diff / scale;
}

// Every element checked, one cotangent (a random dout): the checker's numbers
// are then the gradients of J = np.sum(conv_out * dout), the scalar of the
// seed's own gradient_check.
tg::GradcheckOptions checker_options()
{
    tg::GradcheckOptions o;
    o.names = {"x", "W", "b"};
    o.mode = tg::GradcheckMode::full;
    o.cotangents = 1;
    o.report_worst = 1 << 20;  // every element, so that the report holds both gradients whole
    return o;
}

// --- 4. The seed's backward, judged -------------------------------------------------------

// What the Python code calls each gradient.
const char* const python_name[] = {"next_dout", "self.W['grad']", "self.b['grad']"};
const char* const python_short[] = {"next_dout", "W['grad']", "b['grad']"};

struct SeedFinding {
    bool forward_is_conv = false, raised = false;
    std::vector<int64_t> failures = {0, 0, 0}, elements = {0, 0, 0};
};

// The analytic and numeric gradient of one input, in row-major order, from a
// report that lists every element.
std::pair<std::vector<double>, std::vector<double>> whole_gradients(const tg::InputReport& r)
{
    int64_t n = 1;
    for (int64_t d : r.shape) n *= d;
    std::vector<double> analytic(static_cast<size_t>(n)), numeric(static_cast<size_t>(n));
    for (const tg::ElementReport& e : r.worst) {
        int64_t flat = 0;
        for (size_t d = 0; d < e.index.size(); ++d) flat = flat * r.shape[d] + e.index[d];
        analytic[size_t(flat)] = e.analytic;
        numeric[size_t(flat)] = e.numeric;
    }
    return {analytic, numeric};
}

// Whether W['grad'] holds the right numbers in np.dot's (Cout, Cin·k·k)
// order: analytic.reshape(Cout, -1) == numeric.reshape(-1, Cout).T.
bool is_transposed_dw(const tg::InputReport& r)
{
    auto [analytic, numeric] = whole_gradients(r);
    const size_t cout = size_t(r.shape[3]), rows = analytic.size() / cout;
    double worst = 0, scale = 0;
    for (size_t co = 0; co < cout; ++co)
        for (size_t j = 0; j < rows; ++j) {
            worst = std::max(worst, std::abs(analytic[co * rows + j] - numeric[j * cout + co]));
            scale = std::max(scale, std::abs(numeric[j * cout + co]));
        }
    return worst <= 1e-8 * std::max(1.0, scale);
}

// W['grad'][0, 1, 2, 0], b['grad'][2]
std::string element_name(size_t input, const tg::shape_type& index)
{
    std::string s = std::string(python_short[input]) + "[";
    for (size_t d = 0; d < index.size(); ++d) {
        if (d) s += ", ";
        s += std::to_string(index[d]);
    }
    return s + "]";
}

SeedFinding judge_seed(int number, const Config& c)
{
    std::printf("\n-- %d. %s, x %s\n", number, c.label, py_tuple(tg::shape_type{c.n, c.cin, c.h, c.w}).c_str());
    tg::tensor_list in = make_inputs(c, 7);
    SeedFinding found;

    // The forward first: the checker judges the backward against it, not against a convolution.
    {
        tg::NoGradGuard off;
        tg::Tensor y = call<SeedConv>(c, in);
        double d = relative_difference(y, reference_conv(c, in));
        found.forward_is_conv = d < 1e-12;
        std::printf("   _forward vs tg::conv2d with weight W.transpose(3, 2, 0, 1): %s (max rel. diff %.0e)\n",
                    found.forward_is_conv ? "same" : "DIFFERENT", d);
        if (!found.forward_is_conv) {
            tg::Tensor as_read = tg::permute(tg::reshape(in[1], {c.cin, c.k, c.k, c.cout}), {3, 0, 1, 2});
            double d2 = relative_difference(y, tg::conv2d(in[0], as_read, in[2], c.stride));
            std::printf("   but %s with weight W.reshape(Cin, k, k, Cout).transpose(3, 0, 1, 2) (max rel. diff %.0e):\n"
                        "   col_weights = W.reshape(-1, Cout) reads W's memory as (Cin, k, k, Cout)\n",
                        d2 < 1e-12 ? "the same" : "not even", d2);
        }
    }

    tg::GradcheckResult r = tg::gradcheck([&c](const tg::tensor_list& v) { return call<SeedConv>(c, v); }, in,
                                          checker_options());
    if (!r.error.empty()) {
        std::printf("   _backward raised, so there is no gradient to check:\n   %s\n", r.error.c_str());
        found.raised = true;
        return found;
    }
    for (size_t i = 0; i < r.inputs.size(); ++i) {
        const tg::InputReport& ir = r.inputs[i];
        found.failures[i] = ir.failures;
        found.elements[i] = ir.elements;
        std::printf("   %-15s %-14s %s  difference %.0e", python_name[i], py_tuple(ir.shape).c_str(),
                    ir.verdict == tg::Verdict::pass ? "right" : "WRONG", ir.rel_error);
        if (ir.failures == 0) {
            std::printf("\n");
            continue;
        }
        std::printf(", %lld of %lld elements\n", (long long)ir.failures, (long long)ir.elements);
        std::printf("       %-26s %14s %14s\n", "element", "analytic", "numeric");
        const int listed = 4;
        int shown = 0;
        std::string right;
        for (const tg::ElementReport& e : ir.worst) {
            if (e.verdict != tg::ElementVerdict::fail) {
                if (!right.empty()) right += ", ";
                right += element_name(i, e.index);
            }
            else if (shown++ < listed)
                std::printf("       %-26s %14.7g %14.7g\n", element_name(i, e.index).c_str(), e.analytic, e.numeric);
        }
        if (ir.failures > listed) std::printf("       ... and %lld more\n", (long long)(ir.failures - listed));
        if (!right.empty() && ir.elements - ir.failures <= listed)
            std::printf("       right only: %s\n", right.c_str());
        if (i == 1 && is_transposed_dw(ir))
            std::printf("       yet every number is right, in the wrong place:\n"
                        "       analytic.reshape(Cout, -1) == numeric.reshape(-1, Cout).T, element by element\n");
    }
    for (const tg::StructuralCheck& s : r.structural)
        if (!s.passed) std::printf("   structural: %s: %s\n", s.name.c_str(), s.detail.c_str());
    return found;
}

// Finds the seed's backward wrong, and says where; true if it is.
bool part_seed()
{
    std::printf("== The seed's im2col Conv, ported line by line (seed::Conv), as the op \"seed_conv\"\n"
                "   tg::gradcheck, float64, every element perturbed: analytic = _backward's, numeric = finite\n"
                "   differences of J = np.sum(conv_out * dout), dout random; difference = ||analytic - numeric|| /\n"
                "   (||analytic|| + ||numeric||), the notes' measure (they call it wrong above 1e-7)\n");
    std::vector<SeedFinding> found;
    int number = 0;
    for (const Config& c : configs) found.push_back(judge_seed(++number, c));

    std::printf("\n   In short (wrong elements / all):\n   %-22s", "");
    for (size_t j = 0; j < found.size(); ++j) std::printf(" %-9zu", j + 1);
    std::printf("\n   %-22s", "conv_out (vs conv2d)");
    for (const SeedFinding& f : found) std::printf(" %-9s", f.forward_is_conv ? "same" : "DIFFERENT");
    bool any_wrong = false;
    for (size_t i = 0; i < 3; ++i) {
        std::printf("\n   %-22s", python_name[i]);
        for (const SeedFinding& f : found) {
            std::string cell = f.raised ? "raised"
                             : f.failures[i] ? std::to_string(f.failures[i]) + "/" + std::to_string(f.elements[i])
                                             : "right";
            std::printf(" %-9s", cell.c_str());
            any_wrong = any_wrong || f.raised || f.failures[i] > 0;
        }
    }
    std::printf(
        "\n   Read with the code:\n"
        "   - self.b['grad'] is right: np.sum(col_dout, axis=(0,2)).\n"
        "   - self.W['grad'] is right for Cin = Cout = 1 only: np.dot(col_dout[i], self.col_image[i]) is dW\n"
        "     as (Cout, Cin*k*k), and .reshape(self.W['val'].shape) pours it unchanged into (k, k, Cin, Cout).\n"
        "   - next_dout is wrong even for Cin = Cout = 1, where the channel axes have size 1:\n"
        "     W[:,:,::-1,::-1] flips axes 2 and 3, in this class Cin and Cout, not the kernel's, and\n"
        "     np.swapaxes(weight_flip, 0, 1) transposes the kernel, where the input gradient needs it\n"
        "     rotated (W[::-1, ::-1]); the two agree only at the corners (0, W-1) and (H-1, 0), which one\n"
        "     anti-diagonal kernel element reaches. With channels, weight_flip.reshape(Cin, -1) also\n"
        "     mixes kernel positions into channels.\n"
        "   - stride 2: im2col(dout_pad, k, self.stride) slides over dout at the stride, finds too few\n"
        "     windows, and the reshape of next_dout to (Cin, H, W) raises: nothing is returned.\n"
        "   - the forward is a convolution, but for Cin > 1 not with W[kh, kw, ci, co] (the checker\n"
        "     cannot see this: it judges the backward against the forward; tg::conv2d can).\n"
        "   The backward's layout lines are right for W of shape (Cout, Cin, F, F), the notes' first Conv;\n"
        "   this class's W is (k, k, Cin, Cout). And for stride > 1, dout must be dilated.\n");
    return any_wrong;
}

// --- 5. The fixed layer: checker, tg::conv2d, registry ------------------------------------

bool part_fixed()
{
    std::printf("\n== The fixed Conv (fixed::Conv), as the op \"ported_conv\"\n");
    bool ok = true;
    const double tight = 1e-12;
    for (const Config& c : configs) {
        tg::tensor_list in = make_inputs(c, 7);
        tg::GradcheckOptions options = checker_options();
        options.report_worst = 5;  // a failure's report lists the worst elements only
        tg::GradcheckResult r =
            tg::gradcheck([&c](const tg::tensor_list& v) { return call<PortedConv>(c, v); }, in, options);
        std::printf("-- %s: gradcheck %s (difference x %.0e, W %.0e, b %.0e)\n", c.label,
                    r.passed() ? "pass" : "FAIL", r.inputs.size() == 3 ? r.inputs[0].rel_error : 0.0,
                    r.inputs.size() == 3 ? r.inputs[1].rel_error : 0.0, r.inputs.size() == 3 ? r.inputs[2].rel_error : 0.0);
        if (!r.passed()) std::printf("%s", r.to_string().c_str());

        // Against tg::conv2d: the output, and the gradients of the same J.
        tg::Tensor y = call<PortedConv>(c, in), ref = reference_conv(c, in);
        tg::Generator gen(11);
        tg::Tensor dout = tg::randn(ref.shape(), tg::float64, &gen);
        tg::tensor_list g = tg::grad({tg::sum(y * dout)}, in), g_ref = tg::grad({tg::sum(ref * dout)}, in);
        double d[4] = {relative_difference(y, ref), relative_difference(g[0], g_ref[0]),
                       relative_difference(g[1], g_ref[1]), relative_difference(g[2], g_ref[2])};
        bool same = std::all_of(d, d + 4, [&](double v) { return v <= tight; });
        std::printf("   vs tg::conv2d: %s (max rel. diff: output %.0e, next_dout %.0e, W['grad'] %.0e, b['grad'] %.0e)\n",
                    same ? "same" : "DIFFERENT", d[0], d[1], d[2], d[3]);
        ok = ok && r.passed() && same;
    }

    std::printf("-- registered samples, tg::check_sample (float64 first order; float32 against float64)\n");
    const tg::OpInfo* op = tg::find_op("ported_conv");
    for (const tg::OpSample& s : op->samples) {
        tg::SampleCheck sc = tg::check_sample(*op, s);
        std::printf("   %-62s %s (%.0f ms)\n", s.label.c_str(), sc.verdict().c_str(), sc.seconds * 1e3);
        if (!sc.passed()) std::printf("%s", sc.to_string().c_str());
        ok = ok && sc.passed();
    }
    return ok;
}

// --- 6. Training with the fixed layer -----------------------------------------------------

bool dataset_present(const std::string& dir)
{
    for (const char* name : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                             "t10k-labels-idx1-ubyte"}) {
        std::filesystem::path p = std::filesystem::path(dir) / name;
        if (!std::filesystem::exists(p) && !std::filesystem::exists(p.string() + ".gz")) return false;
    }
    return true;
}

struct Cnn {
    static constexpr int64_t channels = 8, k = 3;
    tg::Tensor conv_w, conv_b, fc_w, fc_b;

    explicit Cnn(tg::Generator& gen)
    {
        // He initialisation, std sqrt(2 / fan_in), in the spirit of the notes' first Conv
        // (sqrt(2 / Cin)), rather than the im2col class's standard_normal.
        conv_w = (tg::randn({k, k, 1, channels}, tg::float32, &gen) * std::sqrt(2.0 / (k * k))).requires_grad_();
        conv_b = tg::zeros({channels}).requires_grad_();
        const int64_t features = channels * 13 * 13;
        fc_w = ((tg::rand({10, features}, tg::float32, &gen) * 2.0 - 1.0) / std::sqrt(double(features))).requires_grad_();
        fc_b = tg::zeros({10}).requires_grad_();
    }
    tg::named_tensors parameters() const
    {
        return {{"conv.W", conv_w}, {"conv.b", conv_b}, {"fc.weight", fc_w}, {"fc.bias", fc_b}};
    }
    // [N, 1, 28, 28] -> ported conv -> relu -> 2x2 max pool -> [N, 8·13·13] -> linear -> [N, 10]
    tg::Tensor operator()(const tg::Tensor& x) const
    {
        tg::Tensor h = tg::max_pool2d(tg::relu(PortedConv::call({x, conv_w, conv_b}, {1, k})), 2);
        return tg::linear(tg::flatten(h, 1), fc_w, fc_b);
    }
};

// 0: the loss went down; 77: no dataset; 1: it did not go down.
int part_train(int steps, const std::string& dir)
{
    std::printf("\n== Training: ported_conv(1->8, k=3) -> relu -> max_pool2d(2) -> linear(1352->10), "
                "Fashion-MNIST\n");
    if (!dataset_present(dir)) {
        std::printf("   Fashion-MNIST is not in %s (Debian package dataset-fashion-mnist; --data DIR for another "
                    "place): training SKIPPED\n",
                    dir.c_str());
        return 77;
    }
    auto t0 = Clock::now();
    tg::TensorDataset train = tg::load_fashion_mnist("train", dir);
    tg::TensorDataset test = tg::load_fashion_mnist("test", dir);
    train.normalize(tg::fashion_mnist_mean, tg::fashion_mnist_std);
    test.normalize(tg::fashion_mnist_mean, tg::fashion_mnist_std);
    std::printf("   loaded %lld training and %lld test images from %s (%.1f s)\n", (long long)train.size(),
                (long long)test.size(), dir.c_str(), seconds_since(t0));

    tg::Generator gen(0);
    Cnn model(gen);
    tg::optim::Adam optimizer(model.parameters(), {.lr = 2e-3});
    tg::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 0});

    const int window = std::clamp(steps / 10, 1, 25);
    std::vector<double> losses;
    t0 = Clock::now();
    while (int(losses.size()) < steps)
        for (const tg::Batch& batch : loader) {
            tg::Tensor loss = tg::cross_entropy(model(batch.x), batch.y);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            losses.push_back(loss.item());
            const int step = int(losses.size());
            if (step % window == 0 || step == steps) {
                double mean = 0;
                int from = std::max(0, step - window);
                for (int i = from; i < step; ++i) mean += losses[size_t(i)];
                std::printf("   step %4d  loss %.4f (mean of steps %d-%d)\n", step, mean / (step - from), from + 1, step);
            }
            if (step == steps) break;
        }
    const double train_seconds = seconds_since(t0);

    t0 = Clock::now();
    const int64_t n_test = 2000;
    int64_t right = 0;
    {
        tg::NoGradGuard no_grad;
        for (int64_t from = 0; from < n_test; from += 500) {
            tg::Tensor logits = model(tg::slice(test.inputs(), 0, from, from + 500));
            tg::Tensor pred = tg::argmax(logits, 1);
            tg::Tensor target = tg::slice(test.targets(), 0, from, from + 500);
            for (int64_t i = 0; i < 500; ++i) right += pred.data<int64_t>()[i] == target.data<int64_t>()[i];
        }
    }
    const double test_seconds = seconds_since(t0);

    // The loss of the first and last steps, `first` steps each.
    const int first = std::max(1, std::min(10, steps / 3));
    double start = 0, end = 0;
    for (int i = 0; i < first; ++i) {
        start += losses[size_t(i)] / first;
        end += losses[losses.size() - 1 - size_t(i)] / first;
    }
    const bool lowered = end < start;
    std::printf("   %d steps in %.1f s (%.0f ms a step); mean loss of the first %d steps %.4f, of the last %d %.4f: %s\n",
                steps, train_seconds, 1e3 * train_seconds / steps, first, start, first, end,
                lowered ? "lowered" : "NOT LOWERED");
    std::printf("   test accuracy on the first %lld test images: %.1f%% (%.1f s)\n", (long long)n_test,
                100.0 * double(right) / double(n_test), test_seconds);
    return lowered ? 0 : 1;
}

int run(int argc, char** argv)
{
    int steps = 300;
    std::string data = tg::fashion_mnist_dir;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--steps" || a == "--data") && i + 1 < argc) {
            if (a == "--steps") steps = std::stoi(argv[++i]);
            else data = argv[++i];
        } else if (a == "--help" || a == "-h") {
            std::printf("usage: %s [--steps N (300)] [--data DIR (%s)]\n", argv[0], tg::fashion_mnist_dir);
            return 0;
        } else
            tg::fail("numpy_port: unknown option ", a, " (see --help)");
    }
    TG_CHECK(steps >= 1, "numpy_port: --steps must be positive");

    auto t0 = Clock::now();
    const bool seed_wrong = part_seed();
    const double seed_seconds = seconds_since(t0);
    t0 = Clock::now();
    const bool fixed_ok = part_fixed();
    const double fixed_seconds = seconds_since(t0);
    const int trained = part_train(steps, data);

    std::printf("\n== Verdict (checks of the seed %.0f ms, of the fix %.0f ms)\n", 1e3 * seed_seconds, 1e3 * fixed_seconds);
    std::printf("   the seed's backward found wrong: %s\n", seed_wrong ? "yes" : "NO");
    std::printf("   the fixed layer passes the checker and matches tg::conv2d: %s\n", fixed_ok ? "yes" : "NO");
    std::printf("   training lowered the loss: %s\n", trained == 0 ? "yes" : trained == 77 ? "skipped (no dataset)" : "NO");
    if (!seed_wrong || !fixed_ok || trained == 1) return 1;
    return trained;
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
