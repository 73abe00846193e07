// tg::to_dot: the DOT it writes parses (a small parser of the DOT grammar it
// uses, and Graphviz's dot when installed), and says what the tape holds: one
// box per entry with its op, shape and dtype, named parameters, module clusters
// and an arrow per input.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace nn = tg::nn;

namespace {

// The parts of a DOT graph the checks need, from a recursive-descent parse of
// the subset of the grammar to_dot writes (statements end with ';').
struct DotGraph {
    std::map<std::string, std::map<std::string, std::string>> nodes;  // id -> attributes
    std::vector<std::pair<std::string, std::string>> edges;
    std::vector<std::string> clusters;  // their labels
    int max_depth = 0;
};

class DotParser {
public:
    explicit DotParser(const std::string& s) : s_(s) {}

    DotGraph parse()
    {
        expect("digraph");
        id();
        expect("{");
        statements(1);
        skip_space();
        if (pos_ != s_.size()) fail("text after the graph");
        return g_;
    }

private:
    [[noreturn]] void fail(const std::string& what)
    {
        throw std::runtime_error("DOT parse error at byte " + std::to_string(pos_) + ": " + what);
    }
    void skip_space()
    {
        while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    bool peek(const std::string& t)
    {
        skip_space();
        return s_.compare(pos_, t.size(), t) == 0;
    }
    void expect(const std::string& t)
    {
        if (!peek(t)) fail("expected '" + t + "'");
        pos_ += t.size();
    }
    std::string id()
    {
        skip_space();
        if (pos_ >= s_.size()) fail("expected an id, found the end");
        std::string out;
        if (s_[pos_] == '"') {
            for (++pos_;; ++pos_) {
                if (pos_ >= s_.size()) fail("unterminated string");
                char c = s_[pos_];
                if (c == '"') break;
                if (c == '\n') fail("raw newline in a string");
                if (c == '\\') {
                    if (++pos_ >= s_.size()) fail("dangling escape");
                    out += s_[pos_] == 'n' ? '\n' : s_[pos_];
                } else {
                    out += c;
                }
            }
            ++pos_;
            return out;
        }
        while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_' || s_[pos_] == '.'))
            out += s_[pos_++];
        if (out.empty()) fail("expected an id");
        return out;
    }
    std::map<std::string, std::string> attributes()
    {
        std::map<std::string, std::string> a;
        if (!peek("[")) return a;
        expect("[");
        while (!peek("]")) {
            std::string k = id();
            expect("=");
            a[k] = id();
            if (peek(",")) expect(",");
        }
        expect("]");
        return a;
    }
    void statements(int depth)
    {
        g_.max_depth = std::max(g_.max_depth, depth);
        while (!peek("}")) {
            if (peek("subgraph")) {
                expect("subgraph");
                std::string name = id();
                if (name.rfind("cluster_", 0) != 0) fail("a subgraph that is not a cluster");
                expect("{");
                size_t at = g_.clusters.size();
                g_.clusters.emplace_back();
                cluster_label_ = &g_.clusters[at];
                statements(depth + 1);
                continue;
            }
            std::string a = id();
            if (peek("=")) {  // graph attribute
                expect("=");
                std::string v = id();
                if (a == "label" && cluster_label_) *cluster_label_ = v, cluster_label_ = nullptr;
            } else if (peek("->")) {
                expect("->");
                std::string b = id();
                attributes();
                g_.edges.emplace_back(a, b);
            } else {
                auto attrs = attributes();
                if (a != "node") {
                    for (auto& [k, v] : attrs) g_.nodes[a][k] = v;
                }
            }
            expect(";");
        }
        expect("}");
    }

    const std::string& s_;
    size_t pos_ = 0;
    DotGraph g_;
    std::string* cluster_label_ = nullptr;
};

class Block : public nn::Module {
public:
    explicit Block(tg::Generator* gen)
    {
        conv = register_module("conv", nn::make<nn::Conv2d>(1, 2, 3, nn::Conv2dOptions{.padding = 1}, gen));
        act = register_module("act", nn::make<nn::ReLU>());
    }
    tg::Tensor forward(const tg::Tensor& x) override { return (*act)((*conv)(x)); }
    std::shared_ptr<nn::Conv2d> conv;
    std::shared_ptr<nn::ReLU> act;
};

}  // namespace

TEST_CASE("to_dot: a small CNN's tape parses and shows ops, shapes, parameters and module clusters")
{
    tg::Generator gen(7);
    nn::Sequential model{nn::make<Block>(&gen), nn::make<nn::Flatten>(), nn::make<nn::Linear>(2 * 4 * 4, 3, true, &gen)};
    tg::Tensor x = tg::randn({2, 1, 4, 4}, tg::float32, &gen);
    tg::Tensor loss = tg::cross_entropy(model(x), tg::from_values({0, 2}, {}, tg::int64));
    const std::string dot = tg::to_dot(loss, {.names = model.named_parameters(), .title = "one step"});
    DotGraph g;
    REQUIRE_NOTHROW(g = DotParser(dot).parse());
    // Every arrow joins declared nodes; every entry and leaf has one.
    for (const auto& [from, to] : g.edges) {
        CHECK(g.nodes.count(from) == 1);
        CHECK(g.nodes.count(to) == 1);
    }
    std::set<std::string> labels;
    int boxes = 0;
    for (const auto& [id, attrs] : g.nodes) {
        if (!attrs.count("label")) continue;
        labels.insert(attrs.at("label"));
        boxes += attrs.count("shape") && attrs.at("shape") == "box";
    }
    auto has_label = [&](const std::string& part) {
        for (const std::string& l : labels)
            if (contains(l, part)) return true;
        return false;
    };
    CHECK(has_label("conv2d\n[2, 2, 4, 4] float32"));
    CHECK(has_label("0.conv.weight\n[2, 1, 3, 3] float32"));
    CHECK(has_label("2.bias\n[3] float32"));
    CHECK(has_label("saved "));
    // Entries of the tape walked by hand: as many boxes as entries.
    std::set<const tg::Node*> seen;
    std::vector<const tg::Node*> stack{loss.grad_fn().get()};
    while (!stack.empty()) {
        const tg::Node* n = stack.back();
        stack.pop_back();
        if (!seen.insert(n).second) continue;
        for (const tg::Edge& e : n->inputs)
            if (e.node) stack.push_back(e.node.get());
    }
    CHECK(boxes == int(seen.size()));
    // The clusters name the modules, nested: 0 (Block) holds 0.conv (Conv2d).
    std::set<std::string> clusters(g.clusters.begin(), g.clusters.end());
    CHECK(clusters.count("(Sequential)"));
    CHECK(clusters.count("0 (Block)"));
    CHECK(clusters.count("0.conv (Conv2d)"));
    CHECK(clusters.count("2 (Linear)"));
    CHECK(g.max_depth >= 4);  // graph > (Sequential) > 0 (Block) > 0.conv (Conv2d)
    // A backward releases the saved tensors; the picture says so.
    loss.backward();
    CHECK(contains(tg::to_dot(loss), "saved: released by a backward"));
}

TEST_CASE("to_dot: a leaf alone, quotes in names, and Graphviz's dot accepts the file")
{
    tg::Tensor w = tg::ones({2}).requires_grad_(true);
    const std::string alone = tg::to_dot(w, {.names = {{"say \"w\"\\", w}}});
    DotGraph g = DotParser(alone).parse();
    REQUIRE(g.nodes.size() == 1);
    CHECK(contains(g.nodes.begin()->second.at("label"), "say \"w\"\\"));
    CHECK(contains(error_of([] { tg::to_dot(tg::Tensor()); }), "to_dot: the tensor is undefined"));

    TempDir dir;
    const std::string path = dir.file("graph.dot");
    tg::Tensor y = tg::sum(tg::exp(w) * w);
    const std::string svg = tg::write_dot(path, y);
    std::ifstream f(path);
    std::stringstream text;
    text << f.rdbuf();
    CHECK(text.str() == tg::to_dot(y));
    const bool have_dot = std::system("command -v dot > /dev/null 2>&1") == 0;
    if (have_dot) {
        REQUIRE(svg == path + ".svg");
        std::ifstream s(svg);
        std::stringstream content;
        content << s.rdbuf();
        CHECK(contains(content.str(), "<svg"));
        CHECK(contains(content.str(), "exp"));
    } else {
        MESSAGE("Graphviz's dot is not installed: the SVG part is not checked");
        CHECK(svg.empty());
    }
    CHECK(contains(error_of([&] { tg::write_dot(dir.file("no/such/dir/g.dot"), y); }), "write_dot: cannot open"));
}
