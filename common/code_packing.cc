#include "common/code_packing.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/code_packing_internal.h"
#include "common/parallel_for.h"

namespace baq {
namespace {

__extension__ typedef unsigned __int128 Uint128;

constexpr uint64_t LowMask(int bits) {
  return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

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

absl::Status CheckByteCount(size_t got, int64_t want) {
  if (static_cast<int64_t>(got) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", want, " bytes for the packed words, got ", got));
  }
  return absl::OkStatus();
}

absl::Status CheckGptqShape(size_t codes, int64_t out_features,
                            int64_t in_features, int bits) {
  if (out_features < 0 || in_features < 0 ||
      static_cast<int64_t>(codes) != out_features * in_features ||
      in_features * bits % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        codes, " codes for [", out_features, ", ", in_features, "] at ", bits,
        " bits (in_features * bits must be a multiple of 32)"));
  }
  return absl::OkStatus();
}

template <typename Word>
absl::Span<uint8_t> AsBytes(std::vector<Word>& words) {
  return absl::MakeSpan(reinterpret_cast<uint8_t*>(words.data()),
                        words.size() * sizeof(Word));
}

int BitLength(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }

// Outputs [begin, end) of a GPTQ qweight (code_packing.h): per 32 input
// codes (kBits qweight rows), the outputs' words side by side, so each row
// gets a run of end - begin words, while each output's codes are read in
// order (a few streams, which hardware prefetchers follow). Returns the
// codes' OR.
template <int kBits>
uint32_t PackGptqOutputs(const uint8_t* codes, int64_t out_features,
                         int64_t in_features, int64_t begin, int64_t end,
                         uint8_t* qweight) {
  const auto store = [&](int64_t row, int64_t o, uint32_t word) {
    std::memcpy(qweight + (row * out_features + o) * 4, &word, 4);
  };
  uint32_t seen = 0;
  uint32_t words[kBits];
  int64_t i = 0;
  for (; i + 32 <= in_features; i += 32) {
    for (int64_t o = begin; o < end; ++o) {
      seen |= code_packing_internal::Pack32<kBits>(codes + o * in_features + i,
                                                   words);
      for (int b = 0; b < kBits; ++b) store(i / 32 * kBits + b, o, words[b]);
    }
  }
  if (i < in_features) {  // < 32 codes left, a whole number of words
    for (int64_t o = begin; o < end; ++o) {
      seen |= code_packing_internal::PackFixedWidthTail(
          codes + o * in_features + i, in_features - i, kBits,
          reinterpret_cast<uint8_t*>(words));
      for (int64_t b = 0; b < (in_features - i) * kBits / 32; ++b) {
        store(i / 32 * kBits + b, o, words[b]);
      }
    }
  }
  return seen;
}

}  // namespace

int64_t FixedWidthPackedWords(int64_t count, int bits) {
  return (count * bits + 31) / 32;
}

absl::Status PackFixedWidthInto(absl::Span<const uint8_t> codes, int bits,
                                absl::Span<uint8_t> out) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  const int64_t n = static_cast<int64_t>(codes.size());
  if (absl::Status s =
          CheckByteCount(out.size(), FixedWidthPackedWords(n, bits) * 4);
      !s.ok()) {
    return s;
  }
  const uint32_t seen = code_packing_internal::WithBits(bits, [&](auto b) {
    return code_packing_internal::PackFixedWidthStream<decltype(b)::value>(
        codes.data(), n, out.data());
  });
  if ((seen >> bits) != 0) return CheckCodes(codes, 1 << bits);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> PackFixedWidth(
    absl::Span<const uint8_t> codes, int bits) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  std::vector<uint32_t> words(FixedWidthPackedWords(codes.size(), bits));
  if (absl::Status s = PackFixedWidthInto(codes, bits, AsBytes(words));
      !s.ok()) {
    return s;
  }
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

absl::Status PackGptqQweightInto(absl::Span<const uint8_t> codes,
                                 int64_t out_features, int64_t in_features,
                                 int bits, int threads,
                                 absl::Span<uint8_t> out) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  if (absl::Status s =
          CheckGptqShape(codes.size(), out_features, in_features, bits);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckByteCount(
          out.size(), in_features * bits / 32 * out_features * 4);
      !s.ok()) {
    return s;
  }
  std::atomic<uint32_t> seen{0};
  code_packing_internal::WithBits(bits, [&](auto b) {
    // 32 outputs a chunk: runs of 128 bytes in each qweight row.
    ParallelFor(out_features, 32, threads, [&](int64_t begin, int64_t end) {
      seen.fetch_or(PackGptqOutputs<decltype(b)::value>(
                        codes.data(), out_features, in_features, begin, end,
                        out.data()),
                    std::memory_order_relaxed);
    });
  });
  if ((seen.load() >> bits) != 0) return CheckCodes(codes, 1 << bits);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> PackGptqQweight(
    absl::Span<const uint8_t> codes, int64_t out_features, int64_t in_features,
    int bits) {
  if (absl::Status s = CheckBits(bits); !s.ok()) return s;
  if (absl::Status s =
          CheckGptqShape(codes.size(), out_features, in_features, bits);
      !s.ok()) {
    return s;
  }
  std::vector<uint32_t> qweight(in_features * bits / 32 * out_features);
  if (absl::Status s = PackGptqQweightInto(codes, out_features, in_features,
                                           bits, /*threads=*/1,
                                           AsBytes(qweight));
      !s.ok()) {
    return s;
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

absl::Status PackMixedRadixInto(absl::Span<const uint8_t> codes,
                                const MixedRadixLayout& layout,
                                absl::Span<uint8_t> out) {
  const int32_t levels = layout.levels;
  const int t = layout.codes_per_group, w = layout.bits_per_group;
  if (levels < 1 || levels > 256 || t < 1 || t > 64 || w < 0 || w > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a MixedRadixLayoutFor layout: ", levels, " levels, ",
                     t, " codes in ", w, " bits"));
  }
  const int64_t n = static_cast<int64_t>(codes.size());
  if (absl::Status s =
          CheckByteCount(out.size(), MixedRadixPackedWords(layout, n) * 8);
      !s.ok()) {
    return s;
  }
  if (w == 0) return CheckCodes(codes, levels);  // one level: no words
  if (t == 1 && (levels & (levels - 1)) == 0) {
    // 2^w levels pack one code per group (t = 1): the fixed-width stream,
    // whose uint32 words are these uint64 words, plus a zero uint32 to end
    // on a whole uint64.
    const uint32_t seen = code_packing_internal::WithBits(w, [&](auto b) {
      return code_packing_internal::PackFixedWidthStream<decltype(b)::value>(
          codes.data(), n, out.data());
    });
    std::fill(out.begin() + FixedWidthPackedWords(n, w) * 4, out.end(), 0);
    if ((seen >> w) != 0) return CheckCodes(codes, levels);
    return absl::OkStatus();
  }
  if (!code_packing_internal::CodesBelow(codes.data(), n, levels)) {
    return CheckCodes(codes, levels);
  }
  uint64_t powers[64];  // L^i for i < t; L^(t-1) < L^t <= 2^64
  powers[0] = 1;
  for (int i = 1; i < t; ++i) powers[i] = powers[i - 1] * levels;
  code_packing_internal::PackMixedRadixStream(codes.data(), n, t, w, powers,
                                              out.data());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> PackMixedRadix(
    absl::Span<const uint8_t> codes, int32_t levels) {
  absl::StatusOr<MixedRadixLayout> layout = MixedRadixLayoutFor(levels);
  if (!layout.ok()) return layout.status();
  std::vector<uint64_t> words(MixedRadixPackedWords(*layout, codes.size()));
  if (absl::Status s = PackMixedRadixInto(codes, *layout, AsBytes(words));
      !s.ok()) {
    return s;
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
