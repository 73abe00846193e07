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

GradcheckResult gradcheck(nn::Module& model, const ModelLossFn& loss_fn, const Batch& batch,
                          GradcheckOptions options = model_gradcheck_options());
GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

}  // namespace tg::dist
