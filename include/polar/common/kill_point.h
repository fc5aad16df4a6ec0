// Crash-test hook: a named point in a long write (a checkpoint save) where a test can make this
// process die as `kill -9` would, to prove that nothing half-written is ever loaded.
#pragma once

namespace polar {

// POLAR_KILL_AT=<name>[@<n>] makes the process SIGKILL itself the n-th time (default: the first)
// it reaches the point `name`; POLAR_KILL_RANK=<r> restricts that to the process whose RANK is r.
// Only the first round of a launcher fires (TORCHELASTIC_RESTART_COUNT unset or 0), so the
// restarted workers, which inherit the variables, run through. A no-op when POLAR_KILL_AT is unset.
void kill_point(const char* name);

}  // namespace polar
