#include <torch/torch.h>
#include <spdlog/spdlog.h>
int main() { spdlog::info("x {}", torch::ones({2}).sum().item<float>()); }
