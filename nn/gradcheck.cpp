#include "nn/gradcheck.hpp"

#include "engine/autograd.hpp"

namespace tg {

namespace {

// Puts float64 stand-ins into a module's slots and the originals back when it goes.
class Float64StandIns {
public:
    explicit Float64StandIns(nn::Module& model)
    {
        NoGradGuard off;
        for (auto& [name, slot] : model.parameter_slots()) {
            saved_.emplace_back(slot, *slot);
            *slot = slot->detach().to(float64).requires_grad_(true);
            parameters_.emplace_back(name, *slot);
        }
        for (auto& [name, slot] : model.buffer_slots()) {
            saved_.emplace_back(slot, *slot);
            if (is_floating(slot->dtype())) *slot = slot->to(float64);
            else *slot = slot->clone();
        }
    }
    ~Float64StandIns()
    {
        for (auto& [slot, original] : saved_) *slot = original;
    }
    Float64StandIns(const Float64StandIns&) = delete;
    Float64StandIns& operator=(const Float64StandIns&) = delete;
    const named_tensors& parameters() const { return parameters_; }

private:
    std::vector<std::pair<Tensor*, Tensor>> saved_;
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
