// Precompiled header shared by every unit that includes LibTorch: the heavy, stable headers.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <string>
#include <vector>
#include <memory>
