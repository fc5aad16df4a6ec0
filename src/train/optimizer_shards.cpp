// Sharded optimizer checkpoints (see optimizer_shards.h).
#include "optimizer_shards.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <regex>

#include "polar/common/error.h"
#include "polar/train/optimizer.h"

namespace fs = std::filesystem;

namespace polar {
namespace {

const std::regex kShardName(R"(optimizer-shard-(\d{5})-of-(\d{5})\.pt)");

// (world, files by rank) of the shard files in `dir`.
std::pair<int, std::map<int, fs::path>> list_shards(const std::string& dir) {
  int world = 0;
  std::map<int, fs::path> files;
  if (!fs::is_directory(dir)) return {0, files};
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, kShardName)) continue;
    const int rank = std::stoi(m[1].str()), of = std::stoi(m[2].str());
    POLAR_CHECK(world == 0 || world == of, dir, ": optimizer shards of different world sizes (",
                world, " and ", of, ")");
    world = of;
    files[rank] = e.path();
  }
  return {world, files};
}

torch::Tensor read_tensor(torch::serialize::InputArchive& archive, const char* key,
                          const fs::path& file) {
  torch::Tensor t;
  POLAR_CHECK(archive.try_read(key, t), file.string(), ": no \"", key, "\" in the optimizer shard");
  return t;
}

}  // namespace

bool has_optimizer_shards(const std::string& checkpoint_dir) {
  return list_shards(checkpoint_dir).first > 0;
}

void write_optimizer_shard(const std::string& staging_dir, int rank, int world,
                           const dist::ShardLayout& layout,
                           const std::vector<torch::Tensor>& params, const ShardState& state) {
  std::vector<int64_t> pieces, numels;
  for (const auto& p : layout.pieces)
    pieces.insert(pieces.end(), {p.param, p.param_offset, p.length, p.shard_offset});
  for (const auto& p : params) numels.push_back(p.numel());
  torch::serialize::OutputArchive archive;
  archive.write("pieces", torch::tensor(pieces, torch::kInt64).view({-1, 4}));
  archive.write("param_numels", torch::tensor(numels, torch::kInt64));
  archive.write("step", torch::tensor({state.step}, torch::kInt64));
  archive.write("master", state.master.cpu());
  archive.write("exp_avg", state.exp_avg.cpu());
  archive.write("exp_avg_sq", state.exp_avg_sq.cpu());
  const fs::path path = fs::path(staging_dir) / optimizer_shard_file(rank, world);
  const std::string part = path.string() + ".part";
  try {
    archive.save_to(part);
    fs::rename(part, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(part, ec);
    throw;
  }
}

void read_optimizer_shards(const std::string& checkpoint_dir, const dist::ShardLayout& layout,
                           const std::vector<torch::Tensor>& params, ShardState& state) {
  const auto [world, files] = list_shards(checkpoint_dir);
  POLAR_CHECK(world > 0, checkpoint_dir,
              ": no optimizer shards (optimizer-shard-*.pt); a checkpoint written with ",
              "train.zero 0 resumes with train.zero 0");
  for (int r = 0; r < world; ++r) {
    POLAR_CHECK(files.count(r) == 1, checkpoint_dir, ": optimizer shard ",
                optimizer_shard_file(r, world), " is missing (the checkpoint was written by ",
                world, " ranks)");
  }
  // My pieces by parameter, to intersect with each file's pieces.
  std::vector<std::vector<const dist::ShardPiece*>> mine(params.size());
  for (const auto& p : layout.pieces) mine[static_cast<size_t>(p.param)].push_back(&p);
  const auto device = state.master.device();
  int64_t covered = 0, step = -1;
  torch::NoGradGuard no_grad;
  for (const auto& [rank, file] : files) {
    torch::serialize::InputArchive archive;
    archive.load_from(file.string());
    const auto numels = read_tensor(archive, "param_numels", file);
    POLAR_CHECK(numels.numel() == static_cast<int64_t>(params.size()), file.string(),
                ": written for ", numels.numel(), " parameters, the model has ", params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      POLAR_CHECK(numels[static_cast<int64_t>(i)].item<int64_t>() == params[i].numel(),
                  file.string(), ": parameter ", i, " has ",
                  numels[static_cast<int64_t>(i)].item<int64_t>(),
                  " elements there, the model has ", params[i].numel());
    }
    const int64_t file_step = read_tensor(archive, "step", file).item<int64_t>();
    POLAR_CHECK(step < 0 || step == file_step, file.string(), ": step ", file_step,
                ", other shards have ", step);
    step = file_step;
    const auto pieces = read_tensor(archive, "pieces", file).contiguous();
    const torch::Tensor src[3] = {read_tensor(archive, "master", file),
                                  read_tensor(archive, "exp_avg", file),
                                  read_tensor(archive, "exp_avg_sq", file)};
    torch::Tensor* dst[3] = {&state.master, &state.exp_avg, &state.exp_avg_sq};
    const int64_t* row = pieces.data_ptr<int64_t>();
    for (int64_t k = 0; k < pieces.size(0); ++k, row += 4) {
      const int64_t param = row[0], offset = row[1], length = row[2], at = row[3];
      POLAR_CHECK(param >= 0 && param < static_cast<int64_t>(params.size()) && offset >= 0 &&
                      length >= 0 &&
                      offset + length <= params[static_cast<size_t>(param)].numel() && at >= 0 &&
                      at + length <= src[0].numel(),
                  file.string(), ": piece ", k, " is out of range");
      for (const dist::ShardPiece* m : mine[static_cast<size_t>(param)]) {
        const int64_t lo = std::max(offset, m->param_offset);
        const int64_t hi = std::min(offset + length, m->param_offset + m->length);
        if (hi <= lo) continue;
        for (int t = 0; t < 3; ++t) {
          dst[t]
              ->narrow(0, m->shard_offset + (lo - m->param_offset), hi - lo)
              .copy_(src[t].narrow(0, at + (lo - offset), hi - lo).to(device));
        }
        covered += hi - lo;
      }
    }
  }
  POLAR_CHECK(covered == layout.numel, checkpoint_dir, ": the optimizer shards cover ", covered,
              " of this rank's ", layout.numel, " elements (overlapping or missing pieces)");
  state.step = step;
}

}  // namespace polar
