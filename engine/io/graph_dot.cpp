#include "engine/io/graph_dot.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "engine/core/autograd.hpp"
#include "engine/core/module_scope.hpp"

extern char** environ;

namespace tg {

namespace {

std::string quoted(const std::string& s)
{
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out + "\"";
}

std::string bytes_str(int64_t bytes)
{
    char buf[32];
    if (bytes < 1024) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
    else if (bytes < 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", double(bytes) / 1024);
    else std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1024 * 1024));
    return buf;
}

std::string tensor_str(const shape_type& shape, Dtype dtype) { return shape_str(shape) + " " + dtype_name(dtype); }

class DotWriter {
public:
    explicit DotWriter(const DotOptions& o)
    {
        for (const auto& [name, t] : o.names)
            if (t.defined()) names_.emplace(t.impl_ptr().get(), name);
    }

    std::string write(const Tensor& root, const std::string& title)
    {
        std::ostringstream os;
        os << "digraph tape {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n";
        if (!title.empty()) os << "  label=" << quoted(title) << ";\n  labelloc=t;\n";
        if (root.grad_fn()) {
            collect(root.grad_fn().get());
        } else {
            leaf_id(root.impl_ptr().get(), root.impl().shape, root.impl().dtype);
        }
        // Entries by module, nested as the modules are; the rest at the top.
        std::map<const ModuleScope*, std::vector<const ModuleScope*>> children;
        // (in the order the modules ran: the reverse of the walk back from the output)
        for (auto scope = scope_order_.rbegin(); scope != scope_order_.rend(); ++scope)
            for (const ModuleScope* s = *scope; s; s = s->parent) {
                auto& siblings = children[s->parent];
                if (std::find(siblings.begin(), siblings.end(), s) != siblings.end()) break;
                siblings.push_back(s);
            }
        emit_scope(os, nullptr, children, 1);
        for (const std::string& leaf : leaf_lines_) os << "  " << leaf << "\n";
        for (const std::string& edge : edge_lines_) os << "  " << edge << "\n";
        if (root.grad_fn())
            os << "  " << ids_.at(root.grad_fn().get()) << " [penwidth=2];\n";
        os << "}\n";
        return os.str();
    }

private:
    void collect(Node* start)
    {
        std::vector<Node*> stack{start};
        node_id(start);
        while (!stack.empty()) {
            Node* n = stack.back();
            stack.pop_back();
            for (size_t i = 0; i < n->inputs.size(); ++i) {
                const Edge& e = n->inputs[i];
                std::string from;
                if (e.node) {
                    bool fresh = !ids_.count(e.node.get());
                    from = node_id(e.node.get());
                    if (fresh) stack.push_back(e.node.get());
                } else if (e.leaf) {
                    from = leaf_id(e.leaf.get(), e.leaf->shape, e.leaf->dtype);
                } else {
                    continue;
                }
                std::string edge = from + " -> " + ids_.at(n);
                if (n->inputs.size() > 1) edge += " [label=" + quoted(std::to_string(i)) + ", fontsize=8]";
                edge_lines_.push_back(edge + ";");
            }
        }
    }

    const std::string& node_id(Node* n)
    {
        auto [it, fresh] = ids_.emplace(n, "");
        if (!fresh) return it->second;
        it->second = "op" + std::to_string(ids_.size());
        int64_t saved = 0;
        for (const SavedTensor& s : n->saved)
            if (s.data.defined()) saved += s.data.numel() * int64_t(dtype_size(s.data.dtype()));
        std::string label = std::string(n->op) + "\n" + tensor_str(n->shape, n->dtype);
        if (n->released) label += "\nsaved: released by a backward";
        else if (saved) label += "\nsaved " + bytes_str(saved);
        auto& in_scope = by_scope_[n->scope];
        if (in_scope.empty()) scope_order_.push_back(n->scope);
        in_scope.push_back(it->second + " [shape=box, style=filled, fillcolor=\"#dde8f6\", label=" +
                                      quoted(label) + "];");
        return it->second;
    }

    const std::string& leaf_id(const void* impl, const shape_type& shape, Dtype dtype)
    {
        auto [it, fresh] = ids_.emplace(impl, "");
        if (!fresh) return it->second;
        it->second = "leaf" + std::to_string(ids_.size());
        auto name = names_.find(impl);
        std::string label = (name != names_.end() ? name->second : std::string("leaf")) + "\n" + tensor_str(shape, dtype);
        leaf_lines_.push_back(it->second + " [shape=ellipse, style=filled, fillcolor=" +
                              (name != names_.end() ? "\"#f6e7c1\"" : "\"#eeeeee\"") + ", label=" + quoted(label) + "];");
        return it->second;
    }

    void emit_scope(std::ostringstream& os, const ModuleScope* scope,
                    const std::map<const ModuleScope*, std::vector<const ModuleScope*>>& children, int depth)
    {
        const std::string indent(size_t(depth) * 2, ' ');
        if (auto it = by_scope_.find(scope); it != by_scope_.end())
            for (const std::string& line : it->second) os << indent << line << "\n";
        auto kids = children.find(scope);
        if (kids == children.end()) return;
        for (const ModuleScope* child : kids->second) {
            os << indent << "subgraph cluster_" << ++clusters_ << " {\n"
               << indent << "  label=" << quoted(child->describe()) << ";\n"
               << indent << "  style=rounded;\n";
            emit_scope(os, child, children, depth + 1);
            os << indent << "}\n";
        }
    }

    std::map<const void*, std::string> names_;
    std::map<const void*, std::string> ids_;
    std::map<const ModuleScope*, std::vector<std::string>> by_scope_;
    std::vector<const ModuleScope*> scope_order_;
    std::vector<std::string> leaf_lines_, edge_lines_;
    int clusters_ = 0;
};

// Runs `dot -Tsvg in -o out` from the PATH: the exit status, or -1 when there
// is no dot to run.
int run_dot(const std::string& in, const std::string& out)
{
    std::vector<std::string> args{"dot", "-Tsvg", in, "-o", out};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (posix_spawnp(&pid, "dot", nullptr, nullptr, argv.data(), environ) != 0) return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return -1;  // the child found no dot
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

std::string to_dot(const Tensor& root, const DotOptions& options)
{
    TG_CHECK(root.defined(), "to_dot: the tensor is undefined");
    return DotWriter(options).write(root, options.title);
}

std::string write_dot(const std::string& path, const Tensor& root, const DotOptions& options)
{
    const std::string dot = to_dot(root, options);
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        TG_CHECK(f.good(), "write_dot: cannot open '", path, "' for writing: ", std::strerror(errno));
        f << dot;
        f.flush();
        TG_CHECK(f.good(), "write_dot: writing '", path, "' failed: ", std::strerror(errno));
    }
    const std::string svg = path + ".svg";
    const int status = run_dot(path, svg);
    if (status < 0) return "";
    TG_CHECK(status == 0, "write_dot: Graphviz's dot exited with status ", status, " on '", path, "'");
    return svg;
}

}  // namespace tg
