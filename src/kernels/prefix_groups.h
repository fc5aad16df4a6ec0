// Shared-prefix candidates on the CPU (internal to varlen_attention_padded): all candidates of
// a group attend to the group's prefix keys in one unmasked call that reads those keys in place,
// each candidate attends causally to its own keys in padded chunks, and the two parts are merged
// exactly by their log-sum-exps. Groups of one prefix length may share a call (a bucket).
#pragma once

#include <torch/custom_class.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "block_spans.h"

namespace polar::kernels {

// Blocks with as many queries as keys, padded to one length lq: one causal call.
struct CausalChunk {
  std::vector<BlockSpan> spans;
  int64_t lq = 0;
};

// Groups such blocks into chunks by length: a block joins the current chunk while the padded
// work grown by it costs less than one more call (call_cost: a call's overhead in query-key
// scores).
std::vector<CausalChunk> make_causal_chunks(std::vector<BlockSpan> spans, int64_t call_cost);

// Groups with one prefix length, their queries padded to the largest group's count: one call,
// queries (groups, Hq, queries, D) over prefix keys (groups, Hkv, prefix, D).
struct PrefixBucket {
  int64_t groups = 0, queries = 0, prefix = 0;
  int64_t q_begin = -1, k_begin = -1;  // one group of consecutive rows: read in place
  torch::Tensor q_index, k_index;      // otherwise the rows of q / of k its slots read
};

// Everything the candidates' attention needs besides q, k and v. Own slots: the candidates'
// queries padded chunk by chunk (the output's rows); prefix slots: bucket by bucket, group by
// group, each group's queries in order.
struct PrefixGroupsPlan : torch::CustomClassHolder {
  std::vector<CausalChunk> own;
  std::vector<int64_t> own_sizes;          // slots per own chunk
  torch::Tensor own_q_index, own_k_index;  // own slot -> row of q / of k
  std::vector<PrefixBucket> buckets;
  torch::Tensor own_from_prefix;  // own slot -> prefix slot of the same query row
  torch::Tensor prefix_source;    // prefix slot -> own slot of the same query row
  torch::Tensor prefix_padding;   // the prefix slots that are padding (their gradient is zero)
  std::vector<int64_t> own_slot;  // q row -> its own slot (-1: not a candidate's query)
  int64_t own_slots = 0, prefix_slots = 0;
};

// Candidates are blocks with fewer queries than keys; key j of block b is row
// key_index[b.k_begin + j] of k (empty key_index: row b.k_begin + j). Candidates whose prefix
// rows are the same form a group.
c10::intrusive_ptr<PrefixGroupsPlan> plan_prefix_groups(const std::vector<BlockSpan>& candidates,
                                                        const std::vector<int64_t>& key_index,
                                                        int64_t n_q, int64_t call_cost,
                                                        torch::Device device);

// q (Nq, Hq, D), k/v (Nk, Hkv, D) on the CPU -> the candidates' output in own slots
// (own_slots, Hq, D), with autograd to q, k and v.
torch::Tensor prefix_group_attention(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v,
                                     const c10::intrusive_ptr<PrefixGroupsPlan>& plan);

}  // namespace polar::kernels
