// The sentencepiece backend: a tokenizer.model file.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <unordered_set>

#include "backend.h"
#include "polar/common/error.h"

namespace polar {

namespace {

class SentencepieceBackend final : public TokenizerBackend {
 public:
  explicit SentencepieceBackend(const std::string& path) : source_(path) {
    serialized_ = read_file_bytes(path);
    auto status = sp_.LoadFromSerializedProto(serialized_);
    POLAR_CHECK(status.ok(), path, ": not a valid sentencepiece model: ", status.ToString());
    POLAR_CHECK(sp_.GetPieceSize() > 0, path, ": sentencepiece model has an empty vocabulary");
  }

  const char* name() const override { return "sentencepiece"; }
  const char* file_name() const override { return "tokenizer.model"; }
  bool fixes_bos() const override { return false; }
  int32_t default_pad(const SpecialTokens&) const override { return 0; }
  bool implied_without_name() const override { return true; }
  const std::string& bytes() const override { return serialized_; }
  const std::string& source() const override { return source_; }

  void encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                        std::vector<size_t>& ends) const override {
    sentencepiece::ImmutableSentencePieceText spt;
    auto status = sp_.Encode(absl::string_view(text.data(), text.size()), spt.mutable_proto());
    POLAR_CHECK(status.ok(), source_, ": encode failed: ", status.ToString());
    size_t last = 0;
    for (size_t i = 0; i < spt.pieces_size(); ++i) {
      const auto piece = spt.pieces(static_cast<int>(i));
      last = std::max<size_t>(last, std::min<size_t>(piece.end(), text.size()));
      ids.push_back(static_cast<int32_t>(piece.id()));
      ends.push_back(last);
    }
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    auto status = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    POLAR_CHECK(status.ok(), source_, ": decode failed: ", status.ToString());
    return text;
  }

  std::string id_to_piece(int32_t id) const override { return sp_.IdToPiece(id); }

  // -1 when the piece is not in the vocabulary (sentencepiece maps unknown pieces to unk).
  int32_t piece_to_id(const std::string& piece) const override {
    const int id = sp_.PieceToId(piece);
    if (id < 0 || id >= sp_.GetPieceSize() || sp_.IdToPiece(id) != piece) return -1;
    return id;
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }

  SpecialTokens default_specials() const override {
    SpecialTokens s;
    s.bos = sp_.bos_id() >= 0 ? sp_.bos_id() : piece_to_id("<s>");
    s.eos = sp_.eos_id() >= 0 ? sp_.eos_id() : piece_to_id("</s>");
    s.pad = sp_.pad_id() >= 0 ? sp_.pad_id() : piece_to_id("<pad>");
    if (s.pad < 0) s.pad = sp_.unk_id() >= 0 ? sp_.unk_id() : piece_to_id("<unk>");
    return s;
  }

  // The strings Hugging Face tokenizers split out of text: control and unknown pieces and the
  // special ids.
  std::vector<std::pair<std::string, int32_t>> special_pieces(
      const SpecialTokens& s) const override {
    std::vector<std::pair<std::string, int32_t>> out;
    std::unordered_set<int32_t> seen;
    auto add = [&](int32_t id) {
      if (id < 0 || id >= sp_.GetPieceSize() || !seen.insert(id).second) return;
      const std::string& piece = sp_.IdToPiece(id);
      if (!piece.empty()) out.emplace_back(piece, id);
    };
    for (int32_t id = 0; id < sp_.GetPieceSize(); ++id) {
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) add(id);
    }
    for (int32_t id : {s.bos, s.eos, s.pad, s.reward_sep, s.reward}) add(id);
    return out;
  }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  std::string serialized_;  // the model proto, written back by save()
  std::string source_;
};

}  // namespace

std::shared_ptr<const TokenizerBackend> load_sentencepiece_backend(const std::string& path) {
  return std::make_shared<SentencepieceBackend>(path);
}

}  // namespace polar
