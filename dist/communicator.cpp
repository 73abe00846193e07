#include "dist/communicator.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <thread>
#include <type_traits>

#include "engine/core/error.hpp"

#ifdef TAPEGRAD_MPI
#include <mpi.h>
#endif

namespace tg::dist {

namespace {

void check_dtype(const char* op, const Tensor& t)
{
    TG_CHECK(t.defined(), "dist::", op, ": undefined tensor");
    TG_CHECK(t.dtype() == float32 || t.dtype() == float64 || t.dtype() == int64, "dist::", op,
             ": expected a float32, float64 or int64 tensor, got ", dtype_name(t.dtype()));
}

#ifdef TAPEGRAD_MPI
// Launched by an MPI launcher: OpenMPI, MPICH and PMIx-based ones set these.
bool launched_by_mpi()
{
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(v)) return true;
    return false;
}

struct World {
    bool mpi = false;     // MPI initialised by us
    bool broken = false;  // a collective timed out: finalising would wait for the missing rank
    int rank = 0, size = 1;
    World()
    {
        int already = 0;
        MPI_Initialized(&already);
        if (!already && !launched_by_mpi()) return;  // a world of one, MPI untouched
        if (!already) {
            int provided = 0;
            // Only the thread that calls these functions talks to MPI.
            MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
            mpi = true;
        }
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    ~World()
    {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (finalized) return;
        // After a timeout the world cannot finish together: end every rank
        // (the stalled one too) rather than wait in MPI_Finalize.
        if (broken) MPI_Abort(MPI_COMM_WORLD, 1);
        if (mpi) MPI_Finalize();
    }
};

World& world()
{
    static World w;
    return w;
}

MPI_Datatype mpi_type(Dtype d)
{
    return d == float32 ? MPI_FLOAT : d == float64 ? MPI_DOUBLE : MPI_INT64_T;
}

MPI_Op mpi_op(ReduceOp op)
{
    return op == ReduceOp::max ? MPI_MAX : op == ReduceOp::min ? MPI_MIN : MPI_SUM;
}

void check_mpi(int rc, const std::string& what)
{
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail("dist: ", what, " failed on rank ", world().rank, ": ", std::string(text, size_t(len)));
}

// Waits for every request, polling, up to the timeout.
void wait_all(std::vector<MPI_Request>& requests, const std::string& what)
{
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + std::chrono::duration<double>(timeout_seconds());
    auto pause = std::chrono::microseconds(0);
    for (;;) {
        int done = 0;
        check_mpi(MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), what);
        if (done) return;
        if (std::chrono::steady_clock::now() >= deadline) {
            world().broken = true;
            fail("dist: ", what, " on rank ", world().rank, " of ", world().size, " did not complete within ",
                 timeout_seconds(), " s (TG_DIST_TIMEOUT): another rank failed, exited or took another path; ",
                 "at exit this process ends the whole run (MPI_Abort)");
        }
        // MPI progresses a non-blocking collective only inside MPI calls, so
        // polling paces it: for the first 20 ms poll back to back, yielding
        // the core to any rank beside it that needs it (a sleep between polls
        // made a 1 MB allreduce take 5 ms); then back off to sleeps.
        if (std::chrono::steady_clock::now() - started < std::chrono::milliseconds(20)) {
            std::this_thread::yield();
            continue;
        }
        if (pause < std::chrono::microseconds(200)) pause += std::chrono::microseconds(10);
        std::this_thread::sleep_for(pause);
    }
}

constexpr int64_t chunk = int64_t(1) << 30;  // MPI counts are int

std::vector<MPI_Request> start_allreduce(void* data, int64_t count, Dtype dtype, ReduceOp op, const std::string& what)
{
    std::vector<MPI_Request> requests;
    const size_t item = dtype_size(dtype);
    for (int64_t at = 0; at < count; at += chunk) {
        MPI_Request r;
        check_mpi(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(data) + size_t(at) * item,
                                 int(std::min(chunk, count - at)), mpi_type(dtype), mpi_op(op), MPI_COMM_WORLD, &r),
                  what);
        requests.push_back(r);
    }
    return requests;
}
#endif

}  // namespace

bool built_with_mpi()
{
#ifdef TAPEGRAD_MPI
    return true;
#else
    return false;
#endif
}

void abort(int status)
{
#ifdef TAPEGRAD_MPI
    if (world().size > 1) {
        std::fflush(nullptr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
#endif
    std::exit(status);
}

int rank()
{
#ifdef TAPEGRAD_MPI
    return world().rank;
#else
    return 0;
#endif
}

int world_size()
{
#ifdef TAPEGRAD_MPI
    return world().size;
#else
    return 1;
#endif
}

double timeout_seconds()
{
    static const double seconds = [] {
        const char* v = std::getenv("TG_DIST_TIMEOUT");
        char* end = nullptr;
        double s = v ? std::strtod(v, &end) : 0;
        return v && end != v && s > 0 ? s : 300.0;
    }();
    return seconds;
}

void barrier()
{
#ifdef TAPEGRAD_MPI
    if (world_size() == 1) return;
    std::vector<MPI_Request> r(1);
    check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &r[0]), "barrier");
    wait_all(r, "barrier");
#endif
}

void broadcast(Tensor& t, int root)
{
    check_dtype("broadcast", t);
    TG_CHECK(root >= 0 && root < world_size(), "dist::broadcast: root ", root, " is not a rank of a world of ",
             world_size());
#ifdef TAPEGRAD_MPI
    if (world_size() == 1) return;
    // Every rank must hold as many elements as the root: checked first, so a
    // mismatch is an error on every rank, not a corrupted buffer.
    const std::vector<int64_t> counts = all_gather(t.numel());
    for (int r = 0; r < world_size(); ++r)
        TG_CHECK(counts[size_t(r)] == counts[size_t(root)], "dist::broadcast: rank ", r, " has ", counts[size_t(r)],
                 " elements, the root (rank ", root, ") ", counts[size_t(root)], "; this rank's tensor is ",
                 t.shape());
    const size_t item = dtype_size(t.dtype());
    std::vector<MPI_Request> requests;
    for (int64_t at = 0; at < t.numel(); at += chunk) {
        MPI_Request r;
        check_mpi(MPI_Ibcast(static_cast<char*>(t.raw_data()) + size_t(at) * item, int(std::min(chunk, t.numel() - at)),
                             mpi_type(t.dtype()), root, MPI_COMM_WORLD, &r),
                  "broadcast");
        requests.push_back(r);
    }
    wait_all(requests, "broadcast");
#endif
}

void allreduce(Tensor& t, ReduceOp op)
{
    check_dtype("allreduce", t);
    TG_CHECK(op != ReduceOp::average || t.dtype() != int64, "dist::allreduce: the average of int64 tensors");
    if (world_size() == 1) return;
    Request r = allreduce_start(t.raw_data(), t.numel(), t.dtype(), op, "allreduce");
    r.wait();
    if (op == ReduceOp::average) {
        const double n = world_size();
        if (t.dtype() == float64)
            for (double *p = t.data<double>(), *e = p + t.numel(); p < e; ++p) *p /= n;
        else
            for (float *p = t.data<float>(), *e = p + t.numel(); p < e; ++p) *p = float(*p / n);
    }
}

namespace {
template <class T>
std::vector<T> gather_one(T value)
{
    std::vector<T> out(size_t(world_size()), value);
#ifdef TAPEGRAD_MPI
    if (world_size() == 1) return out;
    const MPI_Datatype type = std::is_same_v<T, double> ? MPI_DOUBLE : MPI_INT64_T;
    std::vector<MPI_Request> r(1);
    check_mpi(MPI_Iallgather(&value, 1, type, out.data(), 1, type, MPI_COMM_WORLD, &r[0]), "all_gather");
    wait_all(r, "all_gather");
#endif
    return out;
}
}  // namespace

std::vector<int64_t> all_gather(int64_t value) { return gather_one(value); }
std::vector<double> all_gather(double value) { return gather_one(value); }

std::string broadcast(const std::string& s, int root)
{
    if (world_size() == 1) return s;
    Tensor n = Tensor::empty({}, int64, "dist::broadcast");
    *n.data<int64_t>() = int64_t(s.size());
    broadcast(n, root);
    const int64_t len = *n.data<int64_t>();
    // As int64 words (the tensors' dtypes), padded.
    Tensor words = zeros({(len + 7) / 8}, int64);
    if (rank() == root) std::memcpy(words.raw_data(), s.data(), s.size());
    broadcast(words, root);
    return std::string(static_cast<const char*>(words.raw_data()), size_t(len));
}

std::string difference_across_ranks(const std::string& description)
{
    const std::string main = broadcast(description, 0);
    Tensor differs = zeros({}, int64);
    *differs.data<int64_t>() = description != main;
    allreduce(differs, ReduceOp::max);
    if (*differs.data<int64_t>() == 0) return "";
    if (description == main) return "this rank's matches rank 0's; another rank's does not";
    std::istringstream a(main), b(description);
    std::string la, lb;
    while (true) {
        const bool more_a = bool(std::getline(a, la)), more_b = bool(std::getline(b, lb));
        if (!more_a || !more_b || la != lb)
            return "rank 0 has '" + (more_a ? la : std::string("nothing more")) + "', rank " + std::to_string(rank()) +
                   " '" + (more_b ? lb : std::string("nothing more")) + "'";
    }
}

Request::Request(Request&& other) noexcept : handle_(other.handle_), what_(std::move(other.what_))
{
    other.handle_ = nullptr;
}

Request& Request::operator=(Request&& other) noexcept
{
    if (this != &other) {
        try {
            wait();
        } catch (...) {
        }
        handle_ = other.handle_;
        what_ = std::move(other.what_);
        other.handle_ = nullptr;
    }
    return *this;
}

Request::~Request()
{
    try {
        wait();
    } catch (...) {
    }
}

void Request::wait()
{
    if (!handle_) return;
#ifdef TAPEGRAD_MPI
    auto* requests = static_cast<std::vector<MPI_Request>*>(handle_);
    handle_ = nullptr;
    std::unique_ptr<std::vector<MPI_Request>> owned(requests);
    wait_all(*requests, what_);
#endif
}

bool Request::test()
{
    if (!handle_) return true;
#ifdef TAPEGRAD_MPI
    auto* requests = static_cast<std::vector<MPI_Request>*>(handle_);
    int done = 0;
    check_mpi(MPI_Testall(int(requests->size()), requests->data(), &done, MPI_STATUSES_IGNORE), what_);
    if (!done) return false;
    delete requests;
    handle_ = nullptr;
#endif
    return true;
}

Request allreduce_start(void* data, int64_t count, Dtype dtype, ReduceOp op, const std::string& what)
{
    Request r;
#ifdef TAPEGRAD_MPI
    if (world_size() == 1 || count == 0) return r;
    r.handle_ = new std::vector<MPI_Request>(start_allreduce(data, count, dtype, op, what));
    r.what_ = what;
#else
    (void)data, (void)count, (void)dtype, (void)op, (void)what;
#endif
    return r;
}

}  // namespace tg::dist
