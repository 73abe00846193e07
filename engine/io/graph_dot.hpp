// A picture of the tape: the graph that produced a tensor, in Graphviz's DOT.
//
//     std::ofstream("step.dot") << tg::to_dot(loss, {.names = model.named_parameters()});
//     // dot -Tsvg step.dot -o step.svg
//
// Each tape entry is a box with its op, output shape and dtype, and the bytes
// of the tensors it saved for its backward; leaves are ellipses, named when
// `names` has them (parameters by their module path). Entries are grouped in
// one cluster per module that ran them ("features.3 (Conv2d)"), nested as the
// modules are. Arrows go from inputs to the op that used them.
#pragma once

#include <string>

#include "../core/tensor.hpp"

namespace tg {

struct DotOptions {
    named_tensors names = {};  // leaves to name (model.named_parameters(), an input)
    std::string title = {};  // the graph's label; none if empty
};

std::string to_dot(const Tensor& root, const DotOptions& options = {});

// Writes to_dot(root) to `path`; when Graphviz's `dot` is on the PATH, also
// `path` with ".svg" appended, and returns that path ("" without dot).
std::string write_dot(const std::string& path, const Tensor& root, const DotOptions& options = {});

}  // namespace tg
