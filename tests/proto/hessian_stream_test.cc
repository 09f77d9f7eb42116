// proto/hessian_stream: Hessian partials framed as HessianPartialChunk
// messages (a header, then data chunks of at most kMaxChunkBytes) and
// reassembled, and every framing fault the assembler rejects.
#include "proto/hessian_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "proto/convert.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

HessianPartial Partial(int32_t shard, int32_t group, std::string layer, size_t bytes) {
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * 7 + group);
  return HessianPartial{shard, group, std::move(layer), std::move(data)};
}

std::vector<v1::HessianPartialChunk> Write(std::vector<HessianPartial> partials) {
  HessianPartialWriter writer(std::move(partials));
  std::vector<v1::HessianPartialChunk> out;
  v1::HessianPartialChunk chunk;
  while (writer.Next(&chunk)) out.push_back(chunk);
  EXPECT_FALSE(writer.Next(&chunk));  // Stays done.
  return out;
}

v1::HessianPartialChunk Header(int32_t shard, int32_t group, uint64_t total_bytes) {
  v1::HessianPartialChunk c;
  c.mutable_header()->set_shard(shard);
  c.mutable_header()->set_input_group(group);
  c.mutable_header()->set_layer("model.layers.0.self_attn.q_proj");
  c.mutable_header()->set_total_bytes(total_bytes);
  return c;
}

v1::HessianPartialChunk Data(std::string bytes) {
  v1::HessianPartialChunk c;
  c.set_data(std::move(bytes));
  return c;
}

TEST(HessianStreamTest, FramesEachPartialAsHeaderThenBoundedChunks) {
  const size_t big = 2 * kMaxChunkBytes + 3;
  const std::vector<v1::HessianPartialChunk> chunks =
      Write({Partial(-1, 0, "q", 10), Partial(-1, 1, "up", big), Partial(-1, 2, "down", 0)});
  // 1 + 1, then 1 + 3 (two full chunks and 3 bytes), then a header alone.
  ASSERT_EQ(chunks.size(), 7u);
  EXPECT_TRUE(chunks[0].has_header());
  EXPECT_EQ(chunks[0].header().total_bytes(), 10u);
  EXPECT_EQ(chunks[1].data().size(), 10u);
  EXPECT_TRUE(chunks[2].has_header());
  EXPECT_EQ(chunks[2].header().total_bytes(), big);
  EXPECT_EQ(chunks[3].data().size(), kMaxChunkBytes);
  EXPECT_EQ(chunks[4].data().size(), kMaxChunkBytes);
  EXPECT_EQ(chunks[5].data().size(), 3u);
  EXPECT_TRUE(chunks[6].has_header());
  EXPECT_EQ(chunks[6].header().total_bytes(), 0u);
}

TEST(HessianStreamTest, AssemblerRebuildsWhatTheWriterSent) {
  std::vector<HessianPartial> sent = {Partial(3, 0, "q", 100),
                                      Partial(3, 2, "up", kMaxChunkBytes + 1),
                                      Partial(3, 5, "empty", 0)};
  const std::vector<HessianPartial> copy = sent;
  HessianPartialAssembler assembly;
  for (const v1::HessianPartialChunk& c : Write(std::move(sent))) {
    ASSERT_TRUE(assembly.Add(c).ok());
  }
  EXPECT_EQ(assembly.bytes_received(), 100u + kMaxChunkBytes + 1);
  absl::StatusOr<std::vector<HessianPartial>> got = std::move(assembly).Finish();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), copy.size());
  for (size_t i = 0; i < copy.size(); ++i) {
    EXPECT_EQ((*got)[i].shard, copy[i].shard);
    EXPECT_EQ((*got)[i].input_group, copy[i].input_group);
    EXPECT_EQ((*got)[i].layer, copy[i].layer);
    EXPECT_EQ((*got)[i].bytes, copy[i].bytes) << "partial " << i;
  }
}

TEST(HessianStreamTest, EmptyStreamIsNoPartials) {
  EXPECT_TRUE(Write({}).empty());
  absl::StatusOr<std::vector<HessianPartial>> got = HessianPartialAssembler().Finish();
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
}

TEST(HessianStreamTest, RejectsDataBeforeAnyHeader) {
  HessianPartialAssembler assembly;
  const absl::Status s = assembly.Add(Data("abc"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("Hessian data before any header"));
}

TEST(HessianStreamTest, RejectsMoreDataThanTheHeaderAnnounced) {
  HessianPartialAssembler assembly;
  ASSERT_TRUE(assembly.Add(Header(1, 4, 5)).ok());
  ASSERT_TRUE(assembly.Add(Data("abc")).ok());
  const absl::Status s = assembly.Add(Data("def"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(),
              HasSubstr("shard 1, input group 4 (model.layers.0.self_attn.q_proj): more than 5"));
}

TEST(HessianStreamTest, RejectsAHeaderBeforeThePreviousPartialIsComplete) {
  HessianPartialAssembler assembly;
  ASSERT_TRUE(assembly.Add(Header(0, 1, 8)).ok());
  ASSERT_TRUE(assembly.Add(Data("abc")).ok());
  const absl::Status s = assembly.Add(Header(0, 2, 8));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("input group 1"));
  EXPECT_THAT(s.message(), HasSubstr("got 3 of 8 bytes"));
}

TEST(HessianStreamTest, FinishRejectsATruncatedLastPartial) {
  HessianPartialAssembler assembly;
  ASSERT_TRUE(assembly.Add(Header(2, 0, 4)).ok());
  ASSERT_TRUE(assembly.Add(Data("ab")).ok());
  absl::StatusOr<std::vector<HessianPartial>> got = std::move(assembly).Finish();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(got.status().message(), HasSubstr("got 2 of 4 bytes"));
}

TEST(HessianStreamTest, RejectsAChunkWithNeitherHeaderNorData) {
  HessianPartialAssembler assembly;
  const absl::Status s = assembly.Add(v1::HessianPartialChunk());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("empty HessianPartialChunk"));
}

}  // namespace
}  // namespace baq
