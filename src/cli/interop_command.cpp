// `polar import` (Hugging Face directory -> polar checkpoint) and `polar export` (checkpoint ->
// Hugging Face directory for transformers, vLLM and SGLang). The work is in io/hf.
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <cmath>

#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/checkpoint/lora_checkpoint.h"
#include "polar/cli/commands.h"
#include "polar/common/error.h"
#include "polar/model/family.h"
#include "polar/model/lora.h"

namespace polar::cli {

namespace {

struct ImportArgs {
  std::string from, output, tokenizer;
  uint64_t head_seed = 0;
};

struct ExportArgs {
  std::string checkpoint, output, format = "auto", dtype = "bf16", code_from;
  double max_shard_gb = 5.0;
  bool overwrite = false;
  bool lora_only = false;
};

// "Llama, Qwen2, InternLM2": the families of model/family.h.
std::string family_names() {
  std::string out;
  for (const auto& f : model_families())
    out += (out.empty() ? "" : ", ") + std::string(f.display_name);
  return out;
}

// Each export format with the classes it writes: "auto | hf-llama (LlamaForSequenceClassification,
// ...) | ...".
std::string format_help() {
  std::string out = "auto (the format of the model's own family)";
  for (const auto& format : export_formats()) {
    std::string classes;
    bool remote_code = false;
    for (const auto& f : model_families()) {
      if (format != f.export_format) continue;
      classes += (classes.empty() ? "" : ", ") + std::string(f.reward_class);
      remote_code = remote_code || f.remote_code;
    }
    out += " | " + format + " (" + classes + (remote_code ? ", remote code)" : ", no custom code)");
  }
  return out;
}

}  // namespace

void add_interop_commands(CLI::App& app) {
  auto im = std::make_shared<ImportArgs>();
  auto* i = app.add_subcommand("import", "convert a Hugging Face model directory (" +
                                             family_names() + ") into a polar checkpoint");
  i->add_option("--from", im->from,
                "Hugging Face directory (config.json, *.safetensors, tokenizer.model)")
      ->required();
  i->add_option("--output", im->output, "checkpoint directory to write")->required();
  i->add_option("--tokenizer", im->tokenizer,
                "tokenizer directory to use instead of the model's tokenizer.model");
  i->add_option("--head-seed", im->head_seed,
                "seed of the fresh reward head of a *ForCausalLM model");
  i->callback([im] {
    HfImportOptions options;
    options.tokenizer_dir = im->tokenizer;
    options.head_seed = im->head_seed;
    LoadedModel lm = import_hf(im->from, torch::kCPU, options);
    save_checkpoint(im->output,
                    CheckpointContents{&lm.model, &lm.tokenizer, &lm.config, nullptr, nullptr, {}});
    spdlog::info("wrote checkpoint {} ({} parameters)", im->output, lm.shape.num_parameters());
  });

  auto ex = std::make_shared<ExportArgs>();
  auto* e = app.add_subcommand(
      "export", "write a checkpoint as a Hugging Face directory (transformers, vLLM, SGLang)");
  e->add_option("--checkpoint", ex->checkpoint, "checkpoint directory (e.g. runs/x/final)")
      ->required();
  e->add_option("--output", ex->output, "directory to write")->required();
  e->add_option("--format", ex->format, format_help());
  e->add_option("--dtype", ex->dtype, "bf16 | fp32 (fp32 reproduces `polar score` exactly)");
  e->add_option("--max-shard-size", ex->max_shard_gb, "largest safetensors shard, in GiB");
  e->add_option("--code-from", ex->code_from,
                "a format with remote code: copy that code (*.py) from this directory");
  e->add_flag("--overwrite", ex->overwrite, "replace a non-empty output directory");
  e->add_flag("--lora-only", ex->lora_only,
              "a LoRA checkpoint: write a peft adapter directory (adapter_config.json, "
              "adapter_model.safetensors) instead of the merged model");
  e->callback([ex] {
    POLAR_CHECK(std::isfinite(ex->max_shard_gb) && ex->max_shard_gb > 0,
                "--max-shard-size: expected GiB > 0, got ", ex->max_shard_gb);
    HfExportOptions options;
    options.format = ex->format;
    options.dtype = ex->dtype;
    options.code_from = ex->code_from;
    options.overwrite = ex->overwrite;
    options.max_shard_bytes =
        static_cast<uint64_t>(ex->max_shard_gb * static_cast<double>(1ull << 30));
    LoadedModel lm = load_model(ex->checkpoint, torch::kCPU);
    if (ex->lora_only) {
      export_peft_adapter(lm, ex->output, ex->format, ex->overwrite);
      return;
    }
    if (has_lora(*lm.model)) {  // W + (alpha / rank) B A: the usual layouts, nothing new to load
      merge_lora(*lm.model);
      spdlog::info("merged the LoRA adapters into the base weights");
    }
    export_hf(lm, ex->output, options);
  });
}

}  // namespace polar::cli
