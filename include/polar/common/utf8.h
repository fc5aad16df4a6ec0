// UTF-8 validation of input text (JSONL lines, prompt files, tokenizer corpora).
#pragma once

#include <cstddef>
#include <string>

namespace polar {

// True when `bytes` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
// otherwise *bad_offset (when given) is the byte offset of the first bad sequence.
bool is_valid_utf8(const std::string& bytes, size_t* bad_offset = nullptr);

}  // namespace polar
