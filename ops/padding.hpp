// Padding as torch.nn.functional.pad, and its adjoint.
#pragma once

#include "../engine/core/tensor.hpp"
#include "options.hpp"

namespace tg {

// x padded on its last axes: `pads` holds a (before, after) pair per axis,
// the last axis first, as in PyTorch: {left, right}, {left, right, top,
// bottom}, {left, right, top, bottom, front, back}. A negative pad crops.
//   constant   `value` outside the input; any number of axes of any input.
//   reflect    the input mirrored about its edge, the edge not repeated: each
//              pad less than the axis. replicate: the edge element repeated.
//              Both pad 1 axis of a 2-d or 3-d input, 2 axes of a 3-d or 4-d
//              input, or 3 axes of a 4-d or 5-d input.
//   circular   the input repeated (after the crops): each pad at most the
//              axis; 1 to 3 axes of a batched input [N, C, ...] only. A pad
//              longer than what the crops leave is refused (PyTorch raises,
//              or returns uninitialised memory).
// PyTorch 1.13's other refusals too: reflect and replicate leave no padded
// axis empty and take no empty axis but the batch; a constant pad that also
// pads (a pad > 0) leaves no padded axis empty. The gradient of a crop is
// zero padding; reflect, replicate and circular add the gradient of each copy
// to the element it copies (pad_fold).
Tensor pad(const Tensor& x, const axes_type& pads, PaddingMode mode = PaddingMode::constant, double value = 0);

// The adjoint of pad (its gradient): g, shaped like pad's output, folded back
// onto `input_shape`: each input element receives the sum of g over the
// output positions that copy it. Its backward is pad, with value 0.
Tensor pad_fold(const Tensor& g, const shape_type& input_shape, const axes_type& pads,
                PaddingMode mode = PaddingMode::constant);

const char* padding_mode_name(PaddingMode mode);

}  // namespace tg
