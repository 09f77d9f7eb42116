// common/code_packing_internal.h
//
// The inner loops of common/code_packing.h's packers: allocation-free
// writers of one stream into caller memory, as little-endian words. Only
// code_packing.cc includes this; callers use the checked functions there.
//
// The fixed-width kernels return the OR of the codes they packed, so the
// caller validates codes < 2^bits without a second pass; mixed-radix codes
// are checked by CodesBelow, eight at a time, before packing. On bad codes
// the written bytes are meaningless.
#ifndef BAQ_COMMON_CODE_PACKING_INTERNAL_H_
#define BAQ_COMMON_CODE_PACKING_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace baq::code_packing_internal {

// Words are stored in host byte order; every format built on these is
// little-endian by definition.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian hosts only");

// Calls fn(std::integral_constant<int, bits>()) so a kernel can be chosen
// per width at run time. REQUIRES: 1 <= bits <= 8.
template <typename Fn>
decltype(auto) WithBits(int bits, Fn&& fn) {
  switch (bits) {
    case 1: return fn(std::integral_constant<int, 1>());
    case 2: return fn(std::integral_constant<int, 2>());
    case 3: return fn(std::integral_constant<int, 3>());
    case 4: return fn(std::integral_constant<int, 4>());
    case 5: return fn(std::integral_constant<int, 5>());
    case 6: return fn(std::integral_constant<int, 6>());
    case 7: return fn(std::integral_constant<int, 7>());
    default: return fn(std::integral_constant<int, 8>());
  }
}

template <typename Word>
inline void StoreWord(uint8_t*& dst, Word w) {
  std::memcpy(dst, &w, sizeof w);
  dst += sizeof w;
}

// 32 codes of kBits bits fill exactly kBits uint32 words (code k at stream
// bits [k kBits, (k+1) kBits), crossing a word boundary where it must).
// Unrolled so every shift is a constant. Returns the OR of the codes.
template <int kBits>
inline uint32_t Pack32(const uint8_t* codes, uint32_t* words) {
  for (int b = 0; b < kBits; ++b) words[b] = 0;
  uint32_t seen = 0;
#pragma GCC unroll 32
  for (int k = 0; k < 32; ++k) {
    const uint32_t c = codes[k];
    const int bit = k * kBits, word = bit / 32, shift = bit % 32;
    words[word] |= c << shift;
    if (shift + kBits > 32) words[word + 1] |= c >> (32 - shift);
    seen |= c;
  }
  return seen;
}

// Any count and width: a 64-bit accumulator that gives up a uint32 word
// whenever 32 bits are full, and the partial last word (zero-padded).
inline uint32_t PackFixedWidthTail(const uint8_t* codes, int64_t count, int bits,
                                   uint8_t* dst) {
  uint64_t acc = 0;
  int filled = 0;
  uint32_t seen = 0;
  for (int64_t i = 0; i < count; ++i) {
    acc |= uint64_t{codes[i]} << filled;
    seen |= codes[i];
    filled += bits;
    if (filled >= 32) {
      StoreWord(dst, static_cast<uint32_t>(acc));
      acc >>= 32;
      filled -= 32;
    }
  }
  if (filled > 0) StoreWord(dst, static_cast<uint32_t>(acc));
  return seen;
}

// The fixed-width stream of `count` codes: FixedWidthPackedWords(count,
// kBits) words at `dst`. Returns the OR of the codes.
template <int kBits>
uint32_t PackFixedWidthStream(const uint8_t* codes, int64_t count, uint8_t* dst) {
  uint32_t seen = 0;
  int64_t i = 0;
  for (; i + 32 <= count; i += 32) {
    uint32_t words[kBits];
    seen |= Pack32<kBits>(codes + i, words);
    std::memcpy(dst, words, sizeof words);
    dst += sizeof words;
  }
  return seen | PackFixedWidthTail(codes + i, count - i, kBits, dst);
}

// Appends fields of up to 64 bits to a stream of uint64 words.
class WordWriter64 {
 public:
  explicit WordWriter64(uint8_t* dst) : dst_(dst) {}

  // REQUIRES: 1 <= width <= 64, value < 2^width.
  void Put(uint64_t value, int width) {
    acc_ |= value << filled_;  // filled_ < 64
    filled_ += width;
    if (filled_ >= 64) {
      StoreWord(dst_, acc_);
      filled_ -= 64;
      // The bits of `value` that did not fit; none when it ended the word.
      acc_ = filled_ == 0 ? 0 : value >> (width - filled_);
    }
  }
  // Stores the partial last word, if any.
  void Flush() {
    if (filled_ > 0) StoreWord(dst_, acc_);
  }

 private:
  uint8_t* dst_;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

// Whether every one of `count` codes is < levels. Eight codes at a time for
// levels <= 128: a byte b of x exceeds n <= 127 exactly when b + (127 - n)
// or b itself has its top bit set, with no carry between bytes (the
// "hasmore" test of Bit Twiddling Hacks).
inline bool CodesBelow(const uint8_t* codes, int64_t count, int32_t levels) {
  int64_t i = 0;
  if (levels <= 128) {
    const uint64_t kOnes = ~uint64_t{0} / 255;
    const uint64_t add = kOnes * static_cast<uint64_t>(127 - (levels - 1));
    uint64_t flags = 0;
    for (; i + 8 <= count; i += 8) {
      uint64_t x;
      std::memcpy(&x, codes + i, 8);
      flags |= (x + add) | x;
    }
    if ((flags & kOnes * 128) != 0) return false;
  }
  uint8_t largest = 0;
  for (; i < count; ++i) largest = std::max(largest, codes[i]);
  return largest < levels;
}

// Groups of kT codes (kT > 0), or of t codes (kT = 0: any t), at `codes`:
// value sum_i code_i * powers[i], `width` bits each. Returns past the last.
template <int kT>
const uint8_t* PackGroups(const uint8_t* codes, int64_t groups, int t, int width,
                          const uint64_t* powers, WordWriter64& writer) {
  const int n = kT > 0 ? kT : t;
  for (int64_t g = 0; g < groups; ++g, codes += n) {
    uint64_t value = 0;
#pragma GCC unroll 32
    for (int i = 0; i < n; ++i) value += codes[i] * powers[i];
    writer.Put(value, width);
  }
  return codes;
}

// The mixed-radix stream of `count` codes in groups of `t` codes, `width`
// bits each: group value sum_i code_i * powers[i]. Group sizes of the level
// counts of 2- to 4-bit allocations (3..16 levels) get an unrolled loop.
// REQUIRES: powers[i] = L^i for i < t, width = bit_length(L^t - 1) >= 1.
inline void PackMixedRadixStream(const uint8_t* codes, int64_t count, int t, int width,
                                 const uint64_t* powers, uint8_t* dst) {
  WordWriter64 writer(dst);
  const int64_t groups = count / t;
  switch (t) {
    case 3: codes = PackGroups<3>(codes, groups, t, width, powers, writer); break;
    case 11: codes = PackGroups<11>(codes, groups, t, width, powers, writer); break;
    case 13: codes = PackGroups<13>(codes, groups, t, width, powers, writer); break;
    case 16: codes = PackGroups<16>(codes, groups, t, width, powers, writer); break;
    case 17: codes = PackGroups<17>(codes, groups, t, width, powers, writer); break;
    case 21: codes = PackGroups<21>(codes, groups, t, width, powers, writer); break;
    case 29: codes = PackGroups<29>(codes, groups, t, width, powers, writer); break;
    default: codes = PackGroups<0>(codes, groups, t, width, powers, writer); break;
  }
  const int64_t left = count - groups * t;
  if (left > 0) {  // a short last group: the missing codes are zeros
    uint64_t value = 0;
    for (int64_t i = 0; i < left; ++i) value += codes[i] * powers[i];
    writer.Put(value, width);
  }
  writer.Flush();
}

}  // namespace baq::code_packing_internal

#endif  // BAQ_COMMON_CODE_PACKING_INTERNAL_H_
