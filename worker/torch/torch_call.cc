// Keeps baq_worker a real library until the numerics land; CallTorch is header-only.
#include "worker/torch/torch_call.h"
