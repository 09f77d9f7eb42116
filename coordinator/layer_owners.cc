#include "coordinator/layer_owners.h"

#include <algorithm>
#include <numeric>

namespace baq::coordinator {

double QuantizeCost(const LayerShape& layer) {
  const double c = static_cast<double>(layer.columns);
  const double r = static_cast<double>(layer.rows);
  return c * c * c + r * c * c;
}

std::vector<int> AssignLayerOwners(const std::vector<LayerShape>& layers, int engines) {
  std::vector<int> owner(layers.size(), 0);
  if (engines <= 1) return owner;
  std::vector<size_t> order(layers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return QuantizeCost(layers[a]) > QuantizeCost(layers[b]);
  });
  std::vector<double> load(engines, 0.0);
  for (size_t i : order) {
    const int e = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = e;
    load[e] += QuantizeCost(layers[i]);
  }
  return owner;
}

std::vector<int32_t> LayersOf(const std::vector<int>& owners, int engine) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < owners.size(); ++i) {
    if (owners[i] == engine) out.push_back(static_cast<int32_t>(i));
  }
  return out;
}

}  // namespace baq::coordinator
