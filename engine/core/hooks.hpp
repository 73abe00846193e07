// Hooks: functions the engine calls at fixed points (a gradient arriving at a
// tensor, a module running), kept in lists a handle can remove from later.
//
// A hook list costs nothing until something is registered: the tensor or the
// tape entry holds a null pointer, and the engine tests it before anything else.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace tg {

class Tensor;

namespace detail {
// What a handle needs of a list: to take one entry out of it.
class HookListBase {
public:
    virtual ~HookListBase() = default;
    virtual void remove(uint64_t id) = 0;
};
}  // namespace detail

// Returned by every register_*hook: remove() takes the hook out again. Like
// PyTorch's RemovableHandle, dropping the handle does not remove the hook, and
// removing twice, or after the tensor or module is gone, does nothing.
class HookHandle {
public:
    HookHandle() = default;
    HookHandle(std::weak_ptr<detail::HookListBase> list, uint64_t id) : list_(std::move(list)), id_(id) {}
    void remove()
    {
        if (auto list = list_.lock()) list->remove(id_);
        list_.reset();
    }

private:
    std::weak_ptr<detail::HookListBase> list_;
    uint64_t id_ = 0;
};

namespace detail {

// Hooks of one kind, called in the order they were registered.
template <class Fn>
class HookList final : public HookListBase, public std::enable_shared_from_this<HookList<Fn>> {
public:
    HookHandle add(Fn fn)
    {
        hooks_.emplace_back(++last_id_, std::move(fn));
        return HookHandle(this->weak_from_this(), last_id_);
    }
    void remove(uint64_t id) override
    {
        std::erase_if(hooks_, [id](const auto& h) { return h.first == id; });
    }
    bool empty() const { return hooks_.empty(); }
    // A copy: a hook may remove itself or register another while the list runs.
    std::vector<Fn> snapshot() const
    {
        std::vector<Fn> fns;
        fns.reserve(hooks_.size());
        for (const auto& h : hooks_) fns.push_back(h.second);
        return fns;
    }

private:
    std::vector<std::pair<uint64_t, Fn>> hooks_;
    uint64_t last_id_ = 0;
};

// Made on first use, so a list is only ever there when someone registered.
template <class Fn>
HookHandle add_hook(std::shared_ptr<HookList<Fn>>& list, Fn fn)
{
    if (!list) list = std::make_shared<HookList<Fn>>();
    return list->add(std::move(fn));
}

}  // namespace detail

// A tensor's gradient hook: it sees the gradient with respect to the tensor
// and returns a replacement, or an undefined Tensor to keep it.
using GradHook = std::function<Tensor(const Tensor& grad)>;
using GradHookList = detail::HookList<GradHook>;
// A leaf's post-accumulate hook: it sees the leaf once a backward has added
// all of that backward's gradient into its grad() (what a data-parallel
// wrapper waits for before it sends the gradient away).
using PostAccumulateGradHook = std::function<void(const Tensor& leaf)>;
using PostAccumulateGradHookList = detail::HookList<PostAccumulateGradHook>;

}  // namespace tg
