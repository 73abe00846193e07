#include "nn/gradcheck.hpp"

#include "engine/core/autograd.hpp"

namespace tg {

namespace {

// Gives a module's parameters and buffers float64 stand-ins in place
// (Tensor::set_data) and their own data back when it goes: the model reads
// the stand-ins through the very tensors it holds, while its data, its
// gradients, an optimizer's state and batch norm's running statistics stay
// as they were.
class Float64StandIns {
public:
    explicit Float64StandIns(nn::Module& model)
    {
        NoGradGuard off;
        for (auto& [name, t] : model.named_parameters())
            if (swap_in(t)) parameters_.emplace_back(name, t);
        for (auto& [name, t] : model.named_buffers()) swap_in(t);
    }
    ~Float64StandIns()
    {
        for (Original& o : originals_) {
            o.tensor.set_data(o.data);
            o.tensor.set_grad(o.grad);
        }
    }
    Float64StandIns(const Float64StandIns&) = delete;
    Float64StandIns& operator=(const Float64StandIns&) = delete;
    const named_tensors& parameters() const { return parameters_; }

private:
    struct Original {
        Tensor tensor, data, grad;
    };
    // False for a tensor already swapped (shared by two modules).
    bool swap_in(Tensor t)
    {
        for (const Original& o : originals_)
            if (o.tensor.same(t)) return false;
        Tensor stand_in = is_floating(t.dtype()) ? t.detach().to(float64) : t.detach();
        if (stand_in.impl().storage == t.impl().storage) stand_in = stand_in.clone();  // never the model's own memory
        originals_.push_back({t, t.detach(), t.grad()});
        t.set_data(stand_in);
        return true;
    }
    std::vector<Original> originals_;
    named_tensors parameters_;
};

Tensor float64_input(const Tensor& t)
{
    if (!t.defined() || !is_floating(t.dtype())) return t;
    return t.detach().to(float64);
}

}  // namespace

GradcheckResult gradcheck(nn::Module& model, const ModelLossFn& loss_fn, const Batch& batch,
                          GradcheckOptions options)
{
    TG_CHECK(loss_fn, "gradcheck: no loss function given");
    Float64StandIns stand_ins(model);
    TG_CHECK(!stand_ins.parameters().empty(), "gradcheck: the model has no parameters");
    Batch batch64{float64_input(batch.x), float64_input(batch.y)};
    if (options.reproduce.empty()) options.reproduce = "tg::gradcheck(model, loss_fn, batch, options)";
    return gradcheck_parameters([&] { return loss_fn(model, batch64); }, stand_ins.parameters(), options);
}

}  // namespace tg
