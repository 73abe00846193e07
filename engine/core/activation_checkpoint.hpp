// Activation checkpointing, as torch.utils.checkpoint: a function whose
// intermediates are not kept for the backward, but computed again in it.
//
//     tg::Tensor y = tg::checkpoint([&](const tg::tensor_list& x) { return block(x[0]); }, {h});
//
// The forward runs fn once, records what its graph reaches (the inputs, and
// the leaves it uses: a module's parameters) and drops that graph. One tape
// entry stands for it; its backward runs fn again on the saved inputs and
// sweeps the recomputed graph, so memory holds one block's intermediates at a
// time instead of every block's. Gradients (first and second order, through
// backward or tg::grad) are those of fn itself, bit for bit: the parameters
// get theirs through the tape, and the recomputation draws the same random
// numbers (each generator fn drew from is put back to its state before the
// forward, and afterwards where it was).
//
// fn must compute the same thing when run again: it may read tensors from
// outside, but one computed on the tape (not a leaf) that requires grad must
// be given in `inputs`; batch norm leaves its running statistics alone in the
// recomputation (checkpoint_recomputing), so they move once per step.
#pragma once

#include <concepts>
#include <functional>
#include <type_traits>

#include "autograd.hpp"

namespace tg {

using checkpoint_function = std::function<tensor_list(const tensor_list&)>;

// fn(inputs), without keeping fn's intermediates for the backward. Outputs
// that do not require grad are returned as fn returned them; those that do
// must share one floating dtype. Without grad mode it only runs fn.
tensor_list checkpoint(const checkpoint_function& fn, const tensor_list& inputs);

// The same for a function returning one Tensor.
template <class Fn>
    requires std::invocable<Fn&, const tensor_list&> &&
             std::convertible_to<std::invoke_result_t<Fn&, const tensor_list&>, Tensor>
Tensor checkpoint(Fn fn, const tensor_list& inputs)
{
    checkpoint_function listed = [f = std::move(fn)](const tensor_list& x) mutable { return tensor_list{f(x)}; };
    return checkpoint(listed, inputs)[0];
}

// True while a checkpoint's backward recomputes its function on this thread:
// an op with a side effect (batch norm's running statistics) skips it then.
bool checkpoint_recomputing();

}  // namespace tg
