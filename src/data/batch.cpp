// Packing groups into rows (first-fit decreasing) and splitting a step's groups into
// micro-batches by token budget. Both are deterministic functions of their inputs.
#include "polar/data/batch.h"

#include <algorithm>
#include <numeric>

#include "polar/common/error.h"

namespace polar {

namespace {

// One sequence to pack: prefix ++ candidate, read straight from the group's spans.
struct Sequence {
  const GroupRef* group = nullptr;
  int64_t candidate = 0;
  int64_t length = 0;
};

struct Row {
  std::vector<int64_t> sequences;  // indices into the sequence list, in fill order
  int64_t used = 0;
};

torch::Tensor to_tensor(std::vector<int64_t>& values) {
  const auto n = static_cast<int64_t>(values.size());
  if (n == 0) return torch::empty({0}, torch::kInt64);
  return torch::from_blob(values.data(), {n}, torch::kInt64).clone();
}

}  // namespace

PackedBatch pack_groups(const std::vector<GroupRef>& groups, const PackOptions& options) {
  POLAR_CHECK(options.row_tokens > 0, "pack_groups: row_tokens must be > 0, got ", options.row_tokens);
  POLAR_CHECK(!groups.empty(), "pack_groups: no groups to pack");

  // Sequences in reward order: group 0 cand 0, group 0 cand 1, ..., group 1 cand 0, ...
  std::vector<Sequence> sequences;
  std::vector<int64_t> pair_pos, pair_neg, pair_category;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GroupRef& group = groups[g];
    POLAR_CHECK(!group.candidates.empty(), "pack_groups: group ", g, " has no candidates");
    POLAR_CHECK(group.prefix.size >= 0 && (group.prefix.size == 0 || group.prefix.data),
                "pack_groups: group ", g, " has an invalid prefix span");
    const auto first = static_cast<int64_t>(sequences.size());
    for (size_t c = 0; c < group.candidates.size(); ++c) {
      const TokenSpan& span = group.candidates[c];
      POLAR_CHECK(span.size >= 0 && (span.size == 0 || span.data), "pack_groups: group ", g, " candidate ", c,
                  " has an invalid token span");
      const int64_t length = group.prefix.size + span.size;
      // The reward is read at the last token, so an empty sequence has nowhere to read it.
      POLAR_CHECK(length > 0, "pack_groups: group ", g, " candidate ", c, " is empty");
      sequences.push_back({&group, static_cast<int64_t>(c), length});
      if (c > 0) {
        pair_pos.push_back(first);
        pair_neg.push_back(first + static_cast<int64_t>(c));
        pair_category.push_back(group.category);
      }
    }
  }

  // First-fit decreasing; ties keep reward order (stable sort) so the layout is deterministic.
  std::vector<int64_t> order(sequences.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return sequences[a].length > sequences[b].length; });
  std::vector<Row> rows;
  for (int64_t s : order) {
    const int64_t length = sequences[s].length;
    Row* target = nullptr;
    if (length <= options.row_tokens) {
      for (Row& row : rows) {
        if (row.used + length <= options.row_tokens) {
          target = &row;
          break;
        }
      }
    }
    if (!target) {  // a sequence longer than a row gets a row of its own (nothing else fits)
      rows.emplace_back();
      target = &rows.back();
    }
    target->sequences.push_back(s);
    target->used += length;
  }

  int64_t width = 0;
  for (const Row& row : rows) width = std::max(width, row.used);
  const auto n_rows = static_cast<int64_t>(rows.size());

  std::vector<int64_t> tokens(n_rows * width, options.pad_id);
  std::vector<int64_t> positions(n_rows * width, 0);
  std::vector<int64_t> segments(n_rows * width, 0);
  std::vector<int64_t> reward_index(sequences.size(), -1);
  int64_t n_tokens = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    int64_t offset = 0;
    int64_t segment = 0;
    for (int64_t s : rows[r].sequences) {
      const Sequence& seq = sequences[s];
      const TokenSpan& prefix = seq.group->prefix;
      const TokenSpan& candidate = seq.group->candidates[seq.candidate];
      const int64_t base = r * width + offset;
      ++segment;
      for (int64_t i = 0; i < prefix.size; ++i) tokens[base + i] = prefix.data[i];
      for (int64_t i = 0; i < candidate.size; ++i) tokens[base + prefix.size + i] = candidate.data[i];
      for (int64_t i = 0; i < seq.length; ++i) {
        positions[base + i] = i;
        segments[base + i] = segment;
      }
      reward_index[s] = base + seq.length - 1;
      offset += seq.length;
      n_tokens += seq.length;
    }
  }

  PackedBatch batch;
  batch.tokens = to_tensor(tokens).view({n_rows, width});
  batch.positions = to_tensor(positions).view({n_rows, width});
  batch.segments = to_tensor(segments).view({n_rows, width});
  batch.reward_index = to_tensor(reward_index);
  batch.pair_pos = to_tensor(pair_pos);
  batch.pair_neg = to_tensor(pair_neg);
  batch.pair_category = to_tensor(pair_category);
  batch.n_sequences = static_cast<int64_t>(sequences.size());
  batch.n_pairs = static_cast<int64_t>(pair_pos.size());
  batch.n_tokens = n_tokens;
  return batch;
}

std::vector<std::pair<int64_t, int64_t>> split_micro_batches(const std::vector<GroupRef>& groups,
                                                             int64_t token_budget) {
  POLAR_CHECK(token_budget > 0, "split_micro_batches: token_budget must be > 0, got ", token_budget);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const auto n = static_cast<int64_t>(groups.size());
  int64_t begin = 0;
  int64_t used = 0;
  for (int64_t g = 0; g < n; ++g) {
    const int64_t tokens = groups[g].total_tokens();
    if (g > begin && used + tokens > token_budget) {
      ranges.emplace_back(begin, g);
      begin = g;
      used = 0;
    }
    used += tokens;
  }
  if (begin < n) ranges.emplace_back(begin, n);
  return ranges;
}

}  // namespace polar
