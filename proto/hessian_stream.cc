#include "proto/hessian_stream.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/convert.h"

namespace baq {

bool HessianPartialWriter::Next(v1::HessianPartialChunk* chunk) {
  chunk->Clear();
  if (index_ >= partials_.size()) return false;
  HessianPartial& p = partials_[index_];
  if (!header_sent_) {
    v1::HessianPartialHeader* h = chunk->mutable_header();
    h->set_shard(p.shard);
    h->set_input_group(p.input_group);
    h->set_layer(p.layer);
    h->set_total_bytes(p.bytes.size());
    header_sent_ = true;
    offset_ = 0;
  } else {
    const size_t n = std::min(kMaxChunkBytes, p.bytes.size() - offset_);
    chunk->set_data(p.bytes.data() + offset_, n);
    offset_ += n;
  }
  if (offset_ >= p.bytes.size()) {  // Complete: free it, on to the next.
    std::string().swap(p.bytes);
    ++index_;
    header_sent_ = false;
  }
  return true;
}

absl::Status HessianPartialAssembler::CheckComplete() const {
  if (partials_.empty() || partials_.back().bytes.size() == expected_bytes_) {
    return absl::OkStatus();
  }
  const HessianPartial& p = partials_.back();
  return absl::InternalError(absl::StrCat("Hessian partial of shard ", p.shard, ", input group ",
                                          p.input_group, " (", p.layer, "): got ", p.bytes.size(),
                                          " of ", expected_bytes_, " bytes"));
}

absl::Status HessianPartialAssembler::Add(const v1::HessianPartialChunk& chunk) {
  switch (chunk.kind_case()) {
    case v1::HessianPartialChunk::kHeader: {
      if (absl::Status s = CheckComplete(); !s.ok()) return s;
      const v1::HessianPartialHeader& h = chunk.header();
      HessianPartial p;
      p.shard = h.shard();
      p.input_group = h.input_group();
      p.layer = h.layer();
      p.bytes.reserve(std::min<uint64_t>(h.total_bytes(), kMaxUpfrontReserveBytes));
      expected_bytes_ = h.total_bytes();
      partials_.push_back(std::move(p));
      return absl::OkStatus();
    }
    case v1::HessianPartialChunk::kData: {
      if (partials_.empty()) return absl::InternalError("Hessian data before any header");
      HessianPartial& p = partials_.back();
      if (p.bytes.size() + chunk.data().size() > expected_bytes_) {
        return absl::InternalError(absl::StrCat("Hessian partial of shard ", p.shard,
                                                ", input group ", p.input_group, " (", p.layer,
                                                "): more than ", expected_bytes_,
                                                " bytes streamed"));
      }
      p.bytes.append(chunk.data());
      bytes_received_ += chunk.data().size();
      return absl::OkStatus();
    }
    default:
      return absl::InternalError("empty HessianPartialChunk");
  }
}

absl::StatusOr<std::vector<HessianPartial>> HessianPartialAssembler::Finish() && {
  if (absl::Status s = CheckComplete(); !s.ok()) return s;
  return std::move(partials_);
}

}  // namespace baq
