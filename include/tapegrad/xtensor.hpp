// tapegrad <-> xtensor: from_xarray, as_xarray (no copy), to_xarray.
#pragma once

#include "engine/xtensor_interop.hpp"
#include "tapegrad/tapegrad.hpp"
