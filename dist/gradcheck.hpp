// The gradient checker split over the ranks: tg::gradcheck with every rank
// perturbing its share of the elements (each replaying the tape on its own
// threads, as one process does), the per-element results merged, and every
// rank holding the whole report: the verdicts, numbers and elements one
// process gives, in a fraction of the time.
//
//   // mpirun -np 4 ./check_my_model
//   tg::GradcheckResult r = tg::dist::gradcheck(model, loss_fn, batch);
//   if (tg::dist::is_main()) std::puts(r.to_string().c_str());
//
// Every rank must call it with the same model (parameters equal to the bit)
// and the same batch; a difference is an error on every rank naming the
// first tensor that differs and the ranks, checked before anything else runs.
// In a world of one it is tg::gradcheck.
#pragma once

#include "../engine/check/gradcheck.hpp"
#include "../nn/gradcheck.hpp"

namespace tg::dist {

// This rank's part of a check, its merge an allreduce over the ranks.
GradcheckOptions::Partition gradcheck_partition();
// True while tg::dist::gradcheck runs in this process: a function that
// communicates (all_reduce_sum) cannot be split, and says so.
bool in_split_gradcheck();

GradcheckResult gradcheck(nn::Module& model, const ModelLossFn& loss_fn, const Batch& batch,
                          GradcheckOptions options = model_gradcheck_options());
GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

// The check of a function that itself communicates (sync_batch_norm, a
// custom op built on all_reduce_sum): every rank makes every evaluation, in
// the same order, on one thread, in lockstep. `fn` is this rank's part of a
// global function: its output summed over the ranks (all_reduce_sum) is the
// function checked, of inputs that are the same on every rank (checked, as
// gradcheck's); each floating input enters every rank's part, so its
// gradient is the sum of what every rank's part gives it. First order only.
// In a world of one, tg::gradcheck(fn, inputs) on one thread.
GradcheckResult gradcheck_in_lockstep(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

}  // namespace tg::dist
