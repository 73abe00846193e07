// tapegrad_bench: runs the registered groups of cases and times each one the
// way ../shared/bench/torch_ref.py's bench() times PyTorch.
//
//   tapegrad_bench [--threads 1 2] [--groups tiny matmul ...] [--samples 7]
//                  [--min-sample 0.1] [--json FILE] [--cases SUBSTRING] [--list]
//                  [--calls N]
//
// --calls N runs each chosen case N times untimed, for an instruction count
// that the machine's load does not move: under callgrind, the per-call cost
// is (I(N2) - I(N1)) / (N2 - N1), the set-up and warm-up cancelling out.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "bench/bench.hpp"

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
int openblas_get_num_threads(void);
}
extern char** environ;

namespace bench {

namespace {

// Function-local so registrations from any file's static initialisers find it built.
std::map<std::string, std::vector<GroupFn>>& groups()
{
    static std::map<std::string, std::vector<GroupFn>> g;
    return g;
}

// torch_ref.py's group order; groups it does not know come after, by name.
std::vector<std::string> default_group_order()
{
    std::vector<std::string> order;
    for (const char* g : {"matmul", "conv", "xent", "train", "tiny"})
        if (groups().count(g)) order.push_back(g);
    for (const auto& [name, fns] : groups())
        if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
    return order;
}

struct Options {
    std::vector<int> threads{1, 2};
    std::vector<std::string> groups;
    int samples = 7;
    double min_sample = 0.1;
    std::string json;
    std::string cases;
    bool list = false;
    long calls = 0;  // > 0: run each case this many times, untimed
};

[[noreturn]] void usage(const char* msg)
{
    if (msg) std::fprintf(stderr, "tapegrad_bench: %s\n", msg);
    std::fprintf(stderr,
                 "usage: tapegrad_bench [--threads N ...] [--groups G ...] [--samples 7]\n"
                 "                      [--min-sample 0.1] [--json FILE] [--cases SUBSTRING] [--list]\n"
                 "                      [--calls N]\n");
    std::exit(msg ? 2 : 0);
}

Options parse(int argc, char** argv)
{
    Options o;
    auto is_flag = [&](int i) { return std::strncmp(argv[i], "--", 2) == 0; };
    auto value = [&](int& i) -> const char* {
        if (i + 1 >= argc || is_flag(i + 1)) usage((std::string(argv[i]) + " needs a value").c_str());
        return argv[++i];
    };
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--threads") {
            o.threads.clear();
            while (i + 1 < argc && !is_flag(i + 1)) {
                int n = std::atoi(argv[++i]);
                if (n < 1) usage("--threads values must be >= 1");
                o.threads.push_back(n);
            }
            if (o.threads.empty()) usage("--threads needs at least one value");
        } else if (a == "--groups") {
            while (i + 1 < argc && !is_flag(i + 1)) o.groups.push_back(argv[++i]);
            if (o.groups.empty()) usage("--groups needs at least one value");
        } else if (a == "--samples") {
            o.samples = std::atoi(value(i));
            if (o.samples < 1) usage("--samples must be >= 1");
        } else if (a == "--min-sample") {
            o.min_sample = std::atof(value(i));
        } else if (a == "--json") {
            o.json = value(i);
        } else if (a == "--cases") {
            o.cases = value(i);
        } else if (a == "--calls") {
            o.calls = std::atol(value(i));
            if (o.calls < 1) usage("--calls must be >= 1");
        } else if (a == "--list") {
            o.list = true;
        } else if (a == "--help" || a == "-h") {
            usage(nullptr);
        } else {
            usage(("unknown argument " + a).c_str());
        }
    }
    if (o.groups.empty()) o.groups = default_group_order();
    for (const std::string& g : o.groups)
        if (!groups().count(g)) {
            std::string known;
            for (const std::string& k : default_group_order()) known += " " + k;
            usage(("unknown group '" + g + "'; registered:" + known).c_str());
        }
    return o;
}

struct Timing {
    double median, min, max;  // seconds per call
    long inner;
};

double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// torch_ref.py's bench(): 3 warm-up calls, inner iterations calibrated so a
// sample lasts >= min_sample, then `samples` samples of the per-call time.
Timing time_case(const std::function<void()>& fn, int samples, double min_sample, int warmup = 3)
{
    for (int i = 0; i < warmup; ++i) fn();
    long inner = 1;
    while (true) {
        double t0 = now();
        for (long i = 0; i < inner; ++i) fn();
        double dt = now() - t0;
        if (dt >= min_sample || inner >= (1L << 20)) break;
        inner = std::max(inner * 2, long(double(inner) * min_sample / std::max(dt, 1e-9) * 1.1));
    }
    std::vector<double> ts;
    for (int s = 0; s < samples; ++s) {
        double t0 = now();
        for (long i = 0; i < inner; ++i) fn();
        ts.push_back((now() - t0) / double(inner));
    }
    std::vector<double> sorted = ts;
    std::sort(sorted.begin(), sorted.end());
    size_t n = sorted.size();
    double med = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);  // statistics.median
    return {med, sorted.front(), sorted.back(), inner};
}

std::string json_escape(const std::string& s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out;
}

// Appended rather than `"\"" + ...`: GCC 12 warns falsely (-Wrestrict) on that form.
std::string quoted(const std::string& s)
{
    std::string out(1, '"');
    out += json_escape(s);
    out += '"';
    return out;
}

std::string num(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

// The variables that change what the numbers mean, as a JSON object.
std::string env_json()
{
    std::string out = "{";
    bool first = true;
    for (char** e = environ; *e; ++e) {
        std::string kv = *e;
        if (kv.rfind("OPENBLAS", 0) && kv.rfind("OMP_", 0) && kv.rfind("MKL", 0) && kv.rfind("TG_", 0) &&
            kv.rfind("GLIBC_TUNABLES", 0))
            continue;
        size_t eq = kv.find('=');
        if (!first) out += ", ";
        first = false;
        out += quoted(kv.substr(0, eq)) + ": " + quoted(eq == std::string::npos ? "" : kv.substr(eq + 1));
    }
    return out + "}";
}

std::string trimmed(const char* s)
{
    std::string r = s ? s : "";
    while (!r.empty() && (r.back() == ' ' || r.back() == '\n')) r.pop_back();
    return r;
}

}  // namespace

void register_group(const std::string& name, GroupFn make) { groups()[name].push_back(std::move(make)); }

}  // namespace bench

int main(int argc, char** argv)
{
    using namespace bench;
    Options o = parse(argc, argv);

    if (o.list) {
        for (const std::string& g : o.groups)
            for (const GroupFn& make : groups()[g])
                for (const Case& c : make()) std::printf("%-8s %s\n", g.c_str(), c.name.c_str());
        return 0;
    }

    const std::string core = trimmed(openblas_get_corename());
    const std::string env = env_json();
    std::printf("# {\"engine\": \"tapegrad\", \"tg_num_threads_default\": %d, \"openblas_core\": %s, "
                "\"openblas_config\": %s, \"env\": %s}\n",
                tg::num_threads(), quoted(core).c_str(), quoted(trimmed(openblas_get_config())).c_str(),
                env.c_str());
    std::printf("# threads = tg::set_num_threads(n); OpenBLAS is pinned to 1 thread and tapegrad splits "
                "GEMMs across its own pool (thr/ob column: tapegrad threads / OpenBLAS threads)\n");
    if (o.calls == 0)
        std::printf("%-46s %5s %5s %10s %10s %10s %6s  %s\n", "case", "thr/ob", "batch", "median_ms", "min_ms",
                    "max_ms", "inner", "derived(median)");
    std::fflush(stdout);

    FILE* jf = nullptr;
    if (!o.json.empty()) {
        jf = std::fopen(o.json.c_str(), "a");
        if (!jf) {
            std::fprintf(stderr, "tapegrad_bench: cannot open %s for appending\n", o.json.c_str());
            return 2;
        }
    }

    int failures = 0;
    for (int n : o.threads) {
        tg::set_num_threads(n);
        for (const std::string& g : o.groups) {
            for (const GroupFn& make : groups()[g]) {
                std::vector<Case> cases;
                try {
                    cases = make();
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "group %s: building the cases failed: %s\n", g.c_str(), e.what());
                    ++failures;
                    continue;
                }
                for (const Case& c : cases) {
                    if (!o.cases.empty() && c.name.find(o.cases) == std::string::npos) continue;
                    if (o.calls > 0) {
                        try {
                            for (long i = 0; i < o.calls; ++i) c.fn();
                        } catch (const std::exception& e) {
                            std::fprintf(stderr, "%s: failed: %s\n", c.name.c_str(), e.what());
                            ++failures;
                            continue;
                        }
                        std::printf("%-46s %2d     %ld calls, untimed\n", c.name.c_str(), n, o.calls);
                        std::fflush(stdout);
                        continue;
                    }
                    Timing t;
                    try {
                        t = time_case(c.fn, o.samples, o.min_sample);
                    } catch (const std::exception& e) {
                        std::fprintf(stderr, "%s: failed: %s\n", c.name.c_str(), e.what());
                        ++failures;
                        continue;
                    }
                    // Throughput from the per-call time; the times reported per op.
                    char derived[64] = "";
                    if (c.flops > 0)
                        std::snprintf(derived, sizeof derived, "%.1f GFLOP/s", c.flops / t.median * 1e-9);
                    else if (c.images > 0)
                        std::snprintf(derived, sizeof derived, "%.0f img/s", c.images / t.median);
                    else if (c.ops_per_call != 1)
                        std::snprintf(derived, sizeof derived, "%.2f us/op", t.median / c.ops_per_call * 1e6);
                    double med = t.median / c.ops_per_call, lo = t.min / c.ops_per_call,
                           hi = t.max / c.ops_per_call;
                    int ob = openblas_get_num_threads();
                    std::printf("%-46s %2d/%-2d %5lld %10.4f %10.4f %10.4f %6ld  %s\n", c.name.c_str(), n, ob,
                                static_cast<long long>(c.batch), med * 1e3, lo * 1e3, hi * 1e3, t.inner,
                                derived);
                    std::fflush(stdout);
                    if (jf) {
                        // No "mkldnn" key: compare.py renames cases whose mkldnn is false.
                        std::fprintf(jf,
                                     "{\"case\": %s, \"threads\": %d, \"openblas_threads\": %d, \"batch\": %lld, "
                                     "\"median_s\": %s, \"min_s\": %s, \"max_s\": %s, \"inner\": %ld, "
                                     "\"samples\": %d, \"derived\": %s, \"engine\": \"tapegrad\", "
                                     "\"openblas_core\": %s, \"env\": %s}\n",
                                     quoted(c.name).c_str(), n, ob, static_cast<long long>(c.batch),
                                     num(med).c_str(), num(lo).c_str(), num(hi).c_str(), t.inner, o.samples,
                                     quoted(derived).c_str(), quoted(core).c_str(), env.c_str());
                        std::fflush(jf);
                    }
                }
            }
        }
    }
    if (jf) std::fclose(jf);
    return failures ? 1 : 0;
}
