// Where in a model the op that is running was called from: the module path
// ("features.3", as in named_parameters) and the module's class ("Conv2d").
//
// nn::Module enters a scope for each module call; every tape entry records
// the scope it was made in (one pointer), so anomaly messages and tg::to_dot
// can say which layer an op belongs to. Scopes are interned and never freed:
// there are as many as distinct module paths, not module calls.
#pragma once

#include <string>
#include <string_view>

namespace tg {

struct ModuleScope {
    const ModuleScope* parent = nullptr;
    std::string path;  // "" for the outermost module
    std::string kind;  // the module's class
    // "features.3 (Conv2d)"; the outermost module is "(Sequential)".
    std::string describe() const { return path.empty() ? "(" + kind + ")" : path + " (" + kind + ")"; }
};

namespace detail {
extern thread_local const ModuleScope* module_scope;
}

// The scope of the module running on this thread (null outside any module).
inline const ModuleScope* current_module_scope() { return detail::module_scope; }

// Enters child `name` (of class `kind`) of the current scope, for its lifetime.
class ModuleScopeGuard {
public:
    ModuleScopeGuard(std::string_view name, std::string_view kind);
    ~ModuleScopeGuard() { detail::module_scope = previous_; }
    ModuleScopeGuard(const ModuleScopeGuard&) = delete;
    ModuleScopeGuard& operator=(const ModuleScopeGuard&) = delete;

private:
    const ModuleScope* previous_;
};

}  // namespace tg
