// tapegrad <-> xtensor: from_xarray, as_xarray (no copy), to_xarray.
#pragma once

#include "engine/io/xtensor.hpp"
#include "tapegrad/tapegrad.hpp"
