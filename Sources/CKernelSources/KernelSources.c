// Embeds every kernels/*.cl file into the binary with C23 #embed, so that an installed binary finds
// its kernels from any working directory. Add a line to both lists when adding a kernel family.
#include "KernelSources.h"

static const char attention_cl[] = {
#embed "../../kernels/attention.cl"
, 0};
static const char conv2d_cl[] = {
#embed "../../kernels/conv2d.cl"
, 0};
static const char elementwise_cl[] = {
#embed "../../kernels/elementwise.cl"
, 0};
static const char group_norm_cl[] = {
#embed "../../kernels/group_norm.cl"
, 0};
static const char layout_cl[] = {
#embed "../../kernels/layout.cl"
, 0};
static const char pooling_cl[] = {
#embed "../../kernels/pooling.cl"
, 0};
static const char scheduler_cl[] = {
#embed "../../kernels/scheduler.cl"
, 0};
static const char statistics_cl[] = {
#embed "../../kernels/statistics.cl"
, 0};
static const char transformer_cl[] = {
#embed "../../kernels/transformer.cl"
, 0};
static const char timestep_embedding_cl[] = {
#embed "../../kernels/timestep_embedding.cl"
, 0};

static const FlexKernelSource sources[] = {
    {"attention", attention_cl},
    {"conv2d", conv2d_cl},
    {"elementwise", elementwise_cl},
    {"group_norm", group_norm_cl},
    {"layout", layout_cl},
    {"pooling", pooling_cl},
    {"scheduler", scheduler_cl},
    {"statistics", statistics_cl},
    {"transformer", transformer_cl},
    {"timestep_embedding", timestep_embedding_cl},
};

const FlexKernelSource *flex_kernel_sources(int *count) {
    *count = (int)(sizeof(sources) / sizeof(sources[0]));
    return sources;
}
