#include "engine/kernels/elementwise.hpp"

#include <algorithm>

namespace tg::kernels {

shape_type broadcast_shapes(const shape_type& a, const shape_type& b, const char* op)
{
    if (a == b) return a;
    size_t rank = std::max(a.size(), b.size());
    shape_type out(rank);
    for (size_t i = 0; i < rank; ++i) {
        int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
        int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
        TG_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b,
                 " do not broadcast (axis ", i, ": ", da, " vs ", db, ")");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

void broadcast_strides(const shape_type& shape, const shape_type& out_shape, int64_t* strides)
{
    size_t rank = out_shape.size(), lead = rank - shape.size();
    std::fill(strides, strides + lead, int64_t(0));
    int64_t stride = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        strides[lead + i] = shape[i] == 1 ? 0 : stride;
        stride *= shape[i];
    }
}

std::vector<int64_t> broadcast_strides(const shape_type& shape, const shape_type& out_shape)
{
    std::vector<int64_t> strides(out_shape.size());
    broadcast_strides(shape, out_shape, strides.data());
    return strides;
}

}  // namespace tg::kernels
