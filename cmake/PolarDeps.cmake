# Finds LibTorch (the project venv's torch wheel unless Torch_DIR/CMAKE_PREFIX_PATH says otherwise)
# and the Debian-packaged libraries, and exposes LibTorch as the imported target polar::torch.
find_package(Threads REQUIRED)

if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  set(_polar_venv_python "${CMAKE_CURRENT_SOURCE_DIR}/.venv/bin/python")
  if(NOT EXISTS "${_polar_venv_python}")
    set(_polar_venv_python "python3")
  endif()
  execute_process(COMMAND "${_polar_venv_python}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _polar_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _polar_torch_rc ERROR_QUIET)
  if(_polar_torch_rc EQUAL 0 AND _polar_torch_prefix)
    list(APPEND CMAKE_PREFIX_PATH "${_polar_torch_prefix}")
  endif()
endif()

# A CUDA build of LibTorch asks for the CUDA toolkit; this flag keeps its nvrtc/cudnn probes quiet.
set(CAFFE2_USE_CUDNN OFF CACHE BOOL "")
# A CUDA LibTorch's package config appends its own -gencode list (guessed from this machine) to
# CMAKE_CUDA_FLAGS; those are for torch extensions. The kernels set their architectures per
# target (POLAR_CUDA_ARCHITECTURES), so the flags are put back to what the user gave.
set(_polar_user_cuda_flags "${CMAKE_CUDA_FLAGS}")
find_package(Torch REQUIRED)
set(CMAKE_CUDA_FLAGS "${_polar_user_cuda_flags}")
message(STATUS "polar: LibTorch ${Torch_VERSION} from ${Torch_DIR}")

add_library(polar_torch INTERFACE)
target_link_libraries(polar_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(polar_torch INTERFACE ${TORCH_INCLUDE_DIRS})
separate_arguments(_polar_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(polar_torch INTERFACE ${_polar_torch_flags})
# The wheel's libtorch.so exports its own copies of std::filesystem (built with a newer GCC);
# listing libstdc++ first among the DT_NEEDED entries makes our calls bind to the system copy.
target_link_options(polar_torch INTERFACE "LINKER:--push-state,--no-as-needed" "-lstdc++" "LINKER:--pop-state")
add_library(polar::torch ALIAS polar_torch)

find_package(nlohmann_json 3 REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)  # SHA-256 of tokenizer fingerprints
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
# tokenizer.json tokenizers: PCRE2 (with its JIT) runs the pre-tokenizer split patterns, utf8proc
# the NFC/NFKC normalizers.
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
# HTTP (`polar serve`, the OpenAI-compatible sampling client): Debian's cpp-httplib is a compiled
# library whose header must be used with the feature macros it was built with (its .pc file).
pkg_check_modules(HTTPLIB REQUIRED cpp-httplib)
add_library(sentencepiece INTERFACE)
target_link_libraries(sentencepiece INTERFACE PkgConfig::SENTENCEPIECE)
# zlib: CRC-32 of checkpoint tensor files and .jsonl.gz inputs; zstd: .jsonl.zst inputs (read as streams).
find_package(ZLIB REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)

# The torch wheel ships fmt 12 headers under its include root, which would shadow Debian's fmt 9
# that libspdlog was built against. A shim directory placed first makes <fmt/...> mean Debian's.
# POLAR_FMT_INCLUDE: the directory holding that fmt/ (e.g. .deps/root/usr/include for unpacked debs).
set(POLAR_FMT_INCLUDE "/usr/include" CACHE PATH "Directory that holds the fmt/ headers spdlog was built against")
if(NOT EXISTS "${POLAR_FMT_INCLUDE}/fmt/format.h")
  message(FATAL_ERROR "polar: no fmt headers at ${POLAR_FMT_INCLUDE}/fmt (install libfmt-dev or set POLAR_FMT_INCLUDE)")
endif()
set(POLAR_FMT_SHIM "${CMAKE_BINARY_DIR}/fmt-shim")
file(MAKE_DIRECTORY "${POLAR_FMT_SHIM}")
set(_polar_fmt_link "")
if(IS_SYMLINK "${POLAR_FMT_SHIM}/fmt")
  file(READ_SYMLINK "${POLAR_FMT_SHIM}/fmt" _polar_fmt_link)
endif()
if(NOT _polar_fmt_link STREQUAL "${POLAR_FMT_INCLUDE}/fmt")
  file(REMOVE "${POLAR_FMT_SHIM}/fmt")
  file(CREATE_LINK "${POLAR_FMT_INCLUDE}/fmt" "${POLAR_FMT_SHIM}/fmt" SYMBOLIC)
endif()
add_library(polar_fmt_shim INTERFACE)
target_include_directories(polar_fmt_shim BEFORE INTERFACE "${POLAR_FMT_SHIM}")
