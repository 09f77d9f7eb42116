#include "common/code_packing.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace baq {
namespace {

__extension__ typedef unsigned __int128 Uint128;

constexpr uint64_t LowMask(int bits) {
  return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

// Little-endian bit stream over words of type Word: stream bit k is bit
// k % W of word k / W. Fields of up to 64 bits may straddle words.
template <typename Word>
class BitWriter {
 public:
  static constexpr int kWordBits = 8 * sizeof(Word);
  explicit BitWriter(std::vector<Word>& words) : words_(words) {}

  // REQUIRES: value < 2^width, width <= 64, room in `words`.
  void Write(uint64_t value, int width) {
    while (width > 0) {
      const int offset = static_cast<int>(position_ % kWordBits);
      const int take = std::min(width, kWordBits - offset);
      words_[position_ / kWordBits] |=
          static_cast<Word>((value & LowMask(take)) << offset);
      value = take >= 64 ? 0 : value >> take;
      width -= take;
      position_ += take;
    }
  }

 private:
  std::vector<Word>& words_;
  int64_t position_ = 0;
};

template <typename Word>
class BitReader {
 public:
  static constexpr int kWordBits = 8 * sizeof(Word);
  explicit BitReader(absl::Span<const Word> words) : words_(words) {}

  // REQUIRES: width <= 64 and that many bits left.
  uint64_t Read(int width) {
    uint64_t value = 0;
    for (int shift = 0; shift < width;) {
      const int offset = static_cast<int>(position_ % kWordBits);
      const int take = std::min(width - shift, kWordBits - offset);
      const uint64_t chunk =
          (static_cast<uint64_t>(words_[position_ / kWordBits]) >> offset) &
          LowMask(take);
      value |= chunk << shift;
      shift += take;
      position_ += take;
    }
    return value;
  }

  // True when every bit from the position to the end of the words is zero.
  bool RestIsZero() {
    const int64_t end = static_cast<int64_t>(words_.size()) * kWordBits;
    while (position_ < end) {
      if (Read(static_cast<int>(std::min<int64_t>(64, end - position_))) != 0) {
        return false;
      }
    }
    return true;
  }

 private:
  absl::Span<const Word> words_;
  int64_t position_ = 0;
};

absl::Status CheckBits(int bits) {
  if (bits < 1 || bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("bits must be in 1..8, got ", bits));
  }
  return absl::OkStatus();
}

absl::Status CheckCodes(absl::Span<const uint8_t> codes, int32_t levels) {
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] >= levels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "code ", static_cast<int>(codes[i]), " at ", i, " >= ", levels));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckWordCount(size_t got, int64_t want) {
  if (static_cast<int64_t>(got) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", want, " packed words, got ", got));
  }
  return absl::OkStatus();
}

int BitLength(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }

}  // namespace

int64_t FixedWidthPackedWords(int64_t count, int bits) {
  return (count * bits + 31) / 32;
}

absl::StatusOr<std::vector<uint32_t>> PackFixedWidth(
    absl::Span<const uint8_t> codes, int bits) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  if (absl::Status s = CheckCodes(codes, 1 << bits); !s.ok()) return s;
  std::vector<uint32_t> words(FixedWidthPackedWords(codes.size(), bits), 0);
  BitWriter<uint32_t> writer(words);
  for (uint8_t c : codes) writer.Write(c, bits);
  return words;
}

absl::StatusOr<std::vector<uint8_t>> UnpackFixedWidth(
    absl::Span<const uint32_t> words, int bits, int64_t count) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  if (count < 0) return absl::InvalidArgumentError("negative count");
  if (absl::Status s =
          CheckWordCount(words.size(), FixedWidthPackedWords(count, bits));
      !s.ok()) {
    return s;
  }
  std::vector<uint8_t> codes(count);
  BitReader<uint32_t> reader(words);
  for (uint8_t& c : codes) c = static_cast<uint8_t>(reader.Read(bits));
  if (!reader.RestIsZero()) {
    return absl::DataLossError("non-zero padding after the last code");
  }
  return codes;
}

absl::StatusOr<std::vector<uint32_t>> PackGptqQweight(
    absl::Span<const uint8_t> codes, int64_t out_features, int64_t in_features,
    int bits) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  if (out_features < 0 || in_features < 0 ||
      static_cast<int64_t>(codes.size()) != out_features * in_features ||
      in_features * bits % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        codes.size(), " codes for [", out_features, ", ", in_features, "] at ",
        bits, " bits (in_features * bits must be a multiple of 32)"));
  }
  const int64_t rows = in_features * bits / 32;
  std::vector<uint32_t> qweight(rows * out_features, 0);
  for (int64_t o = 0; o < out_features; ++o) {
    absl::StatusOr<std::vector<uint32_t>> column =
        PackFixedWidth(codes.subspan(o * in_features, in_features), bits);
    if (!column.ok()) return column.status();
    for (int64_t r = 0; r < rows; ++r)
      qweight[r * out_features + o] = (*column)[r];
  }
  return qweight;
}

absl::StatusOr<std::vector<uint8_t>> UnpackGptqQweight(
    absl::Span<const uint32_t> qweight, int64_t out_features,
    int64_t in_features, int bits) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  if (out_features < 0 || in_features < 0 || in_features * bits % 32 != 0 ||
      static_cast<int64_t>(qweight.size()) !=
          in_features * bits / 32 * out_features) {
    return absl::InvalidArgumentError(
        absl::StrCat(qweight.size(), " qweight words for [", out_features, ", ",
                     in_features, "] at ", bits, " bits"));
  }
  const int64_t rows = in_features * bits / 32;
  std::vector<uint8_t> codes(out_features * in_features);
  std::vector<uint32_t> column(rows);
  for (int64_t o = 0; o < out_features; ++o) {
    for (int64_t r = 0; r < rows; ++r)
      column[r] = qweight[r * out_features + o];
    absl::StatusOr<std::vector<uint8_t>> unpacked =
        UnpackFixedWidth(column, bits, in_features);
    if (!unpacked.ok()) return unpacked.status();
    std::copy(unpacked->begin(), unpacked->end(),
              codes.begin() + o * in_features);
  }
  return codes;
}

absl::StatusOr<MixedRadixLayout> MixedRadixLayoutFor(int32_t levels) {
  if (levels < 1 || levels > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("levels must be in 1..256, got ", levels));
  }
  MixedRadixLayout best{levels, 1, 0};
  if (levels == 1) return best;  // one level: nothing to store
  best.bits_per_group = BitLength(static_cast<uint64_t>(levels - 1));
  Uint128 power = levels;
  for (int32_t t = 2;; ++t) {
    power *= static_cast<Uint128>(levels);
    if (((power - 1) >> 64) != 0) break;  // needs more than 64 bits
    const int w = BitLength(static_cast<uint64_t>(power - 1));
    // w / t < best.w / best.t, in integers.
    if (int64_t{w} * best.codes_per_group < int64_t{best.bits_per_group} * t) {
      best.codes_per_group = t;
      best.bits_per_group = w;
    }
  }
  return best;
}

int64_t MixedRadixPackedBits(const MixedRadixLayout& layout, int64_t count) {
  const int64_t groups =
      (count + layout.codes_per_group - 1) / layout.codes_per_group;
  return groups * layout.bits_per_group;
}

int64_t MixedRadixPackedWords(const MixedRadixLayout& layout, int64_t count) {
  return (MixedRadixPackedBits(layout, count) + 63) / 64;
}

absl::StatusOr<std::vector<uint64_t>> PackMixedRadix(
    absl::Span<const uint8_t> codes, int32_t levels) {
  absl::StatusOr<MixedRadixLayout> layout = MixedRadixLayoutFor(levels);
  if (!layout.ok()) return layout.status();
  if (absl::Status s = CheckCodes(codes, levels); !s.ok()) return s;
  const int64_t n = static_cast<int64_t>(codes.size());
  const int64_t t = layout->codes_per_group;
  std::vector<uint64_t> words(MixedRadixPackedWords(*layout, n), 0);
  if (layout->bits_per_group == 0) return words;
  BitWriter<uint64_t> writer(words);
  for (int64_t start = 0; start < n; start += t) {
    uint64_t value = 0;  // Horner from the top; missing codes are zeros
    for (int64_t i = std::min(n, start + t) - 1; i >= start; --i) {
      value = value * static_cast<uint64_t>(levels) + codes[i];
    }
    writer.Write(value, layout->bits_per_group);
  }
  return words;
}

absl::StatusOr<std::vector<uint8_t>> UnpackMixedRadix(
    absl::Span<const uint64_t> words, int32_t levels, int64_t count) {
  absl::StatusOr<MixedRadixLayout> layout = MixedRadixLayoutFor(levels);
  if (!layout.ok()) return layout.status();
  if (count < 0) return absl::InvalidArgumentError("negative count");
  if (absl::Status s =
          CheckWordCount(words.size(), MixedRadixPackedWords(*layout, count));
      !s.ok()) {
    return s;
  }
  std::vector<uint8_t> codes(count, 0);
  if (layout->bits_per_group == 0) return codes;
  const int64_t t = layout->codes_per_group;
  Uint128 limit = 1;  // L^t
  for (int64_t i = 0; i < t; ++i) limit *= static_cast<Uint128>(levels);
  BitReader<uint64_t> reader(words);
  for (int64_t start = 0; start < count; start += t) {
    uint64_t value = reader.Read(layout->bits_per_group);
    if (static_cast<Uint128>(value) >= limit) {
      return absl::DataLossError(absl::StrCat(
          "group at code ", start, " out of range for ", levels, " levels"));
    }
    for (int64_t i = start; i < start + t; ++i) {
      const uint64_t digit = value % static_cast<uint64_t>(levels);
      value /= static_cast<uint64_t>(levels);
      if (i < count) {
        codes[i] = static_cast<uint8_t>(digit);
      } else if (digit != 0) {
        return absl::DataLossError("non-zero padding code in the last group");
      }
    }
  }
  if (!reader.RestIsZero()) {
    return absl::DataLossError("non-zero padding after the last group");
  }
  return codes;
}

}  // namespace baq
