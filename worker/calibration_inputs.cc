#include "worker/calibration_inputs.h"

#include "common/status_macros.h"
#include "common/text_dataset.h"
#include "worker/torch_call.h"

namespace baq::worker {

absl::StatusOr<at::Tensor> LoadCalibrationIds(const CalibrationConfig& config,
                                              const BpeTokenizer& tokenizer) {
  CalibrationOptions options;
  options.num_windows = config.num_samples;
  options.window_tokens = config.seqlen;
  options.seed = config.seed;
  options.sampler = WindowSampler::kPython;
  BAQ_ASSIGN_OR_RETURN(TokenWindows windows,
                       LoadCalibrationSet(tokenizer, config.files, options));
  return CallTorch("calibration ids", [&] {
    at::Tensor ids = at::empty({windows.num_windows(), windows.window_tokens}, at::kLong);
    int64_t* p = ids.data_ptr<int64_t>();
    for (size_t i = 0; i < windows.ids.size(); ++i) p[i] = windows.ids[i];
    return ids;
  });
}

}  // namespace baq::worker
