// Every registered op × sample: float64 first and second order and float32
// against float64 (tg::check_sample, the same checks as samples/gradcheck_all).
// A new op is covered here as soon as it registers samples.
#include <doctest/doctest.h>

#include <tapegrad/tapegrad.hpp>

TEST_CASE("registry sweep: every op x sample passes the gradient checker")
{
    int checked = 0;
    for (const tg::OpInfo& op : tg::registered_ops()) {
        CHECK_MESSAGE(!op.samples.empty(), op.name, " registers no samples");
        for (const tg::OpSample& sample : op.samples) {
            ++checked;
            CAPTURE(op.name);
            CAPTURE(sample.label);
            tg::SampleCheck sc;
            try {
                sc = tg::check_sample(op, sample, 0);
            } catch (const std::exception& e) {
                FAIL_CHECK(op.name, " / ", sample.label, ": ", e.what());
                continue;
            }
            CHECK_MESSAGE(sc.passed(), sc.to_string());
            if (sc.first.vacuous) MESSAGE("vacuous (gradients ~0 everywhere): ", op.name, " / ", sample.label);
        }
    }
    // The engine registers its core ops: an empty registry means the library's
    // registrations did not run, not that there is nothing to check.
    CHECK(checked >= 100);
    CHECK(tg::find_op("add") != nullptr);
    CHECK(tg::find_op("matmul") != nullptr);
}
