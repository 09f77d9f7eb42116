// tokenize_batch: a torch-free test helper for
// tests/tools/tokenize_reference_test.py. Reads [[tokenizer_json_path,
// text_path], ...] on stdin and prints, per job,
// {"ids": [...]} or {"error": "..."}, as a JSON array: the same library calls
// `baq tokenize` makes (BpeTokenizer::Load, then Encode of the whole file),
// with each tokenizer loaded once. The `baq` binary loads LibTorch at start
// (about a second); this lets the test check a hundred variants quickly and
// keep `baq tokenize` itself for the real files.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>

#include "common/bpe_tokenizer.h"
#include "common/file_contents.h"
#include "nlohmann/json.hpp"

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  const nlohmann::json jobs = nlohmann::json::parse(input, nullptr, false);
  if (!jobs.is_array()) {
    std::fprintf(
        stderr,
        "tokenize_batch: stdin must be a JSON array of [tokenizer, text]\n");
    return 2;
  }
  std::map<std::string, absl::StatusOr<baq::BpeTokenizer>> tokenizers;
  nlohmann::json out = nlohmann::json::array();
  for (const nlohmann::json& job : jobs) {
    const std::string path = job.at(0).get<std::string>();
    auto it = tokenizers.find(path);
    if (it == tokenizers.end())
      it = tokenizers.emplace(path, baq::BpeTokenizer::Load(path)).first;
    absl::StatusOr<std::string> text =
        baq::ReadFileContents(job.at(1).get<std::string>());
    absl::StatusOr<std::vector<int32_t>> ids =
        !it->second.ok()
            ? absl::StatusOr<std::vector<int32_t>>(it->second.status())
        : !text.ok() ? absl::StatusOr<std::vector<int32_t>>(text.status())
                     : it->second->Encode(*text);
    if (ids.ok()) {
      out.push_back({{"ids", *ids}});
    } else {
      out.push_back({{"error", ids.status().ToString()}});
    }
  }
  std::cout << out.dump() << "\n";
  return 0;
}
