#include "common/matrix_packing.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/code_packing.h"
#include "common/column_gather.h"
#include "common/parallel_for.h"
#include "common/status_util.h"

namespace baq {
namespace {

// Streams per chunk of rows: about 64K codes, tens of microseconds of work.
int64_t GrainFor(int64_t codes_per_stream) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, codes_per_stream));
}

// Columns per chunk of columns: a cache line of every row.
constexpr int64_t kColumnTile = 64;

// first = min(first, i), atomically.
void LowerTo(std::atomic<int64_t>& first, int64_t i) {
  int64_t seen = first.load(std::memory_order_relaxed);
  while (i < seen && !first.compare_exchange_weak(seen, i)) {
  }
}

// Packs streams [0, count) in chunks of `grain` on up to `threads` threads:
// per chunk, gather(begin, end, scratch) once (scratch: a buffer of the
// calling thread, kept across its chunks), then pack(i, scratch) ->
// absl::Status for each stream. On failure, returns the error of the
// lowest-numbered failing stream (packed again, serially, for its message)
// prefixed with "<what> <i>", so errors do not depend on scheduling either.
template <typename Gather, typename Pack>
absl::Status PackEach(int64_t count, int64_t grain, int threads, absl::string_view what,
                      const Gather& gather, const Pack& pack) {
  std::atomic<int64_t> first_bad{count};
  ParallelFor(count, grain, threads, [&](int64_t begin, int64_t end) {
    thread_local std::vector<uint8_t> scratch;
    gather(begin, end, scratch);
    // Streams past a known failure need not be packed; the lowest failing
    // one is never skipped (nothing below it fails).
    for (int64_t i = begin; i < end && i < first_bad.load(std::memory_order_relaxed); ++i) {
      if (!pack(i, scratch).ok()) return LowerTo(first_bad, i);
    }
  });
  const int64_t bad = first_bad.load();
  if (bad == count) return absl::OkStatus();
  std::vector<uint8_t> scratch;
  const int64_t begin = bad / grain * grain;
  gather(begin, std::min(count, begin + grain), scratch);
  return Annotate(pack(bad, scratch), absl::StrCat(what, " ", bad));
}

// Bytes between the columns of a gathered tile: `rows` rounded up to an odd
// number of cache lines, so the columns' lines fall in different cache sets
// (a stride of a multiple of 8 lines, 6656 or 17920 bytes, used 8 sets).
int64_t TileStride(int64_t rows) { return ((rows + 63) / 64 | 1) * 64; }

uint8_t* Bytes(std::string& s) { return reinterpret_cast<uint8_t*>(s.data()); }

}  // namespace

absl::StatusOr<std::string> PackMixedRadixColumns(absl::Span<const uint8_t> codes,
                                                  int64_t rows,
                                                  absl::Span<const int32_t> levels,
                                                  int threads) {
  const int64_t cols = static_cast<int64_t>(levels.size());
  if (rows < 0 || static_cast<int64_t>(codes.size()) != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(codes.size(), " codes for [", rows, ", ", cols, "]"));
  }
  // One layout per distinct level count; each column's byte offset.
  std::array<MixedRadixLayout, 257> layouts;
  std::array<bool, 257> known{};
  std::vector<int64_t> offsets(static_cast<size_t>(cols) + 1, 0);
  for (int64_t j = 0; j < cols; ++j) {
    const int32_t l = levels[j];
    if (l < 1 || l > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("column ", j, ": levels must be in 1..256, got ", l));
    }
    if (!known[l]) {
      layouts[l] = *MixedRadixLayoutFor(l);
      known[l] = true;
    }
    offsets[j + 1] = offsets[j] + MixedRadixPackedWords(layouts[l], rows) * 8;
  }
  std::string bytes(static_cast<size_t>(offsets[cols]), '\0');
  // Chunks of kColumnTile columns, gathered from the rows first: no pass
  // transposes the whole matrix, and every row is read once per chunk.
  absl::Status status = PackEach(
      cols, kColumnTile, threads, "column",
      [&](int64_t begin, int64_t end, std::vector<uint8_t>& tile) {
        tile.resize(static_cast<size_t>((end - begin) * TileStride(rows)));
        GatherColumns(codes.data(), rows, cols, begin, end, TileStride(rows), tile.data());
      },
      [&](int64_t j, const std::vector<uint8_t>& tile) {
        const int64_t in_tile = j % kColumnTile;
        return PackMixedRadixInto(
            absl::MakeConstSpan(tile.data() + in_tile * TileStride(rows), rows),
                                  layouts[levels[j]],
                                  absl::MakeSpan(Bytes(bytes) + offsets[j], offsets[j + 1] - offsets[j]));
      });
  if (!status.ok()) return status;
  return bytes;
}

absl::StatusOr<std::string> PackFixedWidthRows(absl::Span<const uint8_t> codes, int64_t rows,
                                               int64_t cols, int bits, int threads) {
  if (bits < 1 || bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("bits must be in 1..8, got ", bits));
  }
  if (rows < 0 || cols < 0 || static_cast<int64_t>(codes.size()) != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(codes.size(), " codes for [", rows, ", ", cols, "]"));
  }
  const int64_t row_bytes = FixedWidthPackedWords(cols, bits) * 4;
  std::string bytes(static_cast<size_t>(rows * row_bytes), '\0');
  absl::Status status = PackEach(
      rows, GrainFor(cols), threads, "row", [](int64_t, int64_t, std::vector<uint8_t>&) {},
      [&](int64_t r, const std::vector<uint8_t>&) {
        return PackFixedWidthInto(codes.subspan(r * cols, cols), bits,
                                  absl::MakeSpan(Bytes(bytes) + r * row_bytes, row_bytes));
      });
  if (!status.ok()) return status;
  return bytes;
}

}  // namespace baq
