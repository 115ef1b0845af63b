// Embeds models/fashion-mnist (written by scripts/tools/train_default_model.py) and its domain feature
// network models/fashion-mnist-features (scripts/tools/train_feature_net.py) into the binary.
#include "DefaultModel.h"

static const unsigned char model_index[] = {
#embed "../../models/fashion-mnist/model_index.json"
};
static const unsigned char unet_config[] = {
#embed "../../models/fashion-mnist/unet/config.json"
};
static const unsigned char unet_weights[] = {
#embed "../../models/fashion-mnist/unet/diffusion_pytorch_model.safetensors"
};
static const unsigned char scheduler_config[] = {
#embed "../../models/fashion-mnist/scheduler/scheduler_config.json"
};

static const FlexModelFile files[] = {
    {"model_index.json", model_index, sizeof model_index},
    {"unet/config.json", unet_config, sizeof unet_config},
    {"unet/diffusion_pytorch_model.safetensors", unet_weights, sizeof unet_weights},
    {"scheduler/scheduler_config.json", scheduler_config, sizeof scheduler_config},
};

const FlexModelFile *flex_default_model_files(int *count) {
    *count = (int)(sizeof files / sizeof files[0]);
    return files;
}

static const unsigned char feature_config[] = {
#embed "../../models/fashion-mnist-features/config.json"
};
static const unsigned char feature_weights[] = {
#embed "../../models/fashion-mnist-features/model.safetensors"
};

static const FlexModelFile feature_files[] = {
    {"config.json", feature_config, sizeof feature_config},
    {"model.safetensors", feature_weights, sizeof feature_weights},
};

const FlexModelFile *flex_feature_net_files(int *count) {
    *count = (int)(sizeof feature_files / sizeof feature_files[0]);
    return feature_files;
}
