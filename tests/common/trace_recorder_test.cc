#include "common/trace_recorder.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace baq::trace {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

// The "X" events of a trace, parsed back.
std::vector<nlohmann::json> CompleteEvents(const std::string& json) {
  const nlohmann::json doc = nlohmann::json::parse(json);
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& e : doc.at("traceEvents")) {
    if (e.at("ph") == "X") out.push_back(e);
  }
  return out;
}

const nlohmann::json* Metadata(const nlohmann::json& doc, const std::string& name) {
  for (const nlohmann::json& e : doc.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == name) return &e;
  }
  return nullptr;
}

TEST(TraceRecorderTest, WritesChromeTraceJsonWithArgsAndProcessName) {
  TraceRecorder recorder;
  recorder.Start("baq quantize");
  {
    ScopedSpan span(&recorder, "engine", "measure",
                    {{"block", 3}, {"layer", "self_attn.q_proj"}, {"ratio", 0.5}});
  }
  const nlohmann::json doc = nlohmann::json::parse(recorder.ToJson());
  const nlohmann::json* process = Metadata(doc, "process_name");
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->at("args").at("name"), "baq quantize");
  EXPECT_EQ(process->at("pid"), getpid());

  const std::vector<nlohmann::json> events = CompleteEvents(recorder.ToJson());
  ASSERT_THAT(events, SizeIs(1));
  const nlohmann::json& e = events[0];
  EXPECT_EQ(e.at("name"), "measure");
  EXPECT_EQ(e.at("cat"), "engine");
  EXPECT_EQ(e.at("pid"), getpid());
  EXPECT_EQ(e.at("tid"), static_cast<int64_t>(syscall(SYS_gettid)));
  EXPECT_EQ(e.at("args").at("block"), 3);
  EXPECT_EQ(e.at("args").at("layer"), "self_attn.q_proj");
  EXPECT_EQ(e.at("args").at("ratio"), 0.5);
  EXPECT_GE(e.at("dur").get<int64_t>(), 0);
  // Unix-epoch microseconds, so traces of several processes share one axis.
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  EXPECT_LE(e.at("ts").get<int64_t>(), now_us);
  EXPECT_GT(e.at("ts").get<int64_t>(), now_us - 60'000'000);
}

TEST(TraceRecorderTest, NestedSpansLieInsideTheirParent) {
  TraceRecorder recorder;
  recorder.Start("test");
  {
    ScopedSpan outer(&recorder, "engine", "quantize", {{"block", 0}});
    for (int layer = 0; layer < 2; ++layer) {
      ScopedSpan inner(&recorder, "engine", "quantize_layer", {{"layer", layer}});
      std::this_thread::yield();
    }
  }
  const std::vector<nlohmann::json> events = CompleteEvents(recorder.ToJson());
  ASSERT_THAT(events, SizeIs(3));
  // Recorded as they end: the inner ones first.
  EXPECT_EQ(events[0].at("name"), "quantize_layer");
  EXPECT_EQ(events[1].at("name"), "quantize_layer");
  const nlohmann::json& outer = events[2];
  EXPECT_EQ(outer.at("name"), "quantize");
  const int64_t begin = outer.at("ts"), end = begin + outer.at("dur").get<int64_t>();
  for (int i = 0; i < 2; ++i) {
    const int64_t b = events[i].at("ts"), e = b + events[i].at("dur").get<int64_t>();
    // One microsecond of slack: start is the wall clock, duration the monotonic one.
    EXPECT_GE(b, begin - 1);
    EXPECT_LE(e, end + 1);
  }
  EXPECT_LE(events[0].at("ts").get<int64_t>(), events[1].at("ts").get<int64_t>());
}

TEST(TraceRecorderTest, RecordsFromManyThreadsWithTheirThreadIds) {
  TraceRecorder recorder;
  recorder.Start("test");
  constexpr int kThreads = 4;
  constexpr int kSpansPerThread = 200;
  std::vector<int64_t> tids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      tids[t] = static_cast<int64_t>(syscall(SYS_gettid));
      recorder.SetThreadName("rank " + std::to_string(t));
      for (int i = 0; i < kSpansPerThread; ++i) {
        ScopedSpan span(&recorder, "engine", "forward_chunk", {{"chunk", i}});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(recorder.num_events(), size_t{kThreads * kSpansPerThread});
  std::map<int64_t, int> per_tid;
  for (const nlohmann::json& e : CompleteEvents(recorder.ToJson())) ++per_tid[e.at("tid")];
  ASSERT_THAT(per_tid, SizeIs(kThreads));
  for (int64_t tid : tids) EXPECT_EQ(per_tid[tid], kSpansPerThread);

  const nlohmann::json doc = nlohmann::json::parse(recorder.ToJson());
  std::vector<std::string> names;
  for (const nlohmann::json& e : doc.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == "thread_name")
      names.push_back(e.at("args").at("name"));
  }
  EXPECT_THAT(names, UnorderedElementsAre("rank 0", "rank 1", "rank 2", "rank 3"));
}

TEST(TraceRecorderTest, DisabledRecorderRecordsNothing) {
  TraceRecorder recorder;  // Never started.
  { ScopedSpan span(&recorder, "engine", "measure", {{"block", 1}}); }
  recorder.Record("engine", "measure", 0, 1, {});
  EXPECT_EQ(recorder.num_events(), 0u);
  EXPECT_THAT(CompleteEvents(recorder.ToJson()), SizeIs(0));

  recorder.Start("test");
  recorder.Stop();
  { ScopedSpan span(&recorder, "engine", "measure"); }
  EXPECT_EQ(recorder.num_events(), 0u);
}

TEST(TraceRecorderTest, SpanEndingAfterStopIsDropped) {
  TraceRecorder recorder;
  recorder.Start("test");
  {
    ScopedSpan span(&recorder, "engine", "measure");
    recorder.Stop();
  }
  EXPECT_EQ(recorder.num_events(), 0u);
}

TEST(TraceRecorderTest, StartDropsEarlierEvents) {
  TraceRecorder recorder;
  recorder.Start("first");
  recorder.Record("engine", "old", 1, 2, {});
  recorder.Start("second");
  recorder.Record("engine", "new", 3, 4, {{"block", 7}});
  const std::vector<nlohmann::json> events = CompleteEvents(recorder.ToJson());
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].at("name"), "new");
  EXPECT_EQ(events[0].at("ts"), 3);
  EXPECT_EQ(events[0].at("dur"), 4);
}

TEST(TraceRecorderTest, CountsEventsBeyondTheLimitAsDropped) {
  TraceRecorder recorder(/*max_events=*/2);
  recorder.Start("test");
  for (int i = 0; i < 5; ++i) recorder.Record("engine", "e", i, 1, {});
  EXPECT_EQ(recorder.num_events(), 2u);
  EXPECT_EQ(recorder.dropped_events(), 3u);
  const nlohmann::json doc = nlohmann::json::parse(recorder.ToJson());
  EXPECT_EQ(doc.at("otherData").at("dropped_events"), 3);
}

TEST(TraceRecorderTest, EscapesNamesAndReplacesInvalidUtf8) {
  TraceRecorder recorder;
  recorder.Start("quote\" and \\ and \n");
  const std::string bad_utf8 = "layer\xff";
  recorder.Record("engine", "name \"quoted\"", 0, 1, {{"layer", bad_utf8}});
  const nlohmann::json doc = nlohmann::json::parse(recorder.ToJson());  // Valid JSON.
  EXPECT_EQ(Metadata(doc, "process_name")->at("args").at("name"), "quote\" and \\ and \n");
  const std::vector<nlohmann::json> events = CompleteEvents(recorder.ToJson());
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].at("name"), "name \"quoted\"");
}

TEST(TraceRecorderTest, WriteFileReplacesTheFileAtomically) {
  const std::string dir = testing::MakeScratchDir();
  const std::string path = dir + "/trace.json";
  testing::WriteFileOrDie(path, "old");
  TraceRecorder recorder;
  recorder.Start("test");
  recorder.Record("engine", "measure", 10, 5, {{"block", 0}});
  ASSERT_TRUE(recorder.WriteFile(path).ok());
  EXPECT_THAT(CompleteEvents(testing::ReadFileOrDie(path)), SizeIs(1));
  // Nothing but the file itself: the temp file was renamed over it.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  EXPECT_THAT(names, ElementsAre("trace.json"));

  // A second write (a later snapshot) replaces it whole.
  recorder.Record("engine", "quantize", 20, 5, {{"block", 0}});
  ASSERT_TRUE(recorder.WriteFile(path).ok());
  EXPECT_THAT(CompleteEvents(testing::ReadFileOrDie(path)), SizeIs(2));
}

TEST(TraceRecorderTest, WriteFileIntoMissingDirectoryNamesTheFile) {
  TraceRecorder recorder;
  recorder.Start("test");
  const std::string path = testing::MakeScratchDir() + "/no/such/dir/trace.json";
  const absl::Status s = recorder.WriteFile(path);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(path));
}

TEST(TraceRecorderTest, MacroRecordsIntoTheGlobalRecorder) {
  TraceRecorder& global = GlobalTraceRecorder();
  ASSERT_FALSE(global.enabled());  // Off until a main() starts it.
  { BAQ_TRACE_SCOPE("engine", "measure", {{"block", 1}}); }
  EXPECT_EQ(global.num_events(), 0u);
  global.Start("test");
  {
    BAQ_TRACE_SCOPE("engine", "measure", {{"block", 2}});
    BAQ_TRACE_SCOPE("engine", "no_args");
  }
  global.Stop();
  const std::vector<nlohmann::json> events = CompleteEvents(global.ToJson());
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].at("name"), "no_args");
  EXPECT_EQ(events[1].at("args").at("block"), 2);
}

int hook_calls = 0;
void CountHookCall() { ++hook_calls; }

TEST(TraceRecorderTest, SpanEndHookRunsOnlyWhileRecording) {
  TraceRecorder recorder;
  recorder.SetSpanEndHook(&CountHookCall);
  hook_calls = 0;
  { ScopedSpan span(&recorder, "engine", "measure"); }
  EXPECT_EQ(hook_calls, 0);  // Not started: no sync cost either.
  recorder.Start("test");
  {
    ScopedSpan outer(&recorder, "engine", "measure");
    ScopedSpan inner(&recorder, "engine", "forward");
  }
  EXPECT_EQ(hook_calls, 2);
  recorder.SetSpanEndHook(nullptr);
  { ScopedSpan span(&recorder, "engine", "measure"); }
  EXPECT_EQ(hook_calls, 2);
  EXPECT_EQ(recorder.num_events(), 3u);
}

TEST(TraceRecorderTest, FormatArgsForNvtx) {
  EXPECT_EQ(internal::FormatArgs({}), "");
  const TraceArg args[] = {{"block", 3}, {"layer", "mlp.fc1"}};
  EXPECT_EQ(internal::FormatArgs(args), "block=3 layer=mlp.fc1");
}

}  // namespace
}  // namespace baq::trace
