// Optimizers, learning-rate schedules and gradient clipping: closed forms
// worked out by hand, and reference runs of torch.optim.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <tapegrad/tapegrad.hpp>

#include "tests/helpers.hpp"

using tg::optim::Adam;
using tg::optim::AdamW;
using tg::optim::SGD;

namespace {


// One scalar float64 parameter named "p".
tg::named_tensors scalar_param(double value)
{
    return {{"p", tg::from_values({value}, {1}, tg::float64).requires_grad_()}};
}
void set_grad(const tg::named_tensors& params, double g)
{
    tg::Tensor p = params[0].second;
    p.set_grad(tg::from_values({g}, {1}, tg::float64));
}
double value(const tg::named_tensors& params) { return params[0].second.at({0}); }

}  // namespace

// --- SGD by hand ------------------------------------------------------------------------

TEST_CASE("SGD: plain, momentum, dampening, Nesterov and weight decay by hand")
{
    // A constant gradient g = 0.5 from p0 = 1, lr 0.1, three steps.
    auto run = [](tg::optim::SgdOptions o, double g = 0.5) {
        auto params = scalar_param(1.0);
        SGD opt(params, o);
        std::vector<double> out;
        for (int i = 0; i < 3; ++i) {
            set_grad(params, g);
            opt.step();
            out.push_back(value(params));
        }
        return out;
    };
    // Plain: 1 - 0.05 per step.
    auto plain = run({.lr = 0.1});
    CHECK(plain[2] == doctest::Approx(0.85).epsilon(1e-15));
    // Momentum 0.9: buffers g, 1.9 g, 2.71 g; p3 = 1 - 0.1 * 0.5 * (1 + 1.9 + 2.71) = 0.7195.
    auto mom = run({.lr = 0.1, .momentum = 0.9});
    CHECK(mom[0] == doctest::Approx(0.95).epsilon(1e-15));
    CHECK(mom[1] == doctest::Approx(0.855).epsilon(1e-15));
    CHECK(mom[2] == doctest::Approx(0.7195).epsilon(1e-15));
    // Dampening 0.1 (not applied on the first step): buffers g, 1.8 g, 2.52 g.
    auto damp = run({.lr = 0.1, .momentum = 0.9, .dampening = 0.1});
    CHECK(damp[2] == doctest::Approx(1 - 0.05 * (1 + 1.8 + 2.52)).epsilon(1e-15));
    // Nesterov: steps g + 0.9 b = 1.9 g, 2.71 g, 3.439 g.
    auto nes = run({.lr = 0.1, .momentum = 0.9, .nesterov = true});
    CHECK(nes[2] == doctest::Approx(1 - 0.05 * (1.9 + 2.71 + 3.439)).epsilon(1e-15));
    // Weight decay 0.5 with a zero loss gradient: p <- p (1 - 0.1 * 0.5) each step.
    auto wd = run({.lr = 0.1, .weight_decay = 0.5}, 0.0);
    CHECK(wd[2] == doctest::Approx(0.95 * 0.95 * 0.95).epsilon(1e-15));

    CHECK(contains(error_of([] { SGD(scalar_param(1), {.momentum = 0, .nesterov = true}); }), "Nesterov"));
}

TEST_CASE("Adam and AdamW by hand")
{
    // A constant gradient: m_hat = g and v_hat = g^2, so every step moves by lr * g / (|g| + eps).
    {
        auto params = scalar_param(1.0);
        Adam opt(params, {.lr = 0.1, .eps = 1e-8});
        for (int i = 0; i < 3; ++i) {
            set_grad(params, 0.5);
            opt.step();
        }
        CHECK(value(params) == doctest::Approx(1 - 3 * 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
    }
    // Gradients 1 then -2, defaults betas (0.9, 0.999), eps 1e-8, lr 0.1:
    //   step 1: moves by 0.1 * 1 / (1 + 1e-8);
    //   step 2: m = 0.09 - 0.2 = -0.11, m_hat = -0.11 / 0.19;
    //           v = 0.000999 + 0.004 = 0.004999, v_hat = 0.004999 / 0.001999.
    {
        auto params = scalar_param(1.0);
        Adam opt(params, {.lr = 0.1});
        set_grad(params, 1.0);
        opt.step();
        double p1 = 1 - 0.1 / (1 + 1e-8);
        CHECK(value(params) == doctest::Approx(p1).epsilon(1e-14));
        set_grad(params, -2.0);
        opt.step();
        double p2 = p1 - 0.1 * (-0.11 / 0.19) / (std::sqrt(0.004999 / 0.001999) + 1e-8);
        CHECK(value(params) == doctest::Approx(p2).epsilon(1e-12));
        // The state is exposed by name.
        auto st = opt.state();
        REQUIRE(st.size() == 3);
        CHECK(st[0].first == "p.exp_avg");
        CHECK(st[0].second.at({0}) == doctest::Approx(-0.11).epsilon(1e-14));
        CHECK(st[1].first == "p.exp_avg_sq");
        CHECK(st[1].second.at({0}) == doctest::Approx(0.004999).epsilon(1e-14));
        CHECK(st[2].first == "p.step");
        CHECK(st[2].second.dtype() == tg::int64);
        CHECK(st[2].second.item() == 2);
    }
    // AdamW with a zero gradient only decays: p <- p (1 - lr * wd); Adam's L2
    // decay would instead take a full normalised step of size lr.
    {
        auto params = scalar_param(2.0);
        AdamW opt(params, {.lr = 0.1, .weight_decay = 0.5});
        set_grad(params, 0.0);
        opt.step();
        CHECK(value(params) == doctest::Approx(2.0 * 0.95).epsilon(1e-15));
        auto l2 = scalar_param(2.0);
        Adam adam(l2, {.lr = 0.1, .weight_decay = 0.5});
        set_grad(l2, 0.0);
        adam.step();
        CHECK(value(l2) == doctest::Approx(2.0 - 0.1 * 1.0 / (1.0 + 1e-8)).epsilon(1e-14));
    }
    // AMSGrad keeps the largest v: after a large gradient, a small one moves less than plain Adam would.
    {
        auto a = scalar_param(0.0), b = scalar_param(0.0);
        Adam ams(a, {.lr = 0.1, .amsgrad = true}), plain(b, {.lr = 0.1});
        for (double g : {10.0, 0.1, 0.1}) {
            set_grad(a, g);
            set_grad(b, g);
            ams.step();
            plain.step();
        }
        CHECK(std::abs(value(a)) < std::abs(value(b)));
        CHECK(ams.state().size() == 4);
    }
}

// --- against torch.optim ------------------------------------------------------------------

namespace {
// The problem of the reference runs: loss = sum(0.5 * c * p^2 + d * p) over
// w [2, 3] and b [3], float64, five steps, gradients from tapegrad's backward.
const std::vector<double> w0 = {0.5, -1.0, 2.0, 1.5, 0.25, -0.75}, b0 = {0.1, -0.3, 0.8};
const std::vector<double> cw = {1.0, 2.0, 0.5, 3.0, 1.5, 0.8}, cb = {2.0, 0.7, 1.2};
const std::vector<double> dw = {0.3, -0.2, 0.1, -0.4, 0.6, 0.05}, db = {-0.5, 0.25, 0.15};

tg::named_tensors reference_params()
{
    return {{"w", tg::from_values(w0, {2, 3}, tg::float64).requires_grad_()},
            {"b", tg::from_values(b0, {3}, tg::float64).requires_grad_()}};
}

void run_reference(tg::optim::Optimizer& opt, const tg::named_tensors& params, int steps = 5)
{
    tg::Tensor c[2] = {tg::from_values(cw, {2, 3}, tg::float64), tg::from_values(cb, {3}, tg::float64)};
    tg::Tensor d[2] = {tg::from_values(dw, {2, 3}, tg::float64), tg::from_values(db, {3}, tg::float64)};
    for (int s = 0; s < steps; ++s) {
        opt.zero_grad();
        tg::Tensor loss = tg::scalar(0.0, tg::float64);
        for (int i = 0; i < 2; ++i) {
            const tg::Tensor& p = params[size_t(i)].second;
            loss = loss + tg::sum(c[i] * p * p * 0.5 + d[i] * p);
        }
        loss.backward();
        opt.step();
    }
}

void check_close(const tg::Tensor& t, const std::vector<double>& expected)
{
    std::vector<double> got = t.to_vector();
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));
    }
}
}  // namespace

// Expected values printed by torch 1.13 (float64) running the same problem:
// torch.optim.<Optimizer>([w, b], <same options>), five steps of
// zero_grad(); loss.backward(); step().
TEST_CASE("optimizers match torch.optim on a reference problem")
{
    SUBCASE("SGD momentum 0.9, dampening 0.1, weight_decay 0.01, lr 0.1")
    {
        auto params = reference_params();
        SGD opt(params, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
        run_reference(opt, params);
        check_close(params[0].second, {-0.284604595330499, 0.690416604329461, 0.7756903737537896,
                                       -0.9215405395231485, -0.5959262236929461, -0.18083567421063387});
        check_close(params[1].second, {0.3287034229386918, -0.33865067580147185, -0.2396036175306313});
    }
    SUBCASE("SGD Nesterov momentum 0.8, weight_decay 0.1, lr 0.05")
    {
        auto params = reference_params();
        SGD opt(params, {.lr = 0.05, .momentum = 0.8, .nesterov = true, .weight_decay = 0.1});
        run_reference(opt, params);
        check_close(params[0].second, {0.012351026979223408, 0.07834428016848716, 1.1765112343120478,
                                       -0.12179600573648262, -0.26893285720064003, -0.3768811631831937});
        check_close(params[1].second, {0.23596514836907012, -0.3060893737570304, 0.14405375126564093});
    }
    SUBCASE("Adam betas (0.8, 0.99), eps 1e-6, weight_decay 0.05, lr 0.1")
    {
        auto params = reference_params();
        Adam opt(params, {.lr = 0.1, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05});
        run_reference(opt, params);
        check_close(params[0].second, {0.018594360099292412, -0.5114726780635545, 1.5048017104284614,
                                       1.0085446149883386, -0.22409694634385505, -0.27270560283200856});
        check_close(params[1].second, {0.2906659977211255, -0.31080564517829773, 0.31471168624242907});
    }
    SUBCASE("Adam amsgrad, lr 0.1")
    {
        auto params = reference_params();
        Adam opt(params, {.lr = 0.1, .amsgrad = true});
        run_reference(opt, params);
        check_close(params[0].second, {0.011504288046135097, -0.5068637065523027, 1.5026137366863832,
                                       1.004973130758085, -0.23333392136939174, -0.2650343360885719});
        check_close(params[1].second, {0.32829645494702414, -0.3179115840702959, 0.30902589770412664});
    }
    SUBCASE("AdamW betas (0.85, 0.995), weight_decay 0.1, lr 0.1")
    {
        auto params = reference_params();
        AdamW opt(params, {.lr = 0.1, .beta1 = 0.85, .beta2 = 0.995, .weight_decay = 0.1});
        run_reference(opt, params);
        check_close(params[0].second, {0.0009826651042789264, -0.4711390859765007, 1.4163861850188684,
                                       0.9443860969396105, -0.23116556149533182, -0.2440490904368971});
        check_close(params[1].second, {0.3104162049165515, -0.3207988409880244, 0.28364623791261395});
    }
}

TEST_CASE("optimizers: float32 parameters follow the float64 run closely")
{
    auto p64 = reference_params();
    tg::named_tensors p32 = {{"w", p64[0].second.to(tg::float32).detach().requires_grad_()},
                             {"b", p64[1].second.to(tg::float32).detach().requires_grad_()}};
    Adam a64(p64, {.lr = 0.05}), a32(p32, {.lr = 0.05});
    for (int s = 0; s < 5; ++s) {
        for (size_t i = 0; i < 2; ++i) {
            tg::Tensor g = tg::full_like(p64[i].second, 0.3 * double(s + 1) - 0.5);
            p64[i].second.set_grad(g);
            p32[i].second.set_grad(g.to(tg::float32));
        }
        a64.step();
        a32.step();
    }
    CHECK(p32[0].second.dtype() == tg::float32);
    for (size_t i = 0; i < 2; ++i) {
        auto x = p64[i].second.to_vector(), y = p32[i].second.to_vector();
        for (size_t k = 0; k < x.size(); ++k) CHECK(y[k] == doctest::Approx(x[k]).epsilon(1e-5));
    }
}

TEST_CASE("optimizers: parameters without a gradient are skipped, zero_grad drops gradients")
{
    auto params = reference_params();
    SGD opt(params, {.lr = 0.1, .momentum = 0.9});
    params[0].second.set_grad(tg::ones({2, 3}, tg::float64));
    opt.step();
    CHECK(params[0].second.at({0, 0}) == doctest::Approx(0.4));
    CHECK(params[1].second.to_vector() == b0);  // no gradient: untouched, and no state
    CHECK(opt.state().size() == 2);             // w.momentum_buffer, w.step
    opt.zero_grad();
    CHECK(!params[0].second.grad().defined());

    CHECK(contains(error_of([] {
                       tg::Tensor t = tg::zeros({2});
                       SGD(tg::named_tensors{{"a", t}, {"a", tg::zeros({2})}}, {});
                   }),
                   "two parameters are named 'a'"));
    CHECK(contains(error_of([] { SGD(tg::named_tensors{{"i", tg::zeros({2}, tg::int64)}}, {}); }), "int64"));
    CHECK_THROWS_AS(Adam(reference_params(), {.beta1 = 1.0}), tg::Error);
}

TEST_CASE("optimizers: state round trip and load_state errors")
{
    auto params = reference_params();
    Adam opt(params, {.lr = 0.1});
    run_reference(opt, params, 2);
    tg::named_tensors st = opt.state();
    CHECK(st.size() == 6);

    // A second optimizer loaded with the state continues exactly like the first.
    auto params2 = reference_params();
    for (size_t i = 0; i < 2; ++i) {
        tg::NoGradGuard ng;
        params2[i].second.copy_(params[i].second);
    }
    Adam opt2(params2, {.lr = 0.1});
    opt2.load_state(st);
    run_reference(opt, params, 3);
    run_reference(opt2, params2, 3);
    for (size_t i = 0; i < 2; ++i) CHECK(params[i].second.to_vector() == params2[i].second.to_vector());

    // Errors name the entry and what is wrong; nothing changes on failure.
    Adam fresh(reference_params(), {});
    auto bad = st;
    for (auto& [name, t] : bad)
        if (name == "w.exp_avg") t = tg::zeros({3, 2}, tg::float64);
    std::string msg = error_of([&] { fresh.load_state(bad); });
    CHECK(contains(msg, "'w.exp_avg' is float64 [3, 2] but should be float64 [2, 3] like parameter 'w'"));
    CHECK(fresh.state().empty());

    auto missing = st;
    missing.erase(std::remove_if(missing.begin(), missing.end(), [](auto& e) { return e.first == "b.exp_avg_sq"; }),
                  missing.end());
    CHECK(contains(error_of([&] { fresh.load_state(missing); }), "parameter 'b' has state but no 'b.exp_avg_sq'"));

    auto unknown = st;
    unknown.emplace_back("conv.weight.exp_avg", tg::zeros({1}, tg::float64));
    unknown.emplace_back("w.velocity", tg::zeros({2, 3}, tg::float64));
    msg = error_of([&] { fresh.load_state(unknown); });
    CHECK(contains(msg, "'conv.weight.exp_avg' is not <parameter>.<buffer>"));
    CHECK(contains(msg, "'w.velocity'"));

    auto step_dtype = st;
    for (auto& [name, t] : step_dtype)
        if (name == "w.step") t = tg::scalar(2.0, tg::float32);
    CHECK(contains(error_of([&] { fresh.load_state(step_dtype); }), "'w.step' is float32 [] but should be int64 []"));
}

TEST_CASE("optimizers: a state no run can produce is refused on load, through a checkpoint with a valid checksum")
{
    // Step -1 or a negative second moment once resumed without error and made
    // every parameter non-finite one step later.
    auto params = reference_params();
    Adam opt(params, {.lr = 0.1, .amsgrad = true});
    run_reference(opt, params, 2);
    TempDir dir;
    auto saved_with = [&](const std::string& entry, auto change) {
        tg::Checkpoint c;
        opt.save_to(c, "opt.");
        tg::Tensor t = c.tensor("opt.state." + entry).clone();
        change(t);
        c.set_tensor("opt.state." + entry, t);
        tg::save_checkpoint(dir.file("bad.ckpt"), c);
        return tg::load_checkpoint(dir.file("bad.ckpt"));
    };
    auto with = [&](const std::string& entry, auto change) {
        tg::Checkpoint loaded = saved_with(entry, change);
        Adam fresh(reference_params(), {.amsgrad = true});
        std::string msg = error_of([&] { fresh.load_from(loaded, "opt."); });
        CHECK(fresh.state().empty());
        return msg;
    };
    CHECK(contains(with("w.step", [](tg::Tensor& t) { t.data<int64_t>()[0] = -1; }),
                   "'w.step' is -1, but a stored step count is at least 1"));
    CHECK(contains(with("b.step", [](tg::Tensor& t) { t.data<int64_t>()[0] = 0; }), "'b.step' is 0"));
    std::string msg = with("w.exp_avg_sq", [](tg::Tensor& t) { t.data<double>()[4] = -1e-3; });
    CHECK(contains(msg, "'w.exp_avg_sq' holds -0.001 at element 4, but a second moment is a finite number >= 0"));
    CHECK(contains(with("w.max_exp_avg_sq", [](tg::Tensor& t) { t.data<double>()[0] = NAN; }),
                   "'w.max_exp_avg_sq' holds nan at element 0"));
    CHECK(contains(with("b.exp_avg_sq", [](tg::Tensor& t) { t.data<double>()[1] = INFINITY; }), "holds inf at element 1"));
    CHECK(contains(with("w.exp_avg", [](tg::Tensor& t) { t.data<double>()[2] = -INFINITY; }),
                   "'w.exp_avg' holds -inf at element 2, and resuming would make the parameter non-finite"));
    // A negative first moment is an ordinary value.
    Adam fine(reference_params(), {.amsgrad = true});
    fine.load_from(saved_with("w.exp_avg", [](tg::Tensor& t) { t.data<double>()[2] = -5; }), "opt.");
    CHECK(fine.state().size() == opt.state().size());

    SGD sgd(params, {.lr = 0.1, .momentum = 0.9});
    run_reference(sgd, params, 1);
    tg::named_tensors st = sgd.state();
    for (auto& [name, t] : st)
        if (name == "w.momentum_buffer") t.data<double>()[0] = NAN;
    SGD fresh(reference_params(), {.lr = 0.1, .momentum = 0.9});
    CHECK(contains(error_of([&] { fresh.load_state(st); }), "'w.momentum_buffer' holds nan at element 0"));
}

// --- clipping ---------------------------------------------------------------------------------

TEST_CASE("clip_grad_norm_ matches torch.nn.utils.clip_grad_norm_")
{
    // By hand: gradients (3, 4) have norm 5; max_norm 1 scales them by 1 / (5 + 1e-6).
    {
        tg::Tensor p = tg::zeros({2}, tg::float64).requires_grad_();
        p.set_grad(tg::from_values({3.0, 4.0}, {2}, tg::float64));
        double n = tg::optim::clip_grad_norm_(tg::tensor_list{p}, 1.0);
        CHECK(n == doctest::Approx(5.0).epsilon(1e-15));
        CHECK(p.grad().at({1}) == doctest::Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-15));
        // Below the limit nothing changes.
        tg::Tensor g0 = p.grad().clone();
        tg::optim::clip_grad_norm_(tg::tensor_list{p}, 10.0);
        CHECK(p.grad().to_vector() == g0.to_vector());
    }
    // Reference values from torch 1.13, clip_grad_norm_([w, b], 1.0, norm_type) with these gradients.
    struct Ref {
        double norm_type, norm;
        std::vector<double> clipped;
    };
    const double inf = INFINITY;
    for (const Ref& r : {Ref{2.0, 2.908607914449797, {0.10314208916489863, -0.4125683566595945, 0.1719034819414977,
                                                      0.6876139277659908, 0.03438069638829954, -0.24066487471809678,
                                                      0.3094262674946959, -0.13752278555319816, 0.37818766027129497}},
                         Ref{1.0, 7.2, {0.04166666087963043, -0.16666664351852173, 0.06944443479938406,
                                        0.27777773919753623, 0.013888886959876813, -0.09722220871913767,
                                        0.12499998263889131, -0.05555554783950725, 0.15277775655864495}},
                         Ref{inf, 2.0, {0.14999992500003748, -0.5999997000001499, 0.2499998750000625,
                                        0.99999950000025, 0.0499999750000125, -0.34999982500008747,
                                        0.4499997750001125, -0.19999990000005, 0.5499997250001375}},
                         Ref{3.0, 2.3113490742262384, {0.12979427190423753, -0.5191770876169501, 0.21632378650706255,
                                                       0.8652951460282502, 0.043264757301412514, -0.30285330110988756,
                                                       0.3893828157127126, -0.17305902920565006,
                                                       0.47591233031553765}}}) {
        CAPTURE(r.norm_type);
        auto params = reference_params();
        params[0].second.set_grad(tg::from_values({0.3, -1.2, 0.5, 2.0, 0.1, -0.7}, {2, 3}, tg::float64));
        params[1].second.set_grad(tg::from_values({0.9, -0.4, 1.1}, {3}, tg::float64));
        double n = tg::optim::clip_grad_norm_(params, 1.0, r.norm_type);
        CHECK(n == doctest::Approx(r.norm).epsilon(1e-14));
        std::vector<double> got = params[0].second.grad().to_vector(), gb = params[1].second.grad().to_vector();
        got.insert(got.end(), gb.begin(), gb.end());
        for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(r.clipped[i]).epsilon(1e-13));
    }
    CHECK_THROWS_AS(tg::optim::clip_grad_norm_(reference_params(), 1.0, 0.5), tg::Error);
    CHECK(tg::optim::clip_grad_norm_(reference_params(), 1.0) == 0.0);  // no gradients
}

// --- schedules ----------------------------------------------------------------------------------

namespace {
// The rates of 12 steps, read before each scheduler step, starting from lr 0.4.
std::vector<double> rates(tg::optim::Schedule schedule)
{
    SGD opt(scalar_param(0.0), {.lr = 0.4});
    tg::optim::LrScheduler sched(opt, std::move(schedule));
    std::vector<double> out;
    for (int i = 0; i < 12; ++i) {
        out.push_back(opt.lr());
        sched.step();
    }
    return out;
}
void check_rates(const std::vector<double>& got, const std::vector<double>& expected)
{
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));
    }
}
}  // namespace

// Expected rates printed by torch 1.13: an SGD with lr 0.4 and the named scheduler,
// param_groups[0]["lr"] read before each of 12 scheduler.step() calls.
TEST_CASE("learning-rate schedules match torch.optim.lr_scheduler")
{
    using namespace tg::optim;
    // StepLR(step_size=3, gamma=0.5)
    check_rates(rates(step_lr(3, 0.5)), {0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05});
    // CosineAnnealingLR(T_max=10, eta_min=0.01)
    check_rates(rates(cosine_annealing_lr(10, 0.01)),
                {0.4, 0.39045602067755497, 0.36275831390311475, 0.3196181241970323, 0.2652583139031148,
                 0.20500000000000002, 0.14474168609688529, 0.09038187580296776, 0.047241686096885276,
                 0.019543979322445063, 0.01, 0.01954397932244506});
    // LinearLR(start_factor=0.25, end_factor=1.0, total_iters=4)
    check_rates(rates(linear_lr(0.25, 1.0, 4)), {0.1, 0.175, 0.25, 0.325, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4});
    // SequentialLR([LinearLR(0.1, 1.0, total_iters=3), CosineAnnealingLR(T_max=7)], milestones=[3])
    std::vector<double> warm = {0.04, 0.16, 0.28, 0.4, 0.38019377358048384, 0.32469796037174675, 0.2445041867912629,
                                0.15549581320873715, 0.07530203962825331, 0.019806226419516192, 0.0,
                                0.01980622641951617};
    check_rates(rates(sequential_lr({linear_lr(0.1, 1.0, 3), cosine_annealing_lr(7)}, {3})), warm);
    check_rates(rates(warmup_cosine_lr(3, 10, 0.0, 0.1)), warm);

    CHECK_THROWS_AS(step_lr(0), tg::Error);
    CHECK_THROWS_AS(sequential_lr({step_lr(2), step_lr(3)}, {}), tg::Error);
    CHECK_THROWS_AS(warmup_cosine_lr(10, 10), tg::Error);
}

TEST_CASE("LrScheduler resumes from a checkpoint")
{
    using namespace tg::optim;
    SGD a(scalar_param(0.0), {.lr = 0.4});
    LrScheduler sa(a, warmup_cosine_lr(3, 10, 0.0, 0.1));
    for (int i = 0; i < 5; ++i) sa.step();
    tg::Checkpoint ckpt;
    a.save_to(ckpt, "opt.");
    sa.save_to(ckpt, "sched.");

    // The optimizer's rate is restored before the scheduler is built: the
    // scheduler still takes its base rate from the checkpoint.
    SGD b(scalar_param(0.0), {.lr = 0.4});
    b.load_from(ckpt, "opt.");
    LrScheduler sb(b, warmup_cosine_lr(3, 10, 0.0, 0.1));
    sb.load_from(ckpt, "sched.");
    CHECK(sb.last_step() == 5);
    for (int i = 0; i < 4; ++i) {
        CHECK(b.lr() == a.lr());
        sa.step();
        sb.step();
    }
}
