#include "worker/model/block_factory.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <map>
#include <string>

#include "common/safetensors_writer.h"
#include "tests/testing/test_paths.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kTinyLlamaConfig[] = R"({
  "model_type": "llama", "dtype": "bfloat16", "vocab_size": 32, "hidden_size": 8,
  "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
  "num_key_value_heads": 1, "head_dim": 4, "rms_norm_eps": 1e-5
})";

// A tiny random LLaMA checkpoint; `edit` may change or drop (undefined
// tensor) entries before they are written.
std::string WriteTinyLlama(
    const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
  const std::string dir = ::baq::testing::MakeScratchDir();
  ::baq::testing::WriteFileOrDie(dir + "/config.json", kTinyLlamaConfig);
  at::manual_seed(0);
  std::map<std::string, at::Tensor> t;
  t["model.embed_tokens.weight"] = at::randn({32, 8});
  t["lm_head.weight"] = at::randn({32, 8});
  t["model.norm.weight"] = at::ones({8});
  for (int b = 0; b < 2; ++b) {
    const std::string p = "model.layers." + std::to_string(b) + ".";
    t[p + "input_layernorm.weight"] = at::ones({8});
    t[p + "post_attention_layernorm.weight"] = at::ones({8});
    t[p + "self_attn.q_proj.weight"] = at::randn({8, 8});
    t[p + "self_attn.k_proj.weight"] = at::randn({4, 8});
    t[p + "self_attn.v_proj.weight"] = at::randn({4, 8});
    t[p + "self_attn.o_proj.weight"] = at::randn({8, 8});
    t[p + "mlp.gate_proj.weight"] = at::randn({16, 8});
    t[p + "mlp.up_proj.weight"] = at::randn({16, 8});
    t[p + "mlp.down_proj.weight"] = at::randn({8, 16});
  }
  edit(t);
  auto writer = SafetensorsWriter::Create(dir + "/model.safetensors");
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (const auto& [name, tensor] : t) {
    if (!tensor.defined()) continue;
    const DType dtype = tensor.scalar_type() == at::kFloat ? DType::kBF16 : *ToDType(tensor.scalar_type());
    auto bytes = TensorToBytes(tensor, dtype);
    EXPECT_TRUE(bytes.ok());
    const std::vector<int64_t> shape(tensor.sizes().begin(), tensor.sizes().end());
    EXPECT_TRUE((*writer)
                    ->Add(name, dtype, shape,
                          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes->data()),
                                              bytes->size()))
                    .ok());
  }
  EXPECT_TRUE((*writer)->Finish().ok());
  return dir;
}

absl::Status LoadBlock(const std::string& dir, int64_t block) {
  auto config = LoadModelConfig(dir);
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  if (!config.ok()) return config.status();
  if (!ckpt.ok()) return ckpt.status();
  return LoadDecoderBlock(*config, **ckpt, block, BlockOptions{}).status();
}

TEST(BlockFactoryTest, LoadsTinyModel) {
  const std::string dir = WriteTinyLlama([](auto&) {});
  auto config = LoadModelConfig(dir);
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(config.ok() && ckpt.ok());
  auto block = LoadDecoderBlock(*config, **ckpt, 1, BlockOptions{});
  ASSERT_TRUE(block.ok()) << block.status();
  EXPECT_EQ((*block)->index(), 1);
  EXPECT_EQ((*block)->linear_layers().size(), 7u);
  auto out = (*block)->Forward(at::randn({2, 5, 8}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->sizes(), at::IntArrayRef({2, 5, 8}));
}

TEST(BlockFactoryTest, MissingTensorIsInvalidArgumentNamingIt) {
  const std::string dir = WriteTinyLlama(
      [](auto& t) { t["model.layers.1.mlp.up_proj.weight"] = at::Tensor(); });
  EXPECT_TRUE(LoadBlock(dir, 0).ok());  // Streaming: block 0 does not need it.
  const absl::Status s = LoadBlock(dir, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("model.layers.1.mlp.up_proj.weight"), HasSubstr("missing")));
}

TEST(BlockFactoryTest, WrongShapeIsInvalidArgumentNamingIt) {
  const std::string dir = WriteTinyLlama(
      [](auto& t) { t["model.layers.0.self_attn.k_proj.weight"] = at::randn({8, 8}); });
  const absl::Status s = LoadBlock(dir, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("model.layers.0.self_attn.k_proj.weight"), HasSubstr("[8, 8]"),
                    HasSubstr("[4, 8]")));
}

TEST(BlockFactoryTest, NanWeightIsInvalidArgumentNamingIt) {
  const std::string dir = WriteTinyLlama([](auto& t) {
    t["model.layers.0.post_attention_layernorm.weight"][3] =
        std::numeric_limits<float>::quiet_NaN();
    t["model.layers.1.mlp.down_proj.weight"][2][7] = std::numeric_limits<float>::infinity();
  });
  absl::Status s = LoadBlock(dir, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("model.layers.0.post_attention_layernorm.weight"),
                    HasSubstr("NaN")));
  s = LoadBlock(dir, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.layers.1.mlp.down_proj.weight"));
}

TEST(BlockFactoryTest, IntegerWeightIsInvalidArgument) {
  const std::string dir = WriteTinyLlama([](auto& t) {
    t["model.layers.0.mlp.gate_proj.weight"] = at::zeros({16, 8}, at::kInt);
  });
  const absl::Status s = LoadBlock(dir, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.layers.0.mlp.gate_proj.weight"));
}

TEST(BlockFactoryTest, BlockOutOfRangeIsInvalidArgument) {
  const std::string dir = WriteTinyLlama([](auto&) {});
  EXPECT_EQ(LoadBlock(dir, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadBlock(dir, -1).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockFactoryTest, UnknownFamilyIsUnimplemented) {
  const std::string dir = WriteTinyLlama([](auto&) {});
  auto config = LoadModelConfig(dir);
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(config.ok() && ckpt.ok());
  config->family = static_cast<ModelFamily>(42);
  EXPECT_EQ(LoadDecoderBlock(*config, **ckpt, 0, BlockOptions{}).status().code(),
            absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace baq::worker
