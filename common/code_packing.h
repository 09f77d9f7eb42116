// common/code_packing.h
//
// Packing of integer quantization codes (0 <= code < levels <= 256) for
// storage. Pure integer code; stateless and thread-safe.
//
// (a) Fixed width, b in 1..8 bits: codes form one little-endian bit stream,
//     code i at stream bits [b*i, b*(i+1)), stream bit k in bit k % 32 of
//     uint32 word k / 32. For b in {2, 4, 8} that is 32/b codes per word with
//     code 0 in the low bits, and for b = 3 it is the 32-codes-in-3-words
//     layout with codes 10 and 21 crossing word boundaries: both as GPTQ's
//     (IST-DASLab/gptq quant.py, AutoGPTQ) qweight pack(). Unused bits of the
//     last word are zero. PackGptqQweight lays a weight matrix out as GPTQ's
//     qweight: one stream per output feature along the input dim, word r of
//     output o at qweight[r][o].
//
// (b) Mixed radix, any level count L in 1..256 (BAQ's non-power-of-two widths):
//     t consecutive codes form one group value sum_i code_{g t + i} * L^i
//     (code 0 least significant), written in w = bit_length(L^t - 1) <= 64
//     bits; groups go back to back into a little-endian stream of uint64 words
//     (group g at stream bits [g w, (g+1) w), stream bit k in bit k % 64 of
//     word k / 64). t minimizes w / t, smallest t on ties, so w / (t log2 L) -
//     1 < 1.6% for every L >= 3 and 0 for powers of two. A short last group is
//     padded with zero codes. L = 1 packs to no words. No big integers: every
//     group fits a uint64.
//
// The ...Into variants write the same words, little-endian, into caller
// memory of exactly the packed size (InvalidArgument otherwise), without
// allocating: for payloads of many streams laid out in one buffer
// (common/matrix_packing.h). On an error the bytes written are unspecified.
//
// Unpack rejects a word count that does not match (InvalidArgument) and
// content that no Pack produces (DataLoss): group values >= L^t, non-zero
// padding.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::vector<uint64_t> words,
//                        PackMixedRadix(column_codes, /*levels=*/5));
//   BAQ_ASSIGN_OR_RETURN(std::vector<uint8_t> codes,
//                        UnpackMixedRadix(words, 5, column_codes.size()));
#ifndef BAQ_COMMON_CODE_PACKING_H_
#define BAQ_COMMON_CODE_PACKING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace baq {

// Words needed for `count` codes of `bits` bits: ceil(count * bits / 32).
int64_t FixedWidthPackedWords(int64_t count, int bits);

// InvalidArgument unless 1 <= bits <= 8 and every code < 2^bits.
absl::StatusOr<std::vector<uint32_t>> PackFixedWidth(
    absl::Span<const uint8_t> codes, int bits);
// out: FixedWidthPackedWords(codes.size(), bits) * 4 bytes.
absl::Status PackFixedWidthInto(absl::Span<const uint8_t> codes, int bits,
                                absl::Span<uint8_t> out);
absl::StatusOr<std::vector<uint8_t>> UnpackFixedWidth(
    absl::Span<const uint32_t> words, int bits, int64_t count);

// codes: row-major [out_features][in_features] (a weight matrix's layout).
// Returns row-major qweight [in_features * bits / 32][out_features].
// REQUIRES (InvalidArgument otherwise): in_features * bits % 32 == 0, sizes
// match, codes < 2^bits.
absl::StatusOr<std::vector<uint32_t>> PackGptqQweight(
    absl::Span<const uint8_t> codes, int64_t out_features, int64_t in_features,
    int bits);
// out: in_features * bits / 32 * out_features * 4 bytes. Output features are
// packed in chunks on up to `threads` threads (common/parallel_for.h); the
// bytes do not depend on `threads`.
absl::Status PackGptqQweightInto(absl::Span<const uint8_t> codes,
                                 int64_t out_features, int64_t in_features,
                                 int bits, int threads,
                                 absl::Span<uint8_t> out);
absl::StatusOr<std::vector<uint8_t>> UnpackGptqQweight(
    absl::Span<const uint32_t> qweight, int64_t out_features,
    int64_t in_features, int bits);

struct MixedRadixLayout {
  int32_t levels = 1;
  int32_t codes_per_group = 1;  // t
  int32_t bits_per_group = 0;   // w
};

// InvalidArgument unless 1 <= levels <= 256.
absl::StatusOr<MixedRadixLayout> MixedRadixLayoutFor(int32_t levels);
// ceil(count / t) * w: the exact size of the stream, before rounding up to
// whole words.
int64_t MixedRadixPackedBits(const MixedRadixLayout& layout, int64_t count);
int64_t MixedRadixPackedWords(const MixedRadixLayout& layout, int64_t count);

absl::StatusOr<std::vector<uint64_t>> PackMixedRadix(
    absl::Span<const uint8_t> codes, int32_t levels);
// out: MixedRadixPackedWords(layout, codes.size()) * 8 bytes. Takes the
// layout so callers packing many streams compute it once per level count.
// REQUIRES: `layout` == MixedRadixLayoutFor(layout.levels) (a layout that is
// not even plausible is InvalidArgument).
absl::Status PackMixedRadixInto(absl::Span<const uint8_t> codes,
                                const MixedRadixLayout& layout,
                                absl::Span<uint8_t> out);
absl::StatusOr<std::vector<uint8_t>> UnpackMixedRadix(
    absl::Span<const uint64_t> words, int32_t levels, int64_t count);

}  // namespace baq

#endif  // BAQ_COMMON_CODE_PACKING_H_
