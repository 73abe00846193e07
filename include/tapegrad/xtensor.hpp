// tapegrad with xtensor as the array language: views of tensors (as_xtensor,
// as_mutable_xtensor), tensors from expressions (from_xtensor), copies
// (to_xarray), and custom ops written in xtensor (tg::XtensorOp).
#pragma once

#include "engine/io/xtensor.hpp"
#include "engine/io/xtensor_op.hpp"
#include "tapegrad.hpp"
