// Packing groups into rows (first-fit decreasing; whole groups with a shared prefix) and
// splitting a step's groups into micro-batches by computed-token budget. Both are deterministic
// functions of their inputs.
#include "polar/data/batch.h"

#include <algorithm>
#include <initializer_list>
#include <numeric>

#include "polar/common/error.h"

namespace polar {

namespace {

// One unit to pack: a sequence prefix ++ candidate, or with a shared prefix a whole group.
struct Unit {
  int64_t group = 0;
  int64_t candidate = -1;  // -1: the whole group, prefix once
  int64_t length = 0;
};

struct Row {
  std::vector<int64_t> units;  // indices into the unit list, in fill order
  int64_t used = 0;
};

torch::Tensor to_tensor(std::vector<int64_t>& values) {
  const auto n = static_cast<int64_t>(values.size());
  if (n == 0) return torch::empty({0}, torch::kInt64);
  return torch::from_blob(values.data(), {n}, torch::kInt64).clone();
}

// Checks every group and lists the pairs in reward order (group 0 cand 0, cand 1, ...).
void check_groups_and_pairs(const std::vector<GroupRef>& groups, PackedBatch& batch,
                            std::vector<int64_t>& first_sequence) {
  std::vector<int64_t> pair_pos, pair_neg, pair_category, pos_index, neg_offsets{0};
  int64_t n_sequences = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GroupRef& group = groups[g];
    POLAR_CHECK(!group.candidates.empty(), "pack_groups: group ", g, " has no candidates");
    POLAR_CHECK(group.prefix.size >= 0 && (group.prefix.size == 0 || group.prefix.data),
                "pack_groups: group ", g, " has an invalid prefix span");
    first_sequence.push_back(n_sequences);
    for (size_t c = 0; c < group.candidates.size(); ++c) {
      const TokenSpan& span = group.candidates[c];
      POLAR_CHECK(span.size >= 0 && (span.size == 0 || span.data), "pack_groups: group ", g,
                  " candidate ", c, " has an invalid token span");
      // The reward is read at the last token, so an empty sequence has nowhere to read it.
      POLAR_CHECK(group.prefix.size + span.size > 0, "pack_groups: group ", g, " candidate ", c,
                  " is empty");
      if (c > 0) {
        pair_pos.push_back(first_sequence.back());
        pair_neg.push_back(n_sequences + static_cast<int64_t>(c));
        pair_category.push_back(group.category);
      }
    }
    n_sequences += static_cast<int64_t>(group.candidates.size());
    if (group.candidates.size() > 1) {  // a group with no negative has no pair
      pos_index.push_back(first_sequence.back());
      neg_offsets.push_back(static_cast<int64_t>(pair_neg.size()));
    }
  }
  batch.pair_pos = to_tensor(pair_pos);
  batch.pair_neg = to_tensor(pair_neg);
  batch.pair_category = to_tensor(pair_category);
  batch.pos_index = to_tensor(pos_index);
  batch.neg_offsets = to_tensor(neg_offsets);
  batch.n_sequences = n_sequences;
  batch.n_pairs = static_cast<int64_t>(pair_pos.size());
}

// First-fit decreasing; ties keep unit order (stable sort) so the layout is deterministic.
std::vector<Row> fill_rows(const std::vector<Unit>& units, int64_t row_tokens) {
  std::vector<int64_t> order(units.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return units[a].length > units[b].length; });
  std::vector<Row> rows;
  for (int64_t u : order) {
    const int64_t length = units[u].length;
    Row* target = nullptr;
    if (length <= row_tokens) {
      for (Row& row : rows) {
        if (row.used + length <= row_tokens) {
          target = &row;
          break;
        }
      }
    }
    if (!target) {  // a unit longer than a row gets a row of its own (nothing else fits)
      rows.emplace_back();
      target = &rows.back();
    }
    target->units.push_back(u);
    target->used += length;
  }
  return rows;
}

// The flat (B * T) id vectors being filled, and where the current row's next segment starts.
struct RowWriter {
  std::vector<int64_t> tokens, positions, segments, context, reward_index;
  int64_t base = 0, segment = 0;

  // Writes the spans as one new segment at positions first_position..; returns its id and
  // the flat index of its last token through *last.
  int64_t write(std::initializer_list<TokenSpan> spans, int64_t first_position,
                int64_t context_segment, int64_t* last) {
    ++segment;
    int64_t position = first_position;
    for (const TokenSpan& span : spans) {
      for (int64_t i = 0; i < span.size; ++i, ++base, ++position) {
        tokens[base] = span.data[i];
        positions[base] = position;
        segments[base] = segment;
        context[base] = context_segment;
      }
    }
    *last = base - 1;
    return segment;
  }
};

// Writes one unit; reward_index of sequence first_sequence + c is its last token.
void write_unit(const GroupRef& group, const Unit& unit, int64_t first_sequence, RowWriter& w) {
  const TokenSpan& prefix = group.prefix;
  int64_t last = -1;
  if (unit.candidate >= 0) {  // prefix ++ candidate as one sequence
    w.write({prefix, group.candidates[unit.candidate]}, 0, 0, &last);
    w.reward_index[first_sequence + unit.candidate] = last;
    return;
  }
  int64_t prefix_segment = 0, prefix_last = -1;
  if (prefix.size > 0) prefix_segment = w.write({prefix}, 0, 0, &prefix_last);
  for (size_t c = 0; c < group.candidates.size(); ++c) {
    const TokenSpan& candidate = group.candidates[c];
    // An empty candidate's sequence is the prefix alone, whose last state is the prefix's.
    last = prefix_last;
    if (candidate.size > 0) w.write({candidate}, prefix.size, prefix_segment, &last);
    w.reward_index[first_sequence + static_cast<int64_t>(c)] = last;
  }
}

// Every index tensor of the batch becomes a view of one int64 buffer, so the batch moves to
// the device in one copy.
void gather_into_storage(PackedBatch& batch, bool pinned) {
  const std::vector<torch::Tensor*> fields = index_tensors(batch);
  int64_t total = 0;
  for (const torch::Tensor* t : fields)
    if (t->defined()) total += t->numel();
  batch.storage =
      torch::empty({total}, torch::TensorOptions().dtype(torch::kInt64).pinned_memory(pinned));
  int64_t offset = 0;
  for (torch::Tensor* t : fields) {
    if (!t->defined()) continue;
    const int64_t n = t->numel();
    torch::Tensor view = batch.storage.slice(0, offset, offset + n).view(t->sizes());
    view.copy_(*t);
    *t = view;
    offset += n;
  }
}

}  // namespace

std::vector<torch::Tensor*> index_tensors(PackedBatch& b) {
  return {&b.tokens,       &b.positions,       &b.segments,           &b.context,
          &b.reward_index, &b.pair_pos,        &b.pair_neg,           &b.pair_category,
          &b.pos_index,    &b.neg_offsets,     &b.layout.token_index, &b.layout.cu_q,
          &b.layout.cu_k,  &b.layout.key_index};
}

int64_t group_tokens(const GroupRef& group, bool shared_prefix) {
  if (!shared_prefix) return group.total_tokens();
  int64_t total = group.prefix.size;
  for (const TokenSpan& c : group.candidates) total += c.size;
  return total;
}

PackedBatch pack_groups(const std::vector<GroupRef>& groups, const PackOptions& options) {
  POLAR_CHECK(options.row_tokens > 0, "pack_groups: row_tokens must be > 0, got ",
              options.row_tokens);
  POLAR_CHECK(!groups.empty(), "pack_groups: no groups to pack");
  PackedBatch batch;
  std::vector<int64_t> first_sequence;
  check_groups_and_pairs(groups, batch, first_sequence);

  std::vector<Unit> units;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto group = static_cast<int64_t>(g);
    if (options.shared_prefix) {
      units.push_back({group, -1, group_tokens(groups[g], true)});
      continue;
    }
    for (size_t c = 0; c < groups[g].candidates.size(); ++c)
      units.push_back(
          {group, static_cast<int64_t>(c), groups[g].prefix.size + groups[g].candidates[c].size});
  }
  const std::vector<Row> rows = fill_rows(units, options.row_tokens);
  int64_t width = 0;
  for (const Row& row : rows) width = std::max(width, row.used);
  const auto n_rows = static_cast<int64_t>(rows.size());

  RowWriter w;
  w.tokens.assign(n_rows * width, options.pad_id);
  w.positions.assign(n_rows * width, 0);
  w.segments.assign(n_rows * width, 0);
  w.context.assign(n_rows * width, 0);
  w.reward_index.assign(batch.n_sequences, -1);
  int64_t n_tokens = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    w.base = r * width;
    w.segment = 0;
    for (int64_t u : rows[r].units) {
      write_unit(groups[units[u].group], units[u], first_sequence[units[u].group], w);
      n_tokens += units[u].length;
    }
  }

  batch.tokens = to_tensor(w.tokens).view({n_rows, width});
  batch.positions = to_tensor(w.positions).view({n_rows, width});
  batch.segments = to_tensor(w.segments).view({n_rows, width});
  if (options.shared_prefix) batch.context = to_tensor(w.context).view({n_rows, width});
  batch.reward_index = to_tensor(w.reward_index);
  batch.n_tokens = n_tokens;
  batch.layout = attention_layout(batch.segments, batch.context);
  gather_into_storage(batch, options.pinned);
  return batch;
}

std::vector<std::pair<int64_t, int64_t>> split_micro_batches(const std::vector<GroupRef>& groups,
                                                             int64_t token_budget,
                                                             bool shared_prefix) {
  POLAR_CHECK(token_budget > 0, "split_micro_batches: token_budget must be > 0, got ",
              token_budget);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const auto n = static_cast<int64_t>(groups.size());
  int64_t begin = 0;
  int64_t used = 0;
  for (int64_t g = 0; g < n; ++g) {
    const int64_t tokens = group_tokens(groups[g], shared_prefix);
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
