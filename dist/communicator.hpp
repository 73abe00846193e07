// The processes of a run, and what they exchange: tapegrad on MPI.
//
// Started by mpirun (or any MPI launcher), a program is one rank of MPI's
// world; started alone, it is a world of one, where every collective below
// is the identity, so a program runs unchanged either way. MPI is
// initialised on first use and finalised at exit; a build without MPI
// (TAPEGRAD_MPI=OFF) is always a world of one.
//
// Every collective must be called by every rank, in the same order, with
// tensors of the same shape and dtype (float32, float64 or int64). None
// blocks forever: a collective that has not completed after timeout_seconds()
// (TG_DIST_TIMEOUT, default 300 s) is an error saying so, since a rank that
// died or diverged would otherwise hang the others.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../engine/core/tensor.hpp"

namespace tg::dist {

enum class ReduceOp { sum, average, max, min };

bool built_with_mpi();
int rank();
int world_size();
inline bool is_main() { return rank() == 0; }
double timeout_seconds();

// Ends this program with `status`, and with it the whole run: a rank that
// fails alone would otherwise leave the others waiting in their next
// collective until the timeout. In a world of one, std::exit(status).
[[noreturn]] void abort(int status);

void barrier();
// t replaced in place by root's values on every rank.
void broadcast(Tensor& t, int root = 0);
// t replaced in place by the elementwise reduction of every rank's t.
void allreduce(Tensor& t, ReduceOp op = ReduceOp::sum);
// One number per rank, in rank order, on every rank (metrics, counts).
std::vector<double> all_gather(double value);
std::vector<int64_t> all_gather(int64_t value);
// root's string on every rank.
std::string broadcast(const std::string& s, int root = 0);
// "" when `description` (lines) is the same on every rank; otherwise, on
// every rank, where it first differs: "rank 0 has '<line>', rank r '<line>'"
// on a rank that differs, "this rank's matches rank 0's; another rank's does
// not" on the others. What a program checks before ranks would diverge.
std::string difference_across_ranks(const std::string& description);

// An allreduce in flight (MPI_Iallreduce) over a buffer the caller keeps
// alive and leaves alone until wait() returns.
class Request {
public:
    Request() = default;
    Request(Request&& other) noexcept;
    Request& operator=(Request&& other) noexcept;
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    ~Request();  // waits (errors are swallowed there: call wait() to see them)
    bool pending() const { return handle_ != nullptr; }
    // Returns when done; an error after timeout_seconds(), naming `what`.
    void wait();
    // Whether it is done, without waiting. MPI moves a collective on only
    // inside MPI calls: testing now and then is what lets it overlap work.
    bool test();

private:
    friend Request allreduce_start(void* data, int64_t count, Dtype dtype, ReduceOp op, const std::string& what);
    void* handle_ = nullptr;  // the MPI requests (one per 2^30-element chunk)
    std::string what_;
};
// Starts an in-place sum (or max, min) of count elements at data over the ranks.
// average is a sum here: the caller divides.
Request allreduce_start(void* data, int64_t count, Dtype dtype, ReduceOp op, const std::string& what);

}  // namespace tg::dist
