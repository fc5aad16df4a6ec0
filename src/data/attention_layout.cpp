// Blocks for varlen attention and the equivalent dense mask, from segments and shared-prefix
// context ids. The blocks are derived on the CPU in one pass over the (B, T) ids.
#include "polar/data/attention_layout.h"

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "polar/common/error.h"

namespace polar {

using torch::Tensor;

namespace {

Tensor to_tensor(const std::vector<int64_t>& values) {
  return torch::tensor(torch::ArrayRef<int64_t>(values), torch::kInt64);
}

struct Run {
  int64_t first_real = -1;  // index of its first token among the real tokens
  int64_t length = 0;
};

struct LayoutBuilder {
  std::vector<int64_t> token_index, cu_q{0}, cu_k{0}, key_index;
  bool shared = false;
  int64_t max_q = 0, max_k = 0;

  void add_block(const Run& own, const Run* prefix) {
    if (prefix) {
      shared = true;
      for (int64_t i = 0; i < prefix->length; ++i) key_index.push_back(prefix->first_real + i);
    }
    for (int64_t i = 0; i < own.length; ++i) key_index.push_back(own.first_real + i);
    const int64_t keys = own.length + (prefix ? prefix->length : 0);
    cu_q.push_back(cu_q.back() + own.length);
    cu_k.push_back(cu_k.back() + keys);
    max_q = std::max(max_q, own.length);
    max_k = std::max(max_k, keys);
  }
};

}  // namespace

AttentionLayout attention_layout(const Tensor& segments_in, const Tensor& context_in) {
  POLAR_CHECK(segments_in.dim() == 2, "attention_layout: segments must be (B, T), got ",
              segments_in.sizes());
  const bool has_context = context_in.defined();
  POLAR_CHECK(!has_context || context_in.sizes() == segments_in.sizes(),
              "attention_layout: context has shape ", context_in.sizes(), ", segments have ",
              segments_in.sizes());
  const Tensor segments = segments_in.to(torch::kCPU, torch::kInt64).contiguous();
  const Tensor context =
      has_context ? context_in.to(torch::kCPU, torch::kInt64).contiguous() : Tensor();
  const int64_t B = segments.size(0), T = segments.size(1);
  const int64_t* seg = segments.data_ptr<int64_t>();
  const int64_t* ctx = has_context ? context.data_ptr<int64_t>() : nullptr;

  LayoutBuilder out;
  std::vector<Run> runs;  // by segment id, for the current row
  for (int64_t r = 0; r < B; ++r) {
    runs.assign(static_cast<size_t>(T + 1), Run{});
    int64_t t = 0;
    while (t < T) {
      const int64_t id = seg[r * T + t];
      POLAR_CHECK(id >= 0 && id <= T, "attention_layout: row ", r, " token ", t, " has segment ",
                  id, " (expected 0..", T, ")");
      if (id == 0) {
        ++t;
        continue;
      }
      const int64_t c = ctx ? ctx[r * T + t] : 0;
      Run& run = runs[static_cast<size_t>(id)];
      POLAR_CHECK(run.first_real < 0, "attention_layout: row ", r, " segment ", id,
                  " is not one contiguous run");
      run.first_real = static_cast<int64_t>(out.token_index.size());
      for (; t < T && seg[r * T + t] == id; ++t) {
        POLAR_CHECK(!ctx || ctx[r * T + t] == c, "attention_layout: row ", r, " token ", t,
                    " changes context inside segment ", id);
        out.token_index.push_back(r * T + t);
        ++run.length;
      }
      const Run* prefix = nullptr;
      if (c != 0 && c != id) {
        POLAR_CHECK(c > 0 && c <= T && runs[static_cast<size_t>(c)].first_real >= 0,
                    "attention_layout: row ", r, " segment ", id, " has context ", c,
                    ", which is no earlier segment of the row");
        prefix = &runs[static_cast<size_t>(c)];
      }
      out.add_block(run, prefix);
    }
  }

  AttentionLayout layout;
  const auto n_real = static_cast<int64_t>(out.token_index.size());
  layout.all_tokens = n_real == B * T;
  layout.token_index =
      layout.all_tokens ? torch::arange(n_real, torch::kInt64) : to_tensor(out.token_index);
  layout.cu_q = to_tensor(out.cu_q);
  layout.cu_k = to_tensor(out.cu_k);
  if (out.shared) layout.key_index = to_tensor(out.key_index);
  layout.max_q = out.max_q;
  layout.max_k = out.max_k;
  layout.rows = B;
  layout.cols = T;
  return layout;
}

Tensor attention_mask(const Tensor& segments, const Tensor& context) {
  const int64_t T = segments.size(1);
  const auto opts = torch::TensorOptions().dtype(torch::kBool).device(segments.device());
  Tensor visible = segments.unsqueeze(2) == segments.unsqueeze(1);  // (B, T, T): same segment
  if (context.defined()) {
    // A query with context c also sees every key of segment c (its shared prefix).
    visible =
        visible | ((context.unsqueeze(2) == segments.unsqueeze(1)) & (context > 0).unsqueeze(2));
  }
  const Tensor causal = torch::ones({T, T}, opts).tril();
  const Tensor real_query = (segments > 0).unsqueeze(2);  // (B, T, 1)
  const Tensor self = torch::eye(T, opts);
  return ((visible & causal & real_query) | self).unsqueeze(1);  // (B, 1, T, T)
}

}  // namespace polar
