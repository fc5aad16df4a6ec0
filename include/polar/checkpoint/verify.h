// Checkpoint integrity: a CRC-32 per tensor file, written at save (checksums.json) and checked
// at load, so flipped bits are reported instead of scored; a finiteness check of loaded weights;
// and removal of the temporaries that a killed save leaves behind.
#pragma once

#include <cstdint>
#include <string>

#include "polar/model/reward_model.h"

namespace polar {

inline constexpr const char* kChecksumsFile = "checksums.json";

// Writes DIR/checksums.json with the size and CRC-32 of every tensor file directly in `dir`
// (*.safetensors, *.pt, *.bin).
void write_checkpoint_checksums(const std::string& dir);

// Checks every file listed in DIR/checksums.json; throws naming the file that is missing, has
// another size, or another CRC-32. A checkpoint without checksums.json (written before they
// existed, or by another tool) is accepted with a warning.
void verify_checkpoint_checksums(const std::string& dir);

// Throws naming the first parameter holding a NaN or an infinity (and how many it holds).
void check_weights_finite(RewardModel& model, const std::string& where);

// Removes NAME.tmp-PID and NAME.old-PID directories and FILE.tmp.PID files directly in
// `run_dir` whose process PID no longer runs (a save killed midway), and every NAME.staging
// directory (a sharded save that did not complete; call only between saves). Returns how many.
int64_t remove_stale_temporaries(const std::string& run_dir);

}  // namespace polar
