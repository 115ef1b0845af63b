// The embedded default model (models/fashion-mnist, a diffusers pipeline folder), compiled into the
// binary with C23 #embed so that `flexiffusion generate` works from any directory.
#ifndef FLEXIFFUSION_DEFAULT_MODEL_H
#define FLEXIFFUSION_DEFAULT_MODEL_H

typedef struct {
    const char *path;            // relative to the pipeline folder
    const unsigned char *bytes;
    unsigned long length;
} FlexModelFile;

const FlexModelFile *flex_default_model_files(int *count);
const FlexModelFile *flex_feature_net_files(int *count);
const FlexModelFile *flex_text_to_image_files(int *count);
const FlexModelFile *flex_fashion_clip_files(int *count);

#endif
