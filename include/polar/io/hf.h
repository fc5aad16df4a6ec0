// Hugging Face interoperability: import of LlamaFor*/Qwen2For*/InternLM2For* directories and
// export to a directory that transformers/vLLM load.
#pragma once

#include <string>

#include <torch/types.h>

namespace polar {
struct LoadedModel;
}

namespace polar::io {

// True when `dir` holds a Hugging Face model (config.json with "architectures").
bool is_hf_directory(const std::string& dir);
// Imports weights, shape and tokenizer; a CausalLM gets a freshly initialised reward head.
LoadedModel import_hf(const std::string& dir, const torch::Device& device);

}  // namespace polar::io
