// Module::state_dict and load_state_dict against PyTorch 1.13: the demo CNN
// of scripts/torch_state_dict.py, its state dicts and logits written by
// tests/fixtures/make_state_dict.py (tests/fixtures/state_dict/), loaded into
// the same CNN built as a tapegrad Sequential under a name map; the round
// trip through .npz; every refusal; batch norm's running statistics step by
// step against PyTorch's, with momentum 0.1 and None.
#include <cmath>
#include <cstring>
#include <map>

#include "tests/helpers.hpp"

namespace nn = tg::nn;
using tg::Tensor;

namespace {

std::string fixture(const std::string& name) { return std::string(TG_FIXTURES_DIR) + "/state_dict/" + name; }

std::map<std::string, Tensor> by_name(const tg::named_tensors& named)
{
    std::map<std::string, Tensor> out;
    for (const auto& [name, t] : named) out[name] = t;
    return out;
}

std::vector<std::string> names_of(const tg::named_tensors& named)
{
    std::vector<std::string> out;
    for (const auto& [name, t] : named) out.push_back(name);
    return out;
}

// PyTorch's DemoCNN as a Sequential: features.0..7 are 0..7, then a Flatten
// (8, which has no tensors) and the classifier (9).
std::shared_ptr<nn::Sequential> tapegrad_cnn(tg::Dtype dtype, uint64_t seed = 5)
{
    tg::Generator gen(seed);
    auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        nn::make<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1}, &gen), nn::make<nn::BatchNorm2d>(8),
        nn::make<nn::ReLU>(), nn::make<nn::MaxPool2d>(2),
        nn::make<nn::Conv2d>(8, 16, 3, nn::Conv2dOptions{.padding = 1, .bias = false}, &gen),
        nn::make<nn::BatchNorm2d>(16, 1e-5, std::nullopt), nn::make<nn::ReLU>(), nn::make<nn::AdaptiveAvgPool2d>(2),
        nn::make<nn::Flatten>(), nn::make<nn::Linear>(16 * 2 * 2, 10, true, &gen)});
    model->to(dtype);
    return model;
}

const nn::NameMap pytorch_names = {
    {"0", "features.0"}, {"1", "features.1"}, {"4", "features.4"}, {"5", "features.5"}, {"9", "classifier"}};

// The same names as a function of the Sequential's.
std::string pytorch_name(const std::string& name)
{
    return name.rfind("9.", 0) == 0 ? "classifier" + name.substr(1) : "features." + name;
}

void check_same_values(const Tensor& got, const Tensor& want, double tol)
{
    REQUIRE(got.shape() == want.shape());
    const Values g = got.to_vector(), w = want.to_vector();
    for (size_t i = 0; i < g.size(); ++i) {
        INFO("element " << i);
        CHECK(std::abs(g[i] - w[i]) <= tol);
    }
}

bool same_bits(const Tensor& a, const Tensor& b)
{
    return a.dtype() == b.dtype() && a.shape() == b.shape() &&
           std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * tg::dtype_size(a.dtype())) == 0;
}

}  // namespace

TEST_CASE("state dict: PyTorch's CNN loaded under a name map gives PyTorch's logits, in eval and in train mode")
{
    for (tg::Dtype dt : {tg::float32, tg::float64}) {
        const std::string dname = tg::dtype_name(dt);
        CAPTURE(dname);
        const double tol = dt == tg::float32 ? 1e-5 : 1e-12;
        const tg::named_tensors pytorch_state = tg::load_npz(fixture("cnn_" + dname + ".npz"));
        auto check = by_name(tg::load_npz(fixture("cnn_" + dname + "_check.npz")));
        auto model = tapegrad_cnn(dt);

        // The same names in the same order as PyTorch's state_dict.
        CHECK(names_of(model->state_dict(pytorch_names)) == names_of(pytorch_state));
        tg::nn::LoadStateDictResult r = model->load_state_dict(pytorch_state, {.name_map = pytorch_names});
        CHECK(r.missing_keys.empty());
        CHECK(r.unexpected_keys.empty());

        model->eval();
        check_same_values((*model)(check["input"]), check["logits_eval"], tol);
        // Training mode: batch statistics, then the running statistics and
        // counts move as PyTorch's did (momentum 0.1 from 3 batches, None from 5).
        model->train();
        check_same_values((*model)(check["input"]), check["logits_train"], tol);
        for (const auto& [name, t] : model->state_dict(pytorch_names)) {
            CAPTURE(name);
            const Tensor& want = check["after_train." + name];
            REQUIRE(want.defined());
            CHECK(t.dtype() == want.dtype());
            check_same_values(t, want, tol);
        }
        CHECK(model->state_dict()[6].first == "1.num_batches_tracked");
        CHECK(model->state_dict()[6].second.item() == 4);
        CHECK(model->state_dict()[12].second.item() == 6);
    }
}

TEST_CASE("state dict: the name map as entries or as a function, and the longest entry wins")
{
    const tg::named_tensors pytorch_state = tg::load_npz(fixture("cnn_float64.npz"));
    auto by_map = tapegrad_cnn(tg::float64), by_function = tapegrad_cnn(tg::float64, 9);
    by_map->load_state_dict(pytorch_state, {.name_map = pytorch_names});
    by_function->load_state_dict(pytorch_state, {.name_map = pytorch_name});
    const tg::named_tensors a = by_map->state_dict(), b = by_function->state_dict();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(same_bits(a[i].second, b[i].second));
    CHECK(names_of(by_function->state_dict(pytorch_name)) == names_of(pytorch_state));

    // A module's entry renames what is under it; a tensor's entry is longer and wins.
    nn::NameMap names = {{"9", "classifier"}, {"9.bias", "head_bias"}, {"1.running_var", "1.var"}};
    CHECK(names("9.weight") == "classifier.weight");
    CHECK(names("9.bias") == "head_bias");
    CHECK(names("1.running_var") == "1.var");
    CHECK(names("1.running_mean") == "1.running_mean");  // no entry: as it is
    CHECK(names("90.weight") == "90.weight");            // "9" is a module, not a string prefix
}

TEST_CASE("state dict: the round trip through save_npz and load_npz into a fresh model gives the same bits")
{
    TempDir dir;
    for (tg::Dtype dt : {tg::float32, tg::float64}) {
        auto trained = tapegrad_cnn(dt);
        trained->load_state_dict(tg::load_npz(fixture(std::string("cnn_") + tg::dtype_name(dt) + ".npz")),
                                 {.name_map = pytorch_names});
        tg::Tensor x = tg::randn({2, 3, 8, 8}, dt);
        (*trained)(x);  // a training step: the running statistics and counts move
        const std::string path = dir.file("model.npz");
        tg::save_npz(path, trained->state_dict());
        auto fresh = tapegrad_cnn(dt, 77);
        fresh->load_state_dict(tg::load_npz(path));
        const tg::named_tensors a = trained->state_dict(), b = fresh->state_dict();
        REQUIRE(names_of(a) == names_of(b));
        for (size_t i = 0; i < a.size(); ++i) {
            CAPTURE(a[i].first);
            CHECK(same_bits(a[i].second, b[i].second));
        }
        trained->eval();
        fresh->eval();
        CHECK(same_bits((*trained)(x), (*fresh)(x)));
    }
}

TEST_CASE("state dict: the tensors are the model's own, detached, in PyTorch's order")
{
    // PyTorch's order: a module's own parameters, its own buffers, then its children's.
    struct Block : nn::Module {
        Tensor scale, steps;
        std::shared_ptr<nn::BatchNorm2d> norm;
        Block()
        {
            norm = register_module("norm", nn::make<nn::BatchNorm2d>(2));
            scale = register_parameter("scale", tg::ones({2}));
            steps = register_buffer("steps", tg::zeros({1}));
        }
        Tensor forward(const Tensor& x) override { return (*norm)(x); }
    };
    Block block;
    CHECK(names_of(block.state_dict()) ==
          std::vector<std::string>{"scale", "steps", "norm.weight", "norm.bias", "norm.running_mean",
                                   "norm.running_var", "norm.num_batches_tracked"});
    tg::named_tensors state = block.state_dict();
    CHECK_FALSE(state[0].second.requires_grad());
    CHECK(block.scale.requires_grad());
    {
        tg::NoGradGuard off;
        state[2].second.fill_(3);  // the same memory, as in PyTorch
    }
    CHECK(block.norm->weight.to_vector() == Values{3, 3});
}

TEST_CASE("state dict: loading converts the dtype, keeps the tensors, and an optimizer built before sees the values")
{
    auto model = tapegrad_cnn(tg::float32);
    const tg::named_tensors before = model->named_parameters();
    tg::optim::SGD sgd(model->named_parameters(), {.lr = 0.5});
    tg::Tensor x = tg::randn({2, 3, 8, 8});
    Tensor stale = tg::sum((*model)(x));  // a tape that saved the parameters before the load

    const tg::named_tensors f64 = tg::load_npz(fixture("cnn_float64.npz"));
    model->load_state_dict(f64, {.name_map = pytorch_name});
    const tg::named_tensors after = model->named_parameters();
    REQUIRE(after.size() == before.size());
    auto given = by_name(f64);
    for (size_t i = 0; i < after.size(); ++i) {
        CAPTURE(after[i].first);
        CHECK(after[i].second.same(before[i].second));  // the same tensor objects
        CHECK(after[i].second.dtype() == tg::float32);   // converted to the model's dtype
        CHECK(after[i].second.is_leaf());                // off the tape
        CHECK(after[i].second.requires_grad());
        CHECK(same_bits(after[i].second, given[pytorch_name(after[i].first)].to(tg::float32)));
    }
    auto& bn = dynamic_cast<nn::BatchNorm2d&>(*model->children()[1].second);
    CHECK(bn.num_batches_tracked.dtype() == tg::int64);
    CHECK(bn.num_batches_tracked.item() == 3);
    CHECK(bn.running_var.dtype() == tg::float32);
    // The tape recorded before the load sees the change and refuses.
    CHECK_THROWS_AS(stale.backward(), tg::Error);

    // The optimizer steps the loaded values: p = loaded - 0.5·grad.
    std::vector<Values> loaded;
    for (const auto& [name, p] : after) loaded.push_back(p.to_vector());
    sgd.zero_grad();
    tg::sum((*model)(x)).backward();
    sgd.step();
    for (size_t i = 0; i < after.size(); ++i) {
        CAPTURE(after[i].first);
        const Values p = after[i].second.to_vector(), g = after[i].second.grad().to_vector();
        for (size_t k = 0; k < p.size(); ++k) CHECK(p[k] == doctest::Approx(loaded[i][k] - 0.5 * g[k]).epsilon(1e-6));
    }
}

TEST_CASE("state dict: every problem in one message, nothing changed, and strict = false returns what did not match")
{
    auto model = tapegrad_cnn(tg::float32);
    const tg::named_tensors original = model->state_dict();
    std::vector<Tensor> copies;
    for (const auto& [name, t] : original) copies.push_back(t.clone());
    auto unchanged = [&] {
        const tg::named_tensors now = model->state_dict();
        for (size_t i = 0; i < now.size(); ++i) CHECK(same_bits(now[i].second, copies[i]));
    };

    tg::named_tensors state = model->state_dict();
    for (auto& [name, t] : state) t = t.clone();
    tg::named_tensors bad;
    for (const auto& [name, t] : state)
        if (name != "0.bias" && name != "5.running_var") bad.emplace_back(name, t);  // two missing
    bad.emplace_back("extra.weight", tg::zeros({2}));                               // two unexpected
    bad.emplace_back("9.scale", tg::zeros({2}));
    for (auto& [name, t] : bad)
        if (name == "4.weight") t = tg::zeros({16, 8, 3, 2});  // mis-shaped
    for (auto& [name, t] : bad)
        if (name == "9.bias") t = tg::zeros({10}, tg::int64);  // a count for a float parameter
    for (auto& [name, t] : bad)
        if (name == "1.num_batches_tracked") t = tg::zeros({});  // a float for the count

    const std::string msg = error_of([&] { model->load_state_dict(bad); });
    CAPTURE(msg);
    CHECK(contains(msg, "load_state_dict (Sequential): 7 problems: "));
    CHECK(contains(msg, "'4.weight' has shape [16, 8, 3, 2] given but [16, 8, 3, 3] in the model"));
    CHECK(contains(msg, "'9.bias' is int64 given but float32 in the model"));
    CHECK(contains(msg, "'1.num_batches_tracked' is float32 given but int64 in the model"));
    CHECK(contains(msg, "missing (the model's, not given): '0.bias', '5.running_var'"));
    CHECK(contains(msg, "unexpected (given, not the model's): 'extra.weight', '9.scale'"));
    unchanged();

    // strict = false: the missing and unexpected are returned, but a shape or a kind of dtype still refuses.
    CHECK(contains(error_of([&] { model->load_state_dict(bad, {.strict = false}); }), "3 problems"));
    unchanged();
    tg::named_tensors partial;
    for (const auto& [name, t] : bad)
        if (name != "4.weight" && name != "9.bias" && name != "1.num_batches_tracked") partial.emplace_back(name, t);
    {
        tg::NoGradGuard off;
        for (auto& [name, t] : partial)
            if (name == "9.weight") t.fill_(0.25);
    }
    tg::nn::LoadStateDictResult r = model->load_state_dict(partial, {.strict = false});
    CHECK(r.missing_keys == std::vector<std::string>{"0.bias", "4.weight", "5.running_var", "9.bias"});
    CHECK(r.unexpected_keys == std::vector<std::string>{"extra.weight", "9.scale"});
    CHECK(dynamic_cast<nn::Linear&>(*model->children()[9].second).weight.to_vector() == Values(640, 0.25));
    // 1.num_batches_tracked was not given: it is set to 0, not reported (below).

    // Missing names are spelled as given, with the model's own name beside them.
    auto fresh = tapegrad_cnn(tg::float32);
    tg::named_tensors renamed = fresh->state_dict(pytorch_names);
    renamed.erase(renamed.begin() + 1);  // features.0.bias
    CHECK(contains(error_of([&] { fresh->load_state_dict(renamed, {.name_map = pytorch_names}); }),
                   "1 problem: missing (the model's, not given): 'features.0.bias' (the model's '0.bias')"));
}

TEST_CASE("state dict: names given twice, undefined tensors and name maps that name nothing are refused")
{
    auto model = tapegrad_cnn(tg::float32);
    tg::named_tensors state = model->state_dict();
    tg::named_tensors twice = state;
    twice.push_back(state[0]);
    CHECK(contains(error_of([&] { model->load_state_dict(twice); }), "'0.weight' is given twice"));
    tg::named_tensors undefined = state;
    undefined[1].second = Tensor();
    CHECK(contains(error_of([&] { model->load_state_dict(undefined); }), "'0.bias' is given an undefined tensor"));

    const std::string nothing = error_of([&] { model->load_state_dict(state, {.name_map = {{"8.weight", "x"}, {"12", "y"}}}); });
    CHECK(contains(nothing, "the name map's entry '8.weight' -> 'x' names no tensor or module of the model"));
    CHECK(contains(nothing, "the name map's entry '12' -> 'y' names no tensor or module of the model"));
    CHECK(contains(error_of([&] { model->state_dict({{"3.weight", "x"}}); }), "names no tensor or module"));
    CHECK(contains(error_of([&] { model->load_state_dict(state, {.name_map = {{"0.weight", "w"}, {"0.bias", "w"}}}); }),
                   "the name map gives '0.weight' and '0.bias' the same name 'w'"));
    CHECK(contains(error_of([&] { model->state_dict([](const std::string&) { return std::string(); }); }),
                   "the name map gives '0.weight' an empty name"));
    CHECK(contains(error_of([] { nn::NameMap({{"", "features"}}); }), "has an empty name"));
    // The flatten (8) is a module: an entry for it is fine, though it renames nothing.
    CHECK_NOTHROW(model->load_state_dict(state, {.name_map = {{"8", "flatten"}}}));
}

TEST_CASE("state dict: non-finite values load as they are, and a missing num_batches_tracked loads as 0")
{
    auto model = tapegrad_cnn(tg::float64);
    auto& bn = dynamic_cast<nn::BatchNorm2d&>(*model->children()[1].second);
    (*model)(tg::randn({2, 3, 8, 8}, tg::float64));
    CHECK(bn.num_batches_tracked.item() == 1);
    // A state dict as PyTorch's before 0.4.1: no num_batches_tracked. PyTorch
    // loads it (an unversioned state dict) with the counts set to 0.
    tg::named_tensors state;
    for (const auto& [name, t] : model->state_dict())
        if (!name.ends_with("num_batches_tracked")) state.emplace_back(name, t.clone());
    const Values odd = {NAN, INFINITY, -INFINITY, -0.0, 1e300, 5e-324, 1, 2};
    for (auto& [name, t] : state)
        if (name == "1.weight") t = tg::from_values(odd, {8}, tg::float64);
    tg::nn::LoadStateDictResult r = model->load_state_dict(state);
    CHECK(r.missing_keys.empty());
    CHECK(bn.num_batches_tracked.item() == 0);
    CHECK(bn.num_batches_tracked.dtype() == tg::int64);
    CHECK(same_bits(bn.weight, tg::from_values(odd, {8}, tg::float64)));
    // Into float32: what a cast gives (1e300 -> inf, 5e-324 -> 0).
    auto f32 = tapegrad_cnn(tg::float32);
    f32->load_state_dict(state);
    const Values w = dynamic_cast<nn::BatchNorm2d&>(*f32->children()[1].second).weight.to_vector();
    CHECK(std::isnan(w[0]));
    CHECK(w[1] == INFINITY);
    CHECK(w[2] == -INFINITY);
    CHECK(std::signbit(w[3]));
    CHECK(w[4] == INFINITY);
    CHECK(w[5] == 0);
}

TEST_CASE("state dict: batch norm's running statistics step by step as PyTorch's, momentum 0.1 and None")
{
    const auto steps = by_name(tg::load_npz(fixture("batch_norm_steps.npz")));
    for (tg::Dtype dt : {tg::float32, tg::float64}) {
        for (std::optional<double> momentum : {std::optional<double>(0.1), std::optional<double>()}) {
            const std::string p = std::string(tg::dtype_name(dt)) + (momentum ? ".0.1." : ".None.");
            CAPTURE(p);
            const double tol = dt == tg::float32 ? 1e-5 : 1e-12;
            nn::BatchNorm2d bn(3, 1e-5, momentum);
            bn.to(dt);
            {
                tg::NoGradGuard off;
                bn.weight.copy_(tg::from_values({1.5, -0.5, 1.0}));
                bn.bias.copy_(tg::from_values({0.25, 0.0, -1.0}));
            }
            for (int k = 0; k < 4; ++k) {  // step 2 is an empty batch: counted, the statistics untouched
                CAPTURE(k);
                const std::string s = std::to_string(k);
                Tensor y = bn(steps.at(p + "x" + s));
                check_same_values(y, steps.at(p + "y" + s), tol * 10);
                check_same_values(bn.running_mean, steps.at(p + "running_mean" + s), tol);
                check_same_values(bn.running_var, steps.at(p + "running_var" + s), tol);
                CHECK(bn.num_batches_tracked.item() == steps.at(p + "num_batches_tracked" + s).item());
            }
        }
    }
}

TEST_CASE("state dict: checkpoints keep num_batches_tracked, and an old checkpoint without it loads through load_state_dict")
{
    TempDir dir;
    auto model = tapegrad_cnn(tg::float32);
    (*model)(tg::randn({2, 3, 8, 8}));
    (*model)(tg::randn({2, 3, 8, 8}));
    tg::Checkpoint ck;
    ck.set_tensors("model.", model->named_parameters());
    ck.set_tensors("buffers.", model->named_buffers());
    tg::save_checkpoint(dir.file("new.tgckpt"), ck);
    auto resumed = tapegrad_cnn(tg::float32, 8);
    tg::Checkpoint back = tg::load_checkpoint(dir.file("new.tgckpt"));
    back.load_into(resumed->named_parameters(), "model.");
    back.load_into(resumed->named_buffers(), "buffers.", "buffer");
    const tg::named_tensors a = model->state_dict(), b = resumed->state_dict();
    for (size_t i = 0; i < a.size(); ++i) CHECK(same_bits(a[i].second, b[i].second));
    CHECK(b[6].second.item() == 2);

    // A checkpoint from before the count: load_into wants every buffer ...
    tg::Checkpoint old;
    old.set_tensors("model.", model->named_parameters());
    for (const auto& [name, t] : model->named_buffers())
        if (!name.ends_with("num_batches_tracked")) old.set_tensor("buffers." + name, t);
    CHECK(contains(error_of([&] { old.load_into(resumed->named_buffers(), "buffers.", "buffer"); }),
                   "buffer '1.num_batches_tracked' is missing from the file"));
    // ... load_state_dict of its parameters and buffers takes it, the counts at 0.
    tg::named_tensors state = old.tensors("model.");
    for (auto& entry : old.tensors("buffers.")) state.push_back(entry);
    resumed->load_state_dict(state);
    const tg::named_tensors c = resumed->state_dict();
    for (size_t i = 0; i < a.size(); ++i)
        if (!a[i].first.ends_with("num_batches_tracked")) CHECK(same_bits(a[i].second, c[i].second));
    CHECK(c[6].second.item() == 0);
}
