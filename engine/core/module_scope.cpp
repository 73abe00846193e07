#include "engine/core/module_scope.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <tuple>

namespace tg {

thread_local const ModuleScope* detail::module_scope = nullptr;

namespace {
const ModuleScope* intern(const ModuleScope* parent, std::string_view name, std::string_view kind)
{
    using Key = std::tuple<const ModuleScope*, std::string, std::string>;
    static std::mutex mutex;
    static std::map<Key, std::unique_ptr<ModuleScope>, std::less<>> scopes;
    Key key{parent, std::string(name), std::string(kind)};
    std::lock_guard lock(mutex);
    auto& scope = scopes[key];
    if (!scope) {
        scope = std::make_unique<ModuleScope>();
        scope->parent = parent;
        scope->kind = kind;
        if (parent && !parent->path.empty()) scope->path = parent->path + ".";
        scope->path += name;
    }
    return scope.get();
}
}  // namespace

ModuleScopeGuard::ModuleScopeGuard(std::string_view name, std::string_view kind) : previous_(detail::module_scope)
{
    detail::module_scope = intern(previous_, name, kind);
}

}  // namespace tg
