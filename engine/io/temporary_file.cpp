#include "engine/io/temporary_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "engine/core/error.hpp"

namespace tg::detail {

namespace {
std::atomic<uint64_t> temporary_counter{0};
}  // namespace

std::string temporary_name(const std::string& path)
{
    return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(temporary_counter++);
}

int remove_stale_temporaries(const std::string& path) noexcept
{
    namespace fs = std::filesystem;
    try {
        const fs::path p(path);
        const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
        const std::string prefix = p.filename().string() + ".tmp.";
        int removed = 0;
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            const char* digits = name.c_str() + prefix.size();
            char* rest = nullptr;
            errno = 0;
            const long pid = std::strtol(digits, &rest, 10);
            if (rest == digits || (*rest != '\0' && *rest != '.') || pid <= 0 || errno != 0) continue;
            // Alive (or not ours to ask): its save may be in progress.
            if (pid == long(::getpid()) || ::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;
            std::error_code rm;
            if (fs::remove(it->path(), rm)) ++removed;
        }
        return removed;
    } catch (...) {
        return 0;
    }
}

void replace_with_temporary(const char* op, const std::string& tmp, const std::string& path)
{
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        fail(op, ": cannot rename ", quote(tmp), " to ", quote(path), ": ", std::strerror(errno));
    const std::string parent = std::filesystem::path(path).parent_path().string();
    const int dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    remove_stale_temporaries(path);
}

}  // namespace tg::detail
