#include "common/safetensors.h"

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A file image: length prefix, header, data section.
std::string Image(const std::string& header, const std::string& data = "") {
  return Le64(header.size()) + header + data;
}

// {"a": <entry>} with `data_bytes` zero bytes of data.
std::string One(const std::string& entry, size_t data_bytes) {
  return Image(absl::StrCat(R"({"a":)", entry, "}"), std::string(data_bytes, '\0'));
}

struct MalformedCase {
  std::string name;
  std::string bytes;
  absl::StatusCode code;
  std::string fault;  // substring the message must contain
};

std::vector<MalformedCase> MalformedCases() {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  const std::string f32x2 = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  return {
      {"Empty", "", kInvalid, "shorter than the 8-byte header length"},
      {"SevenBytes", std::string(7, '\0'), kInvalid, "shorter than the 8-byte"},
      {"HeaderOver100MB", Le64(kMaxSafetensorsHeaderBytes + 1) + "{}", kInvalid,
       "exceeds the limit"},
      {"HeaderLenMaxU64", Le64(UINT64_MAX) + "{}", kInvalid, "exceeds the limit"},
      {"HeaderPastEof", Le64(100) + "{}", kInvalid, "runs past end of file"},
      {"HeaderLenOneTooMany", Le64(3) + "{}", kInvalid, "runs past end of file"},
      {"EmptyHeader", Image(""), kInvalid, "not valid JSON"},
      {"NotJson", Image("hello"), kInvalid, "not valid JSON"},
      {"TruncatedJson", Image(R"({"a":)"), kInvalid, "not valid JSON"},
      {"TrailingGarbageInHeader", Image("{} x"), kInvalid, "not valid JSON"},
      {"HeaderIsArray", Image("[]"), kInvalid, "not a JSON object"},
      {"HeaderIsString", Image(R"("x")"), kInvalid, "not a JSON object"},
      {"EntryIsNumber", One("1", 0), kInvalid, "entry is not a JSON object"},
      {"EntryIsArray", One("[]", 0), kInvalid, "entry is not a JSON object"},
      {"MissingDtype", One(R"({"shape":[2],"data_offsets":[0,8]})", 8), kInvalid,
       "missing field \"dtype\""},
      {"MissingShape", One(R"({"dtype":"F32","data_offsets":[0,8]})", 8), kInvalid,
       "missing field \"shape\""},
      {"MissingOffsets", One(R"({"dtype":"F32","shape":[2]})", 8), kInvalid,
       "missing field \"data_offsets\""},
      {"ExtraField", One(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1})", 8), kInvalid,
       "unknown field \"x\""},
      {"UnknownDtype", One(R"({"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]})", 2), kInvalid,
       "unknown dtype \"F8_E4M3\""},
      {"LowercaseDtype", One(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})", 8), kInvalid,
       "unknown dtype"},
      {"DtypeNotString", One(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})", 8), kInvalid,
       "dtype is not a string"},
      {"ShapeNotList", One(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", 8), kInvalid,
       "shape is not a list"},
      {"NegativeDim", One(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", 8), kInvalid,
       "shape element -2 is not a non-negative"},
      {"FloatDim", One(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", 8), kInvalid,
       "is not a non-negative 64-bit integer"},
      {"StringDim", One(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})", 8), kInvalid,
       "is not a non-negative 64-bit integer"},
      {"DimOverInt64",
       One(R"({"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]})", 8), kInvalid,
       "is not a non-negative 64-bit integer"},
      {"ElementCountOverflow",
       One(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})", 0), kInvalid,
       "overflows the element count"},
      {"OverflowBeforeZeroDim",
       One(R"({"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})", 0), kInvalid,
       "overflows the element count"},
      {"ByteSizeOverflow",
       One(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]})", 0), kInvalid,
       "overflows the byte size"},
      {"OffsetsNotList", One(R"({"dtype":"F32","shape":[2],"data_offsets":8})", 8), kInvalid,
       "is not a list of two non-negative integers"},
      {"OffsetsOneInt", One(R"({"dtype":"F32","shape":[2],"data_offsets":[8]})", 8), kInvalid,
       "is not a list of two"},
      {"OffsetsThreeInts", One(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})", 8),
       kInvalid, "is not a list of two"},
      {"OffsetsNegative", One(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})", 8), kInvalid,
       "is not a list of two non-negative"},
      {"OffsetsFloat", One(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})", 8), kInvalid,
       "is not a list of two non-negative"},
      {"BeginAfterEnd", One(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})", 8), kInvalid,
       "begin 8 > end 0"},
      {"ByteSizeMismatch", One(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", 4), kInvalid,
       "hold 4 bytes but byte size of F32 [2] is 8"},
      {"OffsetsOutOfBounds", One(f32x2, 4), kInvalid, "out of bounds of the 4-byte data section"},
      {"OffsetsFarOutOfBounds",
       One(R"({"dtype":"U8","shape":[8],"data_offsets":[4294967296,4294967304]})", 8), kInvalid,
       "out of bounds"},
      {"Overlap",
       Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                 "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             std::string(12, '\0')),
       kInvalid, "overlap"},
      {"SameOffsets",
       Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                 "b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
             std::string(8, '\0')),
       kInvalid, "overlap"},
      {"EmptyTensorInsideAnother",
       Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                 "b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
             std::string(8, '\0')),
       kInvalid, "overlap"},
      {"GapBetweenTensors",
       Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                 "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
             std::string(12, '\0')),
       kInvalid, "gap in data section: bytes [4, 8)"},
      {"GapAtStart", One(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})", 8), kInvalid,
       "gap in data section: bytes [0, 4)"},
      {"TrailingBytes", One(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 8), kInvalid,
       "trailing bytes: data section is 8 bytes but tensors cover only 4"},
      {"NoTensorsButData", Image("{}", "xyz"), kInvalid, "trailing bytes"},
      {"DuplicateTensorName",
       Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                 "a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
             std::string(8, '\0')),
       kInvalid, "duplicate key \"a\""},
      {"DuplicateField",
       One(R"({"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]})", 4), kInvalid,
       "duplicate key \"dtype\""},
      {"NonUtf8Name", Image("{\"\xff\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"),
       kInvalid, "ill-formed UTF-8 byte"},
      {"OverlongUtf8Name",
       Image("{\"\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"), kInvalid,
       "ill-formed UTF-8 byte"},
      {"SurrogateUtf8Name",
       Image("{\"\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"),
       kInvalid, "ill-formed UTF-8 byte"},
      {"LoneSurrogateEscape",
       Image(R"({"\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"), kInvalid,
       "surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF"},
      {"MetadataNotObject", Image(R"({"__metadata__":["pt"]})"), kInvalid,
       "__metadata__ is not a JSON object of strings"},
      {"MetadataValueNotString", Image(R"({"__metadata__":{"format":1}})"), kInvalid,
       "__metadata__ value of \"format\" is not a string"},
      {"MetadataDuplicateKey", Image(R"({"__metadata__":{"k":"a","k":"b"}})"), kInvalid,
       "duplicate key \"k\""},
      {"DeepNesting", Image(R"({"a":{"shape":[[[[1]]]]}})"), kInvalid, "nests deeper than 4"},
  };
}

void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class MalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTest, RejectedWithCodeNamingFileAndFault) {
  const MalformedCase& c = GetParam();
  auto file = SafetensorsFile::FromBytes(c.bytes, "bad.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), c.code) << file.status();
  EXPECT_THAT(file.status().message(), HasSubstr("bad.safetensors: "));
  EXPECT_THAT(file.status().message(), HasSubstr(c.fault));
}

INSTANTIATE_TEST_SUITE_P(SafetensorsFileTest, MalformedTest, ::testing::ValuesIn(MalformedCases()),
                         [](const auto& info) { return info.param.name; });

TEST(SafetensorsFileTest, AtLeastThirtyMalformedCases) { EXPECT_GE(MalformedCases().size(), 30u); }

TEST(SafetensorsFileTest, ReadsEveryDtype) {
  for (DType dtype : {DType::kF16, DType::kBF16, DType::kF32, DType::kF64, DType::kI8, DType::kI32,
                      DType::kI64, DType::kU8}) {
    SCOPED_TRACE(DTypeName(dtype));
    const size_t nbytes = 6 * DTypeSize(dtype);
    std::string data;
    for (size_t i = 0; i < nbytes; ++i) data.push_back(static_cast<char>(i * 7 + 1));
    const std::string header = absl::StrCat(R"({"t":{"dtype":")", DTypeName(dtype),
                                            R"(","shape":[2,3],"data_offsets":[0,)", nbytes, "]}}");
    auto file = SafetensorsFile::FromBytes(Image(header, data), "dtypes");
    ASSERT_TRUE(file.ok()) << file.status();
    auto view = (*file)->Get("t");
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, dtype);
    EXPECT_THAT(view->shape, ElementsAre(2, 3));
    EXPECT_EQ(view->NumElements(), 6);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(view->bytes.data()), view->bytes.size()),
              data);
  }
}

TEST(SafetensorsFileTest, ScalarZeroSizeMetadataAndOffsetOrder) {
  // Keys are in name order; tensors() must come back in offset order.
  const std::string header = R"({
    "__metadata__": {"format": "pt", "note": "ü"},
    "a_last":   {"dtype": "U8",  "shape": [0],    "data_offsets": [12, 12]},
    "b_scalar": {"dtype": "F64", "shape": [],     "data_offsets": [4, 12]},
    "c_empty":  {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]},
    "d_first":  {"dtype": "I32", "shape": [1],    "data_offsets": [0, 4]}
  }   )";
  auto file = SafetensorsFile::FromBytes(Image(header, std::string(12, 'x')), "mixed");
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> names;
  for (const TensorInfo& t : (*file)->tensors()) names.push_back(t.name);
  EXPECT_THAT(names, ElementsAre("c_empty", "d_first", "b_scalar", "a_last"));
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->metadata().at("note"), "ü");

  auto scalar = (*file)->Get("b_scalar");
  ASSERT_TRUE(scalar.ok());
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->NumElements(), 1);
  EXPECT_EQ(scalar->bytes.size(), 8u);
  auto empty = (*file)->Get("c_empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->NumElements(), 0);
  EXPECT_TRUE(empty->bytes.empty());
  auto info = (*file)->Info("b_scalar");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->data_begin, 4u);
  EXPECT_EQ(info->data_end, 12u);
}

TEST(SafetensorsFileTest, EmptyHeaderAndNullMetadataAreValid) {
  EXPECT_TRUE(SafetensorsFile::FromBytes(Image("{}"), "x").ok());
  auto file = SafetensorsFile::FromBytes(Image(R"({"__metadata__":null})"), "x");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->metadata().empty());
  EXPECT_TRUE((*file)->tensors().empty());
}

TEST(SafetensorsFileTest, MissingTensorIsNotFoundNamingFileAndTensor) {
  auto file = SafetensorsFile::FromBytes(Image("{}"), "m.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE((*file)->Contains("w"));
  auto view = (*file)->Get("w");
  EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(view.status().message(), HasSubstr("m.safetensors: no tensor \"w\""));
  EXPECT_EQ((*file)->Info("w").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsFileTest, OpenMapsFileFromDisk) {
  const std::string path = testing::MakeScratchDir() + "/t.safetensors";
  testing::WriteFileOrDie(path, One(R"({"dtype":"I32","shape":[2],"data_offsets":[0,8]})", 8));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  auto view = (*file)->Get("a");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->bytes.size(), 8u);
}

TEST(SafetensorsFileTest, OpenErrorsNameThePath) {
  const std::string dir = testing::MakeScratchDir();
  auto missing = SafetensorsFile::Open(dir + "/nope.safetensors");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir + "/nope.safetensors"));

  testing::WriteFileOrDie(dir + "/short.safetensors", "abc");
  auto short_file = SafetensorsFile::Open(dir + "/short.safetensors");
  EXPECT_EQ(short_file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_file.status().message(), HasSubstr("short.safetensors: file is 3 bytes"));

  auto directory = SafetensorsFile::Open(dir);
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(directory.status().message(), HasSubstr("not a regular file"));
}

TEST(SafetensorsFileTest, ReadsOptFixture) {
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  auto file =
      SafetensorsFile::Open(testing::SharedDataDir() + "/models/opt-fixture/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 100u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  auto fc1 = (*file)->Get("model.decoder.layers.0.fc1.weight");
  ASSERT_TRUE(fc1.ok()) << fc1.status();
  EXPECT_EQ(fc1->dtype, DType::kF16);
  EXPECT_THAT(fc1->shape, ElementsAre(1536, 384));
  EXPECT_EQ(fc1->bytes.size(), 1536u * 384 * 2);
  auto embed = (*file)->Get("model.decoder.embed_tokens.weight");
  ASSERT_TRUE(embed.ok());
  EXPECT_THAT(embed->shape, ElementsAre(8192, 384));
  // The first tensor's bytes start right after the (8-byte aligned) header.
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*file)->Get((*file)->tensors()[0].name)->bytes.data()) % 8,
            0u);
}

}  // namespace
}  // namespace baq
