// A reference to each file of the library that registers ops (ops/builtin.hpp).
// A new file with TG_REGISTER_OP or TG_REGISTER_SAMPLES defines its anchor and
// is called here; in a static build the ctest "registry: every op is
// registered in a program that calls none" fails for one that is not.
#include "ops/builtin.hpp"

namespace tg {

namespace detail {
// Each is empty, defined at the end of the file it names.
void link_tensor_ops();
void link_autograd_ops();
void link_activation_checkpoint_ops();
void link_conv_ops();
void link_elementwise_ops();
void link_indexing_ops();
void link_layers_ops();
void link_loss_ops();
void link_matmul_ops();
void link_padding_ops();
void link_pool_ops();
void link_reduction_ops();
void link_shape_ops();
void link_softmax_ops();
}  // namespace detail

void link_builtin_ops()
{
    detail::link_tensor_ops();
    detail::link_autograd_ops();
    detail::link_activation_checkpoint_ops();
    detail::link_conv_ops();
    detail::link_elementwise_ops();
    detail::link_indexing_ops();
    detail::link_layers_ops();
    detail::link_loss_ops();
    detail::link_matmul_ops();
    detail::link_padding_ops();
    detail::link_pool_ops();
    detail::link_reduction_ops();
    detail::link_shape_ops();
    detail::link_softmax_ops();
}

}  // namespace tg
