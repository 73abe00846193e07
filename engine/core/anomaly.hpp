// Anomaly detection, like torch.autograd.detect_anomaly: while a guard is
// alive on a thread, the output of every op that runs there and every
// gradient a backward rule returns is scanned, and the first NaN or ±Inf
// raises a tg::Error naming the op, its input shapes, the module that ran it
// and, inside a backward, the forward op whose rule was running.
//
//     {
//         tg::DetectAnomalyGuard anomaly;
//         loss = tg::cross_entropy(model(x), y);
//         loss.backward();  // throws at the first non-finite value
//     }
//
// Off (the default), an op pays one thread-local load. On, each op output is
// read once more: a debugging mode, not a training one.
#pragma once

#include "autograd.hpp"
#include "tensor.hpp"

namespace tg {

struct AnomalyOptions {
    bool nan = true;  // a NaN is an anomaly
    bool inf = true;  // so is ±Inf (off for models that use -inf as a mask)
};

class DetectAnomalyGuard {
public:
    explicit DetectAnomalyGuard(AnomalyOptions options = {});
    ~DetectAnomalyGuard();
    DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
    DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

private:
    AnomalyOptions options_;
    const AnomalyOptions* previous_;
};

bool anomaly_detection_enabled();

// (The checks the engine calls are declared with the tape, in autograd.hpp.)

}  // namespace tg
