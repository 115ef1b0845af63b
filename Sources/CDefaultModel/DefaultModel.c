// Embeds models/fashion-mnist (written by scripts/tools/train_default_model.py) and its domain feature
// network models/fashion-mnist-features (scripts/tools/train_feature_net.py) into the binary, and the
// shipped text-to-image model models/fashion-text-to-image (scripts/tools/train_unet.py) with its
// CLIP models/fashion-clip (scripts/tools/train_clip.py).
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

static const unsigned char t2i_0[] = {
#embed "../../models/fashion-text-to-image/model_index.json"
};
static const unsigned char t2i_1[] = {
#embed "../../models/fashion-text-to-image/scheduler/scheduler_config.json"
};
static const unsigned char t2i_2[] = {
#embed "../../models/fashion-text-to-image/text_encoder/config.json"
};
static const unsigned char t2i_3[] = {
#embed "../../models/fashion-text-to-image/text_encoder/model.safetensors"
};
static const unsigned char t2i_4[] = {
#embed "../../models/fashion-text-to-image/tokenizer/vocab.json"
};
static const unsigned char t2i_5[] = {
#embed "../../models/fashion-text-to-image/tokenizer/merges.txt"
};
static const unsigned char t2i_6[] = {
#embed "../../models/fashion-text-to-image/tokenizer/special_tokens_map.json"
};
static const unsigned char t2i_7[] = {
#embed "../../models/fashion-text-to-image/tokenizer/tokenizer_config.json"
};
static const unsigned char t2i_8[] = {
#embed "../../models/fashion-text-to-image/unet/config.json"
};
static const unsigned char t2i_9[] = {
#embed "../../models/fashion-text-to-image/unet/diffusion_pytorch_model.safetensors"
};
static const unsigned char t2i_10[] = {
#embed "../../models/fashion-text-to-image/vae/config.json"
};
static const unsigned char t2i_11[] = {
#embed "../../models/fashion-text-to-image/vae/diffusion_pytorch_model.safetensors"
};

static const FlexModelFile t2i_files[] = {
    {"model_index.json", t2i_0, sizeof t2i_0},
    {"scheduler/scheduler_config.json", t2i_1, sizeof t2i_1},
    {"text_encoder/config.json", t2i_2, sizeof t2i_2},
    {"text_encoder/model.safetensors", t2i_3, sizeof t2i_3},
    {"tokenizer/vocab.json", t2i_4, sizeof t2i_4},
    {"tokenizer/merges.txt", t2i_5, sizeof t2i_5},
    {"tokenizer/special_tokens_map.json", t2i_6, sizeof t2i_6},
    {"tokenizer/tokenizer_config.json", t2i_7, sizeof t2i_7},
    {"unet/config.json", t2i_8, sizeof t2i_8},
    {"unet/diffusion_pytorch_model.safetensors", t2i_9, sizeof t2i_9},
    {"vae/config.json", t2i_10, sizeof t2i_10},
    {"vae/diffusion_pytorch_model.safetensors", t2i_11, sizeof t2i_11},
};

const FlexModelFile *flex_text_to_image_files(int *count) {
    *count = (int)(sizeof t2i_files / sizeof t2i_files[0]);
    return t2i_files;
}

static const unsigned char clip_0[] = {
#embed "../../models/fashion-clip/config.json"
};
static const unsigned char clip_1[] = {
#embed "../../models/fashion-clip/model.safetensors"
};
static const unsigned char clip_2[] = {
#embed "../../models/fashion-clip/processor_config.json"
};
static const unsigned char clip_3[] = {
#embed "../../models/fashion-clip/vocab.json"
};
static const unsigned char clip_4[] = {
#embed "../../models/fashion-clip/merges.txt"
};
static const unsigned char clip_5[] = {
#embed "../../models/fashion-clip/special_tokens_map.json"
};
static const unsigned char clip_6[] = {
#embed "../../models/fashion-clip/tokenizer_config.json"
};

static const FlexModelFile clip_files[] = {
    {"config.json", clip_0, sizeof clip_0},
    {"model.safetensors", clip_1, sizeof clip_1},
    {"processor_config.json", clip_2, sizeof clip_2},
    {"vocab.json", clip_3, sizeof clip_3},
    {"merges.txt", clip_4, sizeof clip_4},
    {"special_tokens_map.json", clip_5, sizeof clip_5},
    {"tokenizer_config.json", clip_6, sizeof clip_6},
};

const FlexModelFile *flex_fashion_clip_files(int *count) {
    *count = (int)(sizeof clip_files / sizeof clip_files[0]);
    return clip_files;
}
