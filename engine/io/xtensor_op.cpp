#include "engine/io/xtensor_op.hpp"

namespace tg {

tensor_list detail::mark_first_order_only(const char* op, tensor_list grads, const BackwardArgs& a)
{
    tensor_list depends_on{a.grad};
    for (const Tensor& s : a.saved)
        if (s.defined()) depends_on.push_back(s);
    for (Tensor& g : grads) {
        if (!g.defined()) continue;
        g = record(op, std::move(g), depends_on, {}, [op](const BackwardArgs&) -> tensor_list {
            fail(op, ": its backward is written in xtensor (first order only) and cannot be differentiated again; "
                     "for second order, write the backward in tapegrad ops (tg::Op)");
        });
    }
    return grads;
}

}  // namespace tg

std::string tg::detail::one_line(const char* what)
{
    std::string out;
    bool space = false;
    for (const char* c = what; *c; ++c) {
        const bool blank = *c == '\n' || *c == '\r' || *c == '\t' || *c == ' ';
        if (blank) {
            space = !out.empty();
            continue;
        }
        if (space) out += ' ';
        space = false;
        out += *c;
    }
    return out;
}
