// The temporaries a save writes before renaming them into place (checkpoints,
// .npy): a name no other saver uses, and the removal of those that a killed
// process left behind.
#pragma once

#include <string>

namespace tg::detail {

// "<path>.tmp.<pid>.<n>": the process id and a counter of this process, so
// two threads or processes saving to one path never share a temporary (it is
// also created exclusively, O_EXCL).
std::string temporary_name(const std::string& path);

// Removes the temporaries of `path` whose process is gone (a save killed
// mid-write); those of running processes, this one included, are left alone.
// Returns how many it removed. Never throws: a leftover is not worth failing
// a save that succeeded.
int remove_stale_temporaries(const std::string& path) noexcept;

// Puts the synced temporary `tmp` in place of `path` (a tg::Error naming `op`
// if the rename fails; the caller removes tmp then), makes the rename durable
// by syncing the directory, and removes the temporaries of killed saves.
void replace_with_temporary(const char* op, const std::string& tmp, const std::string& path);

}  // namespace tg::detail
