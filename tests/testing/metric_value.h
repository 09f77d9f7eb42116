// tests/testing/metric_value.h
//
// MetricValue: reads one counter or gauge out of a prometheus::Registry
// without a scrape, for tests that check what a service recorded (RPC
// outcomes, bytes moved). Header-only; the tests that include it link
// prometheus-cpp::core. Thread-safe as Registry::Collect is.
//
// Example:
//   EXPECT_EQ(MetricValue(registry_, "baq_worker_rpcs_total",
//                         {{"method", "Quantize"}, {"code", "OK"}}),
//             1);
#ifndef BAQ_TESTS_TESTING_METRIC_VALUE_H_
#define BAQ_TESTS_TESTING_METRIC_VALUE_H_

#include <prometheus/registry.h>

#include <map>
#include <string>

namespace baq::testing {

// The value (counter or gauge) of the first metric of family `name` whose
// labels include every one of `labels`; 0 when there is none.
inline double MetricValue(prometheus::Registry& registry, const std::string& name,
                          const std::map<std::string, std::string>& labels) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      std::map<std::string, std::string> have;
      for (const auto& l : m.label) have[l.name] = l.value;
      bool match = true;
      for (const auto& [k, v] : labels) match = match && have[k] == v;
      if (match) return m.counter.value + m.gauge.value;
    }
  }
  return 0;
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_METRIC_VALUE_H_
